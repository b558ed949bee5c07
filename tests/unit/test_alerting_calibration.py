"""The alert policy's parameters calibrated from held-out normal scores (training/alerting.py)."""

from __future__ import annotations

import numpy as np

from edge_agent.training import alerting


def _ar1(n: int, seed: int, phi: float = 0.9) -> np.ndarray:
    """Correlated positive scores like those of overlapping windows: exp of an AR(1) process."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = phi * x[i - 1] + np.sqrt(1 - phi**2) * e[i]
    return np.exp(0.3 * x).astype(np.float32)


def test_gross_cut_is_above_every_normal_score_and_rarely_reached_by_fresh_normal_data():
    period = 1.0
    cal = _ar1(3000, seed=1)
    raise_t = float(np.quantile(cal, 0.999)) * 1.25
    gross = alerting.gross_cut(cal, raise_t, 0.25, period)
    assert gross >= float(cal.max()) * 1.25 and gross >= alerting.CRITICAL_RATIO * raise_t
    # 100 asset-hours of fresh normal scores at one window per second: the target is 0.005
    # exceedances per asset-hour (0.5 here); the exponential tail over-covers a lighter one.
    fresh = _ar1(360_000, seed=2)
    assert int(np.sum(fresh >= gross)) <= 2
    # ...while the raise threshold itself is crossed routinely (what k-of-n is there for).
    assert int(np.sum(fresh > raise_t)) > 50


def test_quiet_period_follows_the_scores_memory_and_never_undercuts_a_window():
    fast = alerting.decorrelation_samples(_ar1(5000, seed=3, phi=0.5), window=8)
    slow = alerting.decorrelation_samples(_ar1(5000, seed=3, phi=0.98), window=8)
    assert fast == 8  # white-ish scores: one window is the floor
    assert slow > 50
    # A fault seen in a fifth of the looks is missed over the quiet period at most 1 % of the time.
    n = alerting.quiet_looks()
    assert 0.8**n <= 0.01 < 0.8 ** (n - 1)


def test_calibrate_records_a_budget_no_lower_than_the_rule_of_three():
    cal = _ar1(3600, seed=4)  # one hour at 1 s
    raise_t = float(np.quantile(cal, 0.999)) * 1.25
    clear_t = float(np.quantile(cal, 0.99)) * 1.25
    a = alerting.calibrate(cal, raise_t, clear_t, 0.25, window=16, hop=4, period_s=1.0)
    assert a["calibration_hours"] == 1.0
    assert a["expected_false_alerts_per_hour"] >= 3.0
    assert a["quiet_period_s"] == alerting.quiet_looks() * a["decorrelation_samples"]


def test_quiet_period_defaults_to_the_bundles_calibrated_one_and_0_turns_episodes_off():
    from edge_agent.inference.bundle import AlertingSpec
    from edge_agent.pipeline import quiet_period

    spec = AlertingSpec(
        gross=3.0, quiet_period_s=672.0, expected_false_alerts_per_hour=1.0,
        calibration_hours=1.0, calibration_false_alerts=0, decorrelation_samples=32, method="m",
    )  # fmt: skip
    assert quiet_period(None, spec) == 672.0
    assert quiet_period(0.0, spec) == 0.0
    assert quiet_period(30.0, spec) == 30.0
    assert quiet_period("bundle", spec) == 672.0
    assert quiet_period("bundle", None) == 0.0  # a bundle trained before episodes
    assert quiet_period(None, None) == 0.0


def test_normal_peak_is_the_raise_rules_statistic_at_its_highest():
    """At a raise threshold equal to the peak the policy never raises on those scores; a hair
    below it, it does: the peak is exactly where the k-of-n rule starts to hold."""
    from edge_agent.alerts.policy import AlertPolicy, PolicyParams, SignalInfo
    from edge_agent.types import Score

    scores = _ar1(4000, seed=5, phi=0.95)
    k, n = 12, 20
    peak = alerting.normal_peak(scores, k, n)
    brute = max(sorted(scores[i : i + n])[n - k] for i in range(len(scores) - n + 1))
    assert peak == float(brute)

    def raises(raise_t: float) -> int:
        params = PolicyParams(raise_t, raise_t * 0.7, k=k, n=n)
        policy = AlertPolicy("a", params, SignalInfo(["s"], [""], [0.0], [0.0]), "")
        one = np.zeros(1, np.float32)
        events = (
            policy.update(Score("a", float(i), float(v), one, one)) for i, v in enumerate(scores)
        )
        return sum(1 for e in events if e is not None and e.event.value == "raised")

    assert raises(peak) == 0
    assert raises(peak * 0.999) >= 1
    assert alerting.normal_peak(scores[:5], 3, 20) == float(np.sort(scores[:5])[-3])
