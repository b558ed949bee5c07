"""Simple detectors the model must beat, on the very windows the agent scores (benchmarks only).

Both work on window features (each signal's mean and standard deviation over the window,
standardized with the bundle's scaler) and are fitted on the training windows alone, thresholds
included, as a plant engineer would set them up from the same few minutes of data:
- PCA T² + Q (the multivariate statistical process control classic): principal components
  explaining 90 % of the variance; alarm when Hotelling's T² or the squared prediction error Q
  exceeds its 99th percentile on the training windows;
- k nearest neighbours: distance to the k-th nearest training window; alarm above the 99th
  percentile of the same distance among training windows (neighbours closer in time than a window
  left out, so overlapping windows do not vouch for each other).

A third, always alarm, gives the F1 floor: a detector that never stops alarming.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def window_features(windows: F32) -> F64:
    """(n, window, signals) standardized windows → (n, 2·signals): means and std deviations."""
    x = windows.astype(np.float64)
    return np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=1)


@dataclass(frozen=True)
class PcaT2Q:
    centre: F64
    scale: F64
    components: F64  # (k, features)
    variances: F64  # (k,)
    t2_limit: float
    q_limit: float

    @classmethod
    def fit(cls, train: F64, explained: float = 0.9, quantile: float = 0.99) -> PcaT2Q:
        centre = train.mean(axis=0)
        scale = np.maximum(train.std(axis=0), 1e-6)
        z = (train - centre) / scale
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        var = s**2 / max(len(z) - 1, 1)
        share = np.cumsum(var) / max(float(var.sum()), 1e-12)
        k = int(np.searchsorted(share, explained) + 1)
        comps, variances = vt[:k], np.maximum(var[:k], 1e-12)
        t2, q = cls._stats(z, comps, variances)
        return cls(
            centre,
            scale,
            comps,
            variances,
            float(np.quantile(t2, quantile)),
            float(np.quantile(q, quantile)),
        )

    @staticmethod
    def _stats(z: F64, comps: F64, variances: F64) -> tuple[F64, F64]:
        scores = z @ comps.T
        t2 = np.sum(scores**2 / variances, axis=1)
        resid = z - scores @ comps
        return t2, np.sum(resid**2, axis=1)

    def alarms(self, features: F64) -> Bools:
        z = (features - self.centre) / self.scale
        t2, q = self._stats(z, self.components, self.variances)
        out: Bools = (t2 > self.t2_limit) | (q > self.q_limit)
        return out


@dataclass(frozen=True)
class Knn:
    train: F64
    scale: F64
    k: int
    limit: float

    @classmethod
    def fit(
        cls, train: F64, window: int, k: int = 5, quantile: float = 0.99, most: int = 2000
    ) -> Knn:
        # Pairwise distances grow with the square: hours of hop-1 windows are thinned evenly.
        step = max(1, -(-len(train) // most))
        train, window = train[::step], max(1, -(-window // step))
        scale = np.maximum(train.std(axis=0), 1e-6)
        z = train / scale
        d = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(axis=2))
        # Windows overlapping in time are near copies of each other: they do not count.
        idx = np.arange(len(z))
        d[np.abs(idx[:, None] - idx[None, :]) < window] = np.inf
        kth = np.sort(d, axis=1)[:, min(k, len(z)) - 1]
        finite = kth[np.isfinite(kth)]
        limit = float(np.quantile(finite, quantile)) if finite.size else float("inf")
        return cls(z, scale, k, limit)

    def distances(self, features: F64, batch: int = 512) -> F64:
        z = features / self.scale
        out = []
        for i in range(0, len(z), batch):
            d = np.sqrt(((z[i : i + batch, None, :] - self.train[None, :, :]) ** 2).sum(axis=2))
            out.append(np.sort(d, axis=1)[:, min(self.k, len(self.train)) - 1])
        return np.concatenate(out) if out else np.zeros(0)

    def alarms(self, features: F64) -> Bools:
        out: Bools = self.distances(features) > self.limit
        return out
