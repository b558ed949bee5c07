"""Level judgement: each signal's level against its relation to the others, with a tolerance
interval from the effective number of independent observations, widened by leverage."""

import math

import numpy as np
import pytest

from edge_agent.training.levels import (
    _chi2_quantile,
    effective_samples,
    fit_level_relations,
    tolerance_factor,
    window_levels,
)


def ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    x = np.empty(n)
    x[0] = rng.standard_normal()
    e = rng.standard_normal(n) * math.sqrt(1 - phi * phi)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def test_chi2_quantiles_match_tables():
    # Printed tables: chi2(0.05; 1) = 0.00393, (0.05; 9) = 3.325, (0.05; 99) = 77.05.
    assert _chi2_quantile(0.05, 1) == pytest.approx(0.003932, rel=1e-3)
    assert _chi2_quantile(0.05, 9) == pytest.approx(3.3251, rel=1e-3)
    assert _chi2_quantile(0.05, 99) == pytest.approx(77.046, rel=1e-3)
    assert _chi2_quantile(0.05, 400) == pytest.approx(354.64, rel=2e-3)


def test_tolerance_factor_matches_published_values_and_shrinks_with_data():
    # Two-sided normal tolerance factors, 99 % coverage at 95 % confidence (NIST/SEMATECH
    # handbook 7.2.6.3): n = 10 → 4.433, n = 30 → 3.350, n = 100 → 2.934.
    assert tolerance_factor(10, 0.99, 0.95) == pytest.approx(4.433, rel=0.01)
    assert tolerance_factor(30, 0.99, 0.95) == pytest.approx(3.350, rel=0.01)
    assert tolerance_factor(100, 0.99, 0.95) == pytest.approx(2.934, rel=0.01)
    ks = [tolerance_factor(n, 0.999, 0.95) for n in (3, 10, 100, 10_000)]
    assert ks == sorted(ks, reverse=True)
    assert ks[-1] == pytest.approx(3.29, abs=0.05)  # the 99.9 % normal quantile in the limit


def test_effective_samples_follow_autocorrelation():
    rng = np.random.default_rng(0)
    white = effective_samples(rng.standard_normal(20_000))
    slow = effective_samples(ar1(20_000, 0.99, rng))
    assert white == pytest.approx(20_000, rel=0.1)
    # AR(1) with phi 0.99: integrated autocorrelation time (1 + phi) / (1 - phi) = 199.
    assert slow == pytest.approx(20_000 / 199, rel=0.35)
    assert effective_samples(np.ones(50)) == 1.0


def plant(n: int, rng: np.random.Generator, ambient_phi: float = 0.9995) -> np.ndarray:
    """Levels of a toy plant: a slow ambient drives two temperatures, a faster load drives flow
    and current (and heats one temperature); a voltage wanders on its own."""
    ambient = ar1(n, ambient_phi, rng) * 3.0
    load = ar1(n, 0.98, rng)
    volt = ar1(n, 0.95, rng)

    def noise() -> np.ndarray:
        return rng.standard_normal(n) * 0.05

    return np.column_stack([
        ambient + 0.5 * load + noise(),  # motor temperature
        ambient + noise(),  # fluid temperature
        load + noise(),  # flow
        0.8 * load + noise(),  # current
        volt + noise(),  # voltage: related to nothing
    ])  # fmt: skip


def level_error(rel, levels: np.ndarray) -> np.ndarray:
    import torch

    from edge_agent.training.model import LevelModel

    model = LevelModel(levels.shape[1]).load(rel)
    # The model takes windows; a window of one sample has its level as its mean.
    with torch.no_grad():
        return model(torch.from_numpy(levels[:, None, :].astype(np.float32))).numpy()


def test_common_drift_beyond_the_recorded_range_is_normal_but_a_broken_relation_is_not():
    rng = np.random.default_rng(3)
    data = plant(30_000, rng)
    mu, sd = data[:3000].mean(0), data[:3000].std(0)
    z = (data - mu) / sd
    rel = fit_level_relations(z[:3000], 0.999, 0.95)
    later = z[3000:]
    # Ambient has moved well past anything in the training stretch ...
    assert np.max(np.abs(later[:, 1])) > 1.5 * np.max(np.abs(z[:3000, 1]))
    # ... and the relations still hold: (almost) no level error anywhere.
    err = level_error(rel, later)
    assert np.mean(err.sum(axis=1) > 0) < 0.01
    # A fluid temperature sensor that drifts by 1.5 °C (half an ambient standard deviation)
    # while everything else is healthy breaks its relation to the motor temperature.
    drifted = later.copy()
    drifted[:, 1] += 1.5 / sd[1]
    err = level_error(rel, drifted)
    assert np.mean(err[:, 1] > 0) > 0.9


