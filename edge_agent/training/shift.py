"""Calibrating the level-shift stage (`stream/level_shift.py`) on the asset's normal data.

Each signal's tolerance is the wider of two statistics of its shifts on normal data:
- a normal tolerance interval (Howe's factor over the shift's effective number of independent
  observations), at a *family-wise* coverage: the stage raises when any one judged signal leaves
  its interval, so with n signals each interval covers 1 − (1 − coverage) / n (Bonferroni);
  eight intervals at 99.9 % each would be left six times as often as one;
- when a false-alert budget is given, the magnitude a normal shift exceeds at the rate that
  budget allows: shifts are not normal (an operator's set-point move is a burst of large
  shifts, kurtosis 4–6 on the simulated pump), so their tail above the 95th percentile of
  |shift| is fitted with an exponential (peaks over threshold, as the gross cut is) and
  extrapolated. Exceedances come in runs about as long as the shift's integrated
  autocorrelation time τ, so a budget of B runs per hour allows B · τ · period / 3600
  exceeding windows per sample, shared among the judged signals.
Measured on the simulated pump (48 h of normal operation after 3.3 h of training, three units):
the Normal interval per signal alone is left by 3.6 % of windows (three false level-shift
episodes per hour); both statistics together, at 0.005 per hour, by none (docs/QUALITY.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_agent.stream.level_shift import ShiftParams, shifts
from edge_agent.training.levels import effective_samples, tolerance_factor

F64 = npt.NDArray[np.float64]

TAIL_QUANTILE = 0.95
MIN_TAIL_POINTS = 10  # fewer exceedances than this describe no tail: the Normal interval decides


@dataclass(frozen=True)
class ShiftFit:
    params: ShiftParams
    effective_samples: list[float]
    judged: list[bool] = field(default_factory=list)


def tail_quantile(deviation: F64, p: float) -> float | None:
    """|deviation| exceeded with probability `p`, from an exponential fit to its tail above the
    `TAIL_QUANTILE` quantile; None when the tail holds too few points or `p` is not in it."""
    a = np.abs(np.asarray(deviation, np.float64))
    if not 0.0 < p < 1.0 - TAIL_QUANTILE:
        return None
    u = float(np.quantile(a, TAIL_QUANTILE))
    excess = a[a > u] - u
    if excess.size < MIN_TAIL_POINTS:
        return None
    return u + float(excess.mean()) * math.log((1.0 - TAIL_QUANTILE) / p)


def fit_shift(
    segments: Sequence[F64],
    window: int,
    coverage: float,
    confidence: float,
    constant: Sequence[bool],
    time_constant: float | None = None,
    *,
    period_s: float | None = None,
    false_per_hour: float | None = None,
) -> ShiftFit:
    """Tolerances from standardized normal data (gap-free segments in time order). A signal that
    was constant in training is not judged: nothing says how much it moves when all is well.
    `false_per_hour` (with `period_s`): the budget of false level-shift episodes per hour."""
    tc = float(window) if time_constant is None else time_constant
    n = segments[0].shape[1]
    per_seg = shifts(segments, window, tc)
    # The first window of a segment has no reference yet: its shift is 0 by construction.
    d = np.concatenate([s[1:] for s in per_seg if len(s) > 1] or [np.zeros((0, n))])
    ok = [
        len(d) >= 2 and not constant[j] and float(d[:, j].std()) > 0.0 for j in range(n)
    ]  # fmt: skip
    judged_count = max(1, sum(ok))
    family_coverage = 1.0 - (1.0 - coverage) / judged_count
    offset, tol, n_eff = [], [], []
    for j in range(n):
        col = d[:, j]
        ne = effective_samples(col) if len(col) >= 2 else 0.0
        n_eff.append(round(float(ne), 1))
        if not ok[j]:
            offset.append(0.0)
            tol.append(math.inf)
            continue
        mean = float(col.mean())
        t = tolerance_factor(ne, family_coverage, confidence) * float(col.std())
        if false_per_hour is not None and period_s is not None and ne > 0:
            run = len(col) / ne  # integrated autocorrelation time: samples per exceedance run
            p = false_per_hour * run * period_s / 3600.0 / judged_count
            t = max(t, tail_quantile(col - mean, p) or t)
        offset.append(mean)
        tol.append(t)
    return ShiftFit(ShiftParams(window, tc, offset, tol), n_eff, ok)
