"""Frozen transmitters: a signal that repeats exactly the same value for far longer than it ever
did in normal operation is reported as bad data ("stuck") instead of being scored: from the
sample at which its run reaches the limit.

A frozen value lowers the model's reconstruction error rather than raising it (a flat line is
the easiest thing to reconstruct), so the model cannot be relied on to notice. How long a healthy
signal may repeat itself depends on its resolution and on how the device is polled (a 0.1 °C
register on a quiet afternoon repeats for minutes; sample-and-hold repeats a slow poll on every
grid instant), so the limit comes from the asset's own normal data: twice the longest run seen
there, and never shorter than one window. The check itself runs in the assembler (`stuck_after`),
which sees every reading and can track when each value last changed at the cost of one comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

STUCK = "stuck"


def longest_runs(segments: Sequence[npt.NDArray[np.float64]]) -> list[int]:
    """Per column: the longest run of exactly repeated consecutive values within any segment."""
    if not segments:
        return []
    best = [0] * segments[0].shape[1]
    for seg in segments:
        # Values are compared as the float32 the pipeline carries.
        seg32 = seg.astype(np.float32)
        for col in range(seg32.shape[1]):
            x = seg32[:, col]
            if len(x) == 0:
                continue
            change = np.flatnonzero(x[1:] != x[:-1])
            bounds = np.concatenate([[-1], change, [len(x) - 1]])
            best[col] = max(best[col], int(np.max(np.diff(bounds))))
    return best


def stuck_limits(
    segments: Sequence[npt.NDArray[np.float64]], window: int, constant: Sequence[bool]
) -> list[int | None]:
    """Samples of exact repetition after which a signal counts as stuck; None for signals that
    were constant in the normal data (a set point or a status cannot be told from a frozen one)."""
    runs = longest_runs(segments)
    return [None if c else max(2 * r, window) for r, c in zip(runs, constant, strict=True)]
