"""Per-signal standardization with the scaler stored in the model bundle."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_agent.types import FloatArray


class Scaler:
    def __init__(self, mean: Sequence[float], scale: Sequence[float]) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.scale = np.asarray(scale, dtype=np.float32)
        if self.mean.shape != self.scale.shape or self.mean.ndim != 1:
            raise ValueError("mean and scale must be 1-D and of equal length")
        if not np.all(np.isfinite(self.scale)) or np.any(self.scale <= 0):
            raise ValueError("scale must be finite and positive")

    def apply(self, x: FloatArray) -> FloatArray:
        out: FloatArray = ((x - self.mean) / self.scale).astype(np.float32, copy=False)
        return out
