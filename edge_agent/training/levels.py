"""When is a signal's level abnormal? Fitted on the asset's normal data, judged in the graph.

Absolute bands fail in both directions. Three hours of a temperature that follows the daily
ambient cycle hold only a few independent level observations, so tomorrow afternoon leaves any
band drawn around them; and a band wide enough for that cannot see a sensor that drifts by
ten degrees. What stays put when ambient or load move is how the levels relate to each other:
motor and fluid temperature rise together with ambient, flow, current and pressure move together
with load. So each signal's window level is predicted from the other signals' levels (ridge
regression on standardized levels), and a level is abnormal when it leaves the *prediction
interval* of that relation:

    |residual − mean| > k · σ · sqrt(1 + h)

σ is the residual's spread on normal data; k is a statistical tolerance factor for the coverage
and confidence asked for, computed from the residual's *effective* number of independent
observations (samples over integrated autocorrelation time); h is the leverage of the current
levels — how far they lie from anything seen, measured with the predictors' covariance and their
own effective sample counts. Levels far outside the recorded operating range therefore widen the
interval instead of raising alerts, and every width narrows by itself as more data is given.
A signal the others do not explain degenerates to a plain tolerance band around its own level.
Nothing here is fitted to a particular data set: the only knobs are coverage, confidence and a
small ridge penalty that keeps collinear predictors (current, flow and pressure all follow load)
from producing huge opposing coefficients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def effective_samples(series: F64) -> float:
    """n / τ, with τ the integrated autocorrelation time summed up to the first non-positive
    autocorrelation (Geyer's initial positive sequence, simplified). At least 1."""
    x = np.asarray(series, np.float64)
    n = len(x)
    if n < 2:
        return float(n)
    x = x - x.mean()
    var = float(np.dot(x, x))
    if var <= 0.0:
        return 1.0
    spec = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(spec * np.conj(spec))[:n] / var
    nonpos = np.flatnonzero(acf[1:] <= 0.0)
    stop = int(nonpos[0]) + 1 if len(nonpos) else n
    tau = 1.0 + 2.0 * float(np.sum(acf[1:stop]))
    return max(1.0, n / tau)


def _chi2_cdf(x: float, dof: float) -> float:
    """Regularized lower incomplete gamma P(dof/2, x/2), by its power series."""
    a, y = dof / 2.0, x / 2.0
    if y <= 0.0:
        return 0.0
    term = total = 1.0 / a
    k = 0
    while term > total * 1e-12 and k < 100_000:
        k += 1
        term *= y / (a + k)
        total += term
    return min(1.0, math.exp(a * math.log(y) - y - math.lgamma(a)) * total)


def _chi2_quantile(q: float, dof: float) -> float:
    """Chi-square quantile: Wilson-Hilferty for many degrees of freedom, where it is accurate;
    bisection on the exact CDF for few, where it is not. (No SciPy on gateways.)"""
    z = NormalDist().inv_cdf(q)
    h = 2.0 / (9.0 * dof)
    if dof >= 100:
        return dof * (1.0 - h + z * math.sqrt(h)) ** 3
    lo, hi = 0.0, dof + 20.0 * math.sqrt(2.0 * dof) + 50.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if _chi2_cdf(mid, dof) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def tolerance_factor(n: float, coverage: float, confidence: float) -> float:
    """Howe's two-sided normal tolerance factor k: mean ± k·sd covers `coverage` of the
    population with `confidence`, estimated from `n` independent observations (n ≥ 2)."""
    n = max(2.0, n)
    z = NormalDist().inv_cdf((1.0 + coverage) / 2.0)
    dof = n - 1.0
    return math.sqrt(dof * (1.0 + 1.0 / n) * z * z / _chi2_quantile(1.0 - confidence, dof))


def window_levels(segments: list[F64], window: int, hop: int) -> F64:
    """Means over each window (every `hop` samples) of each gap-free segment, concatenated:
    the level the model's level error judges."""
    parts = []
    for seg in segments:
        if len(seg) < window:
            continue
        view = np.lib.stride_tricks.sliding_window_view(seg, window, axis=0)[::hop]
        parts.append(view.mean(axis=2))
    if not parts:
        return np.zeros((0, segments[0].shape[1] if segments else 0))
    return np.concatenate(parts)


def measurement_noise(segments: list[F64]) -> F64:
    """Per column: variance of the sample-to-sample noise, var(first difference) / 2, pooled
    over segments. For a process that moves slowly between samples this is the sensor noise
    (quantization included); fast process movement would only make it larger."""
    diffs = [np.diff(seg, axis=0) for seg in segments if len(seg) >= 2]
    if not diffs:
        return np.zeros(segments[0].shape[1] if segments else 0)
    d = np.concatenate(diffs)
    out: F64 = np.mean(d * d, axis=0) / 2.0
    return out


# Half-width of a level that is not judged: the graph's excess is then always 0.
UNJUDGED = 1e6


@dataclass(frozen=True)
class LevelRelations:
    """Everything the graph needs to judge levels; arrays over S signals (standardized units)."""

    centre: F64  # (S,) mean level
    coef: F64  # (S, S) row j: weights of the other signals' centred levels; zero diagonal
    resid_mean: F64  # (S,)
    resid_scale: F64  # (S,) residual standard deviation (floored)
    half_width: F64  # (S,) k · σ at zero leverage; UNJUDGED for levels not judged
    leverage: F64  # (S, S, S) per target j: quadratic form over centred levels
    level_effective_samples: F64  # (S,)
    explained: F64  # (S,) share of the level variance the relation explains (R²)
    judged: npt.NDArray[np.bool_]  # (S,) whether the level moved beyond noise in the data

    def without_judgement(self) -> LevelRelations:
        """The same fit with no level judged (the graph's level error is then always 0)."""
        return replace(
            self,
            coef=np.zeros_like(self.coef),
            half_width=np.full_like(self.half_width, UNJUDGED),
            leverage=np.zeros_like(self.leverage),
            judged=np.zeros_like(self.judged),
        )


def fit_level_relations(
    levels: F64,
    coverage: float,
    confidence: float,
    noise_variance: F64 | None = None,
    ridge: float = 0.01,
) -> LevelRelations:
    """`levels`: (windows, S) standardized window levels of normal data, in time order.
    `noise_variance`: per signal, the variance measurement noise alone gives a window level.

    A level whose variance in the data is not significantly above what its measurement noise
    explains has shown nothing of how the process moves it (ten minutes of a temperature), so
    nothing can be said about where it may go: it is neither judged nor used as a predictor.
    """
    n, s = levels.shape
    centre = levels.mean(axis=0)
    z = levels - centre
    n_eff = np.array([effective_samples(z[:, j]) for j in range(s)])
    var = z.var(axis=0)
    if noise_variance is None:
        judged = np.ones(s, dtype=bool)
    else:
        dof = np.maximum(n_eff - 1.0, 1.0)
        # One-sided chi-square test at `confidence`: variance beyond noise alone.
        factor = np.array([_chi2_quantile(confidence, d) / d for d in dof])
        judged = var > noise_variance * factor
    coef = np.zeros((s, s))
    leverage = np.zeros((s, s, s))
    resid_mean, resid_scale, explained = (np.zeros(s) for _ in range(3))
    half = np.full(s, UNJUDGED)
    for j in range(s):
        others = [i for i in range(s) if i != j and judged[i]]
        x = z[:, others]
        gram = x.T @ x / n + ridge * np.eye(len(others))
        beta = np.linalg.solve(gram, x.T @ z[:, j] / n) if others else np.zeros(0)
        coef[j, others] = beta
        r = z[:, j] - x @ beta
        resid_mean[j] = r.mean()
        # Floor: a signal the others determine exactly must not get a zero-width interval.
        resid_scale[j] = max(float(r.std()), 1e-3)
        explained[j] = 1.0 - float(r.var()) / var[j] if var[j] > 0 else 0.0
        if not judged[j]:
            continue
        half[j] = tolerance_factor(effective_samples(r), coverage, confidence) * resid_scale[j]
        # Coefficient uncertainty grows as 1/n_eff, not 1/n, for autocorrelated predictors:
        # scale the inverse covariance by each pair's effective counts.
        if others:
            scale = 1.0 / np.sqrt(np.outer(n_eff[others], n_eff[others]))
            leverage[j][np.ix_(others, others)] = np.linalg.inv(gram) * scale
    return LevelRelations(
        centre, coef, resid_mean, resid_scale, half, leverage, n_eff, explained, judged
    )
