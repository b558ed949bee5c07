"""Alert policy parameters from the asset's own held-out normal scores (issues 17 and 19).

- normal peak: the raise threshold is at least the highest value the raise rule's k-of-n
  statistic (the k-th largest of n scores in a row) reaches on *all* the normal windows, the
  training part included: the bundle raises no alert on the data it was told is normal. The
  quantile threshold is set on the held-out part alone (the model was fitted on the rest), and a
  few held-out hours need not hold the rarest normal transients (the largest set-point moves of a
  day) that the training hours did; without this floor a bundle trained on a day of a pump
  raised on its own training data and then about once per 25 asset-hours on the same unit
  (docs/QUALITY.md). With minutes of data the floor is usually below the quantile threshold and
  changes nothing;
- gross cut: the score above which one window raises at once. The upper tail of the held-out
  scores (above their 95th percentile) is fitted with an exponential (peaks over threshold) and
  extrapolated to the score a normal window exceeds with probability `GROSS_FALSE_PER_HOUR` per
  asset-hour when every sample is scored; never below the largest held-out score times
  (1 + margin), nor below a critical score (`CRITICAL_RATIO` times the raise threshold: a score
  the policy would only call a warning keeps its persistence). A score beyond it is not something
  this asset's normal operation produces, so persistence has nothing to protect against. Minutes
  of held-out data (tens of correlated windows) cannot show a tail; then the floors decide.
- quiet period: how long an alert's scores must stay calm before its episode clears. Scores of
  overlapping windows are correlated; the decorrelation length D (samples until the held-out
  scores' autocorrelation falls below 0.05, at least one window) is one independent look at the
  machine. A fault that still shows in a share `RECUR_SHARE` of independent looks would go
  unseen for `N` looks with probability (1 − RECUR_SHARE)^N; the quiet period is the N that makes
  that `MISS` or less, times D. So a persistent marginal fault stays one alert, and a fault that
  is over clears after a stated number of independent calm looks.
- false-alarm budget: the alert policy itself, run over the held-out scores, counts its raises
  in the hours those scores cover. No raise in T hours supports at most 3 / T per hour (the rule
  of three, 95 %); the budget is the larger of that and the count / T.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from edge_agent.alerts.policy import CRITICAL_RATIO, AlertPolicy, PolicyParams, SignalInfo
from edge_agent.types import Score

F32 = npt.NDArray[np.float32]

TAIL_QUANTILE = 0.95
GROSS_FALSE_PER_HOUR = 0.005  # a quarter of the 0.02 false alerts per asset-hour
RECUR_SHARE, MISS = 0.2, 0.01
DECORRELATED = 0.05

METHOD = (
    f"gross: exponential tail above the {TAIL_QUANTILE:g} quantile of held-out normal scores, "
    f"extrapolated to {GROSS_FALSE_PER_HOUR:g} exceedances per asset-hour at hop 1 (at least the "
    f"largest held-out score x (1 + margin) and {CRITICAL_RATIO:g} x raise); quiet period: the "
    f"looks (score decorrelation lengths) a fault seen in {RECUR_SHARE:.0%} of them needs to "
    f"show again with probability {1 - MISS:.0%}; budget: the policy's raises on held-out "
    f"scores per hour (at least 3 / hours)"
)


def gross_cut(scores: F32, raise_t: float, margin: float, period_s: float) -> float:
    s = np.asarray(scores, np.float64)
    u = float(np.quantile(s, TAIL_QUANTILE))
    excess = s[s > u] - u
    beta = float(np.mean(excess)) if excess.size else 0.0
    # Exceedance per window (one window per sample) that gives the target rate per hour.
    p = GROSS_FALSE_PER_HOUR * period_s / 3600.0
    tail = u + beta * math.log((1.0 - TAIL_QUANTILE) / p) if p < 1.0 - TAIL_QUANTILE else u
    return max(tail, float(s.max()) * (1.0 + margin), CRITICAL_RATIO * raise_t)


def normal_peak(scores: F32, k: int, n: int) -> float:
    """The highest value the raise rule's statistic reaches on consecutive `scores`: the k-th
    largest of every n in a row (the rule holds when it exceeds the raise threshold). Fewer than
    n scores: the k-th largest of them all."""
    s = np.asarray(scores, np.float64)
    if len(s) < n:
        return float(np.sort(s)[-k]) if len(s) >= k else 0.0
    runs = np.lib.stride_tricks.sliding_window_view(s, n)
    return float(np.partition(runs, n - k, axis=1)[:, n - k].max())


def decorrelation_samples(scores: F32, window: int) -> int:
    """Lag (samples) at which the scores' autocorrelation first falls below `DECORRELATED`; at
    least one window (overlapping windows share samples up to that lag)."""
    x = np.asarray(scores, np.float64) - float(np.mean(scores))
    var = float(np.dot(x, x))
    if var <= 0.0:
        return window
    for lag in range(1, len(x) // 2):
        if float(np.dot(x[:-lag], x[lag:])) / var < DECORRELATED:
            return max(lag, window)
    return max(len(x) // 2, window)


def quiet_looks() -> int:
    return math.ceil(math.log(MISS) / math.log(1.0 - RECUR_SHARE))


def calibrate(
    scores: F32,
    raise_t: float,
    clear_t: float,
    margin: float,
    window: int,
    hop: int,
    period_s: float,
) -> dict[str, float | int | str]:
    """`scores`: the int8 model's held-out normal scores, one window per sample (consecutive);
    `hop`: the bundle's, in which the policy's k-of-n is counted. The manifest's `alerting`."""
    gross = gross_cut(scores, raise_t, margin, period_s)
    d = decorrelation_samples(scores, window)
    quiet_s = quiet_looks() * d * period_s
    params = PolicyParams(
        raise_threshold=raise_t, clear_threshold=clear_t, gross_threshold=gross,
        quiet_period_s=quiet_s,
    ).for_hop(hop, 1)  # fmt: skip
    policy = AlertPolicy("calibration", params, SignalInfo(["score"], [""], [0.0], [0.0]), "")
    one = np.zeros(1, np.float32)
    raises = 0
    for i, v in enumerate(np.asarray(scores, np.float64)):
        e = policy.update(Score("calibration", i * period_s, float(v), one, one))
        raises += e is not None and e.event.value == "raised"
    hours = len(scores) * period_s / 3600.0
    return {
        "gross": gross,
        "quiet_period_s": quiet_s,
        "expected_false_alerts_per_hour": max(raises, 3) / hours,
        "calibration_hours": hours,
        "calibration_false_alerts": raises,
        "decorrelation_samples": d,
        "method": METHOD,
    }