def test_an_unrelated_signal_gets_a_plain_tolerance_band_and_leverage_widens_intervals():
    rng = np.random.default_rng(4)
    z = plant(20_000, rng)
    z = (z - z.mean(0)) / z.std(0)
    rel = fit_level_relations(z, 0.999, 0.95)
    assert rel.explained[4] < 0.05  # voltage: the others say nothing about it
    assert rel.explained[1] > 0.8 and rel.explained[3] > 0.9
    assert rel.half_width[4] > 3.0  # about k times one standard deviation
    # Far beyond any load seen, a linear relation is an extrapolation: there a residual of 1.5
    # zero-leverage tolerances is inside the interval, which widens with the leverage ...
    # (Fitted on a short stretch: about 20 independent load observations.)
    rel = fit_level_relations(z[:2000], 0.999, 0.95)
    far = np.zeros((1, 5))
    far[0, 2] = far[0, 3] = 8.0
    far[0, 0] = rel.coef[0] @ far[0] + rel.resid_mean[0] + 1.5 * rel.half_width[0]
    assert level_error(rel, far)[0, 0] == 0.0
    # ... while at the usual operating point the same residual is a level error.
    near = np.zeros((1, 5))
    near[0, 0] = rel.resid_mean[0] + 1.5 * rel.half_width[0]
    assert level_error(rel, near)[0, 0] > 0.0


def test_more_data_gives_narrower_intervals():
    rng = np.random.default_rng(5)
    z = plant(40_000, rng)
    z = (z - z.mean(0)) / z.std(0)
    short = fit_level_relations(z[:2000], 0.999, 0.95)
    long = fit_level_relations(z, 0.999, 0.95)
    assert np.all(long.level_effective_samples > short.level_effective_samples)
    k_short = short.half_width / short.resid_scale
    k_long = long.half_width / long.resid_scale
    assert np.all(k_long < k_short)


def test_window_levels_skip_short_segments():
    segs = [np.arange(40, dtype=float).reshape(20, 2), np.ones((5, 2))]
    lv = window_levels(segs, 8, 4)
    assert lv.shape == (4, 2)
    assert lv[0, 0] == pytest.approx(np.arange(0, 16, 2).mean())


def test_a_level_that_never_moved_beyond_noise_is_not_judged_until_it_does():
    """Ten minutes of a temperature: its level only shows sensor noise, so the data says nothing
    about where it may go. It is neither judged nor used to predict the others."""
    from edge_agent.training.levels import measurement_noise, window_levels

    rng = np.random.default_rng(6)
    n, w = 20_000, 32
    load = np.repeat(ar1(n // 10, 0.9, rng), 10)
    temp_true = np.concatenate([np.zeros(600), np.cumsum(rng.standard_normal(n - 600)) * 0.02])
    raw = np.column_stack([
        load + rng.standard_normal(n) * 0.05,
        0.9 * load + rng.standard_normal(n) * 0.05,
        temp_true + rng.standard_normal(n) * 0.1,
    ])  # fmt: skip

    def fit(rows: int):
        seg = raw[:rows]
        mu, sd = seg.mean(0), seg.std(0)
        z = (seg - mu) / sd
        noise = measurement_noise([z]) / w
        return fit_level_relations(window_levels([z], w, 4), 0.999, 0.95, noise), mu, sd

    short, mu, sd = fit(600)
    assert list(short.judged) == [True, True, False]
    assert short.coef[0, 2] == 0.0 and short.coef[1, 2] == 0.0
    later = window_levels([(raw[600:] - mu) / sd], w, 4)
    err = level_error(short, later)
    assert np.all(err[:, 2] == 0.0)
    long, _, _ = fit(n)
    assert long.judged.all()
