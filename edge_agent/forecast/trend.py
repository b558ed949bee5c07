"""A robust trend through signals' recent levels and when each meets its limit.

The levels are bucket envelopes (2 minutes each by default, `stage.envelope`), so sensor noise is
mostly gone and what is left is the process: load changes, the daily ambient cycle, thermal lags,
and a degradation if there is one. Wear accelerates (a bearing defect grows with the damage
already done), so a straight line lags a degradation that is curving up and tells "later" than
the truth; a quadratic on a flat, noisy stretch invents curvature half of the time. Both are
fitted where the line's band reaches the limit, and mixed by their Akaike weights (from the
curvature's t-statistic), so the estimate moves smoothly as the curvature's evidence grows
instead of jumping when it passes a threshold. The straight line's own estimate comes along
(`eta_linear`): a quadratic bends the last rise of a wandering process (a compressor's oil
temperature following demand) upwards, and the stage only believes a crossing that the line over
the whole history also brings within the look-ahead.

Robust: Huber-weighted least squares (iteratively reweighted), so a level spoilt by a transient
(an operator's set point change, a few bad samples) does not tilt the fit. Uncertainty, as the
band of a level to come: the coefficients' covariance from the weighted residuals, inflated by
their long-run variance (load wanders for minutes and temperatures lag for tens of minutes, so
neighbouring levels are not independent), the two curves' disagreement (the variance of their
mixture), and the levels' own spread around the trend (the limit is met by the process, not by
its trend). The stage may widen it further from how its past forecasts fared
(`calibration.Calibration`). The interval of the crossing time is where the 80 % band meets the
limit: its upper edge first (near end), its lower edge last (far end).

All signals of an asset share the level times, so they are fitted together (batched 3×3 solves):
the stage's cost is a few dozen numpy calls per asset per level.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_agent.forecast.calibration import quantile_columns

F64 = npt.NDArray[np.float64]

Z80 = 1.2815515655446004  # 10 % in each tail: a two-sided 80 % interval
HUBER_K = 1.345
IRLS_ITERATIONS = 3
MAX_LAG = 15


@dataclass(frozen=True, slots=True)
class Crossing:
    """When a rising trend meets its limit, in seconds from the last level (inf: not within the
    look-ahead). `level` is the fitted level at the last level's time, `rate` its slope there
    (units per second)."""

    level: float
    rate: float
    eta: float
    near: float
    far: float
    curved: bool
    # The straight line's own estimate (inf: not within the look-ahead).
    eta_linear: float
    # The predicted levels one step on and later (the look-ahead grid without its first point)
    # and their standard deviations before any widening: what the stage's online check scores
    # the coming levels against.
    path: F64 = field(default_factory=lambda: np.zeros(0), compare=False, repr=False)
    path_sd: F64 = field(default_factory=lambda: np.zeros(0), compare=False, repr=False)


def _irls(x: F64, y: F64, degree: int, scale: F64 | None = None) -> tuple[F64, F64, F64, F64]:
    """Huber-weighted polynomial fits of every column of `y` (n levels × k signals) on `x`:
    coefficients (k × p), their covariances (k × p × p, long-run inflated), the robust scale
    the weights used (k; the one given, else from the least-squares fit's residuals) and the
    robust scale of the final fit's residuals (k: how far a level strays from the trend)."""
    design = np.vander(x, degree + 1, increasing=True)  # n × p
    p = degree + 1
    ridge = np.eye(p) * 1e-12
    dt = design.T  # p × n
    w = np.ones_like(y)
    coef: F64 = np.zeros((y.shape[1], p))
    for i in range(IRLS_ITERATIONS):
        xtwx = (dt[None] * w.T[:, None, :]) @ design + ridge  # k × p × p
        xtwy = (w * y).T @ design  # k × p
        coef = np.linalg.solve(xtwx, xtwy[..., None])[..., 0].astype(np.float64)
        r = y - design @ coef.T
        if scale is None:
            # The median absolute residual of the first (least-squares) fit, once: a per
            # iteration re-estimate buys little and costs a sort per signal each time.
            scale = np.maximum(1.4826 * quantile_columns(np.abs(r), 0.5), 1e-12)
        if i < IRLS_ITERATIONS - 1:
            w = np.minimum(1.0, HUBER_K * scale / np.maximum(np.abs(r), 1e-300))
    xtwx = (dt[None] * w.T[:, None, :]) @ design + ridge
    r = y - design @ coef.T
    dof = np.maximum(1.0, w.sum(axis=0) - p)
    sigma2 = (w * r * r).sum(axis=0) / dof
    cov: F64 = np.linalg.inv(xtwx) * (sigma2 * _long_run_factor(r))[:, None, None]
    spread: F64 = 1.4826 * quantile_columns(np.abs(r), 0.5)
    assert scale is not None
    return coef, cov, scale, spread


def _long_run_factor(r: F64) -> F64:
    """Per column, how much autocorrelation widens the variance of a fit on residuals `r`: the
    long-run variance over the plain one, Bartlett weights up to lag n/4 (at most 15). The
    autocovariances come from one FFT (zero-padded, so not circular) instead of a loop."""
    n = r.shape[0]
    lags = min(n // 4, MAX_LAG)
    if lags < 1:
        return np.ones(r.shape[1])
    spectrum = np.fft.rfft(r, n=2 * n, axis=0)
    acov = np.fft.irfft(spectrum * spectrum.conj(), n=2 * n, axis=0)[: lags + 1]
    rho = acov[1:] / np.maximum(acov[0], 1e-300)
    weights = 1.0 - np.arange(1, lags + 1) / (lags + 1)
    factor: F64 = np.maximum(1.0, 1.0 + 2.0 * (weights @ rho)).astype(np.float64)
    return factor


def _first_at_or_above(x: F64, f: F64, limit: float) -> float:
    """The first x where f reaches `limit`, interpolated between grid points (inf: never)."""
    hit = np.flatnonzero(f >= limit)
    if hit.size == 0:
        return math.inf
    i = int(hit[0])
    if i == 0:
        return float(x[0])
    x0, x1, f0, f1 = float(x[i - 1]), float(x[i]), float(f[i - 1]), float(f[i])
    return x0 + (x1 - x0) * (limit - f0) / (f1 - f0) if f1 != f0 else x1


@functools.lru_cache(maxsize=8)
def _grid(lookahead_s: float, step_s: float) -> tuple[F64, F64, F64]:
    """The look-ahead grid (hours) and its line and quadratic design matrices: the same for
    every fit of a stage, so made once (read-only, shared)."""
    future = np.arange(0.0, lookahead_s + step_s, step_s) / 3600.0
    out = (future, np.vander(future, 2, increasing=True), np.vander(future, 3, increasing=True))
    for a in out:
        a.flags.writeable = False
    return out


def quadratic_weight(curvature: float, se: float) -> float:
    """The Akaike weight of the quadratic against the straight line, from the curvature's
    t-statistic (for one added coefficient the likelihood ratio is about t², so the AIC
    difference is t² − 2). 0 for a flat or bending-down curvature: a trend that decelerates
    may still go on, and a quadratic that turns back would say "never"."""
    if curvature <= 0:
        return 0.0
    if se <= 0:
        return 1.0
    t2 = (curvature / se) ** 2
    return 1.0 / (1.0 + math.exp(-min(0.5 * (t2 - 2.0), 700.0)))


def crossings(
    t: F64,
    y: F64,
    limits: F64,
    lookahead_s: float,
    step_s: float,
    widening: F64 | None = None,
) -> list[Crossing] | None:
    """When the trend of each column of `y` (levels at times `t`, seconds, increasing; n × k)
    rises to its limit (`limits`, k). For a low limit pass the negated column and limit.
    `widening` (k, ≥ 1): what the stream's past forecasts say the 80 % band's half width needs
    (`calibration.Calibration`). None with fewer than 5 levels."""
    if len(t) < 5:
        return None
    hours = (t - t[-1]) / 3600.0
    lin, lin_cov, scale, lin_spread = _irls(hours, y, 1)
    future, g_lin, g_quad = _grid(lookahead_s, step_s)
    lines = g_lin @ lin.T  # grid × k
    eta_lin = [_first_at_or_above(future, lines[:, j], float(limits[j])) for j in range(len(lin))]
    lin_var = np.maximum(((g_lin @ lin_cov) * g_lin).sum(axis=2).T, 0.0)
    # A future level strays from the trend as the past ones did: the band of a level to come
    # is the trend's own uncertainty and the levels' spread around it.
    lin_sd = np.sqrt(lin_var + lin_spread[None, :] ** 2)
    # The quadratic only where the line's 80 % band reaches the limit within the look-ahead: on
    # a healthy machine that is nowhere, so the usual fit is one straight line per signal.
    reach = (lines + Z80 * lin_sd >= limits[None, :]).any(axis=0)
    candidates = [j for j in range(len(lin)) if reach[j]]
    quads: dict[int, tuple[F64, F64, float, float]] = {}
    if candidates:
        quad, quad_cov, _, quad_spread = _irls(hours, y[:, candidates], 2, scale[candidates])
        for i, j in enumerate(candidates):
            curv_se = math.sqrt(max(float(quad_cov[i, 2, 2]), 0.0))
            w = quadratic_weight(float(quad[i, 2]), curv_se)
            if w > 0:
                quads[j] = (quad[i], quad_cov[i], float(quad_spread[i]), w)
    out: list[Crossing] = []
    for j in range(y.shape[1]):
        mean, var, spread2 = lines[:, j], lin_var[:, j], float(lin_spread[j]) ** 2
        w, level, rate = 0.0, float(lin[j, 0]), float(lin[j, 1])
        if j in quads:
            # Which curve the degradation follows is itself uncertain: the line and the
            # quadratic are mixed by their weights, and their disagreement widens the band
            # (the variance of a two-model mixture).
            coef, cov, q_spread, w = quads[j]
            q_mean = g_quad @ coef
            q_var = np.maximum(((g_quad @ cov) * g_quad).sum(axis=1), 0.0)
            gap = q_mean - mean
            var = w * q_var + (1 - w) * var + w * (1 - w) * gap * gap
            mean = mean + w * gap
            spread2 = w * q_spread**2 + (1 - w) * spread2
            level = w * float(coef[0]) + (1 - w) * level
            rate = w * float(coef[1]) + (1 - w) * rate
        sd = np.sqrt(var + spread2)
        half = Z80 * sd * (float(widening[j]) if widening is not None else 1.0)
        limit = float(limits[j])
        out.append(
            Crossing(
                level=level,
                rate=rate / 3600.0,
                eta=_first_at_or_above(future, mean, limit) * 3600.0,
                near=_first_at_or_above(future, mean + half, limit) * 3600.0,
                far=_first_at_or_above(future, mean - half, limit) * 3600.0,
                curved=w > 0.5,
                eta_linear=eta_lin[j] * 3600.0,
                path=mean[1:],
                path_sd=sd[1:],
            )
        )
    return out
