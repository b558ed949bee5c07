"""Calibrating the level-shift stage (`stream/level_shift.py`) on the asset's normal data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_agent.stream.level_shift import ShiftParams, shifts
from edge_agent.training.levels import effective_samples, tolerance_factor

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ShiftFit:
    params: ShiftParams
    effective_samples: list[float]
    judged: list[bool] = field(default_factory=list)


def fit_shift(
    segments: Sequence[F64],
    window: int,
    coverage: float,
    confidence: float,
    constant: Sequence[bool],
    time_constant: float | None = None,
) -> ShiftFit:
    """Tolerances from standardized normal data (gap-free segments in time order). A signal that
    was constant in training is not judged: nothing says how much it moves when all is well."""
    tc = float(window) if time_constant is None else time_constant
    n = segments[0].shape[1]
    per_seg = shifts(segments, window, tc)
    # The first window of a segment has no reference yet: its shift is 0 by construction.
    d = np.concatenate([s[1:] for s in per_seg if len(s) > 1] or [np.zeros((0, n))])
    offset, tol, n_eff, judged = [], [], [], []
    for j in range(n):
        col = d[:, j]
        ok = len(col) >= 2 and not constant[j] and float(col.std()) > 0.0
        ne = effective_samples(col) if len(col) >= 2 else 0.0
        n_eff.append(round(float(ne), 1))
        judged.append(ok)
        offset.append(float(col.mean()) if ok else 0.0)
        tol.append(
            tolerance_factor(ne, coverage, confidence) * float(col.std()) if ok else math.inf
        )
    return ShiftFit(ShiftParams(window, tc, offset, tol), n_eff, judged)
