"""Frozen transmitters: a signal that repeats exactly the same value for far longer than it ever
did in normal operation is reported as bad data ("stuck") instead of being scored.

A frozen value lowers the model's reconstruction error rather than raising it (a flat line is
the easiest thing to reconstruct), so the model cannot be relied on to notice. How long a healthy
signal may repeat itself depends on its resolution and on how the device is polled (a 0.1 °C
register on a quiet afternoon repeats for minutes; sample-and-hold repeats a slow poll on every
grid instant), so the limit comes from the asset's own normal data: twice the longest run seen
there, and never shorter than one window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edge_agent.types import Sample

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


class StuckSignalCheck:
    """Pure per-asset state: marks a grid sample invalid, with issue (column, "stuck"), while any
    signal has repeated its value for more than its limit. Invalid samples are already handled
    downstream (windows restart, the data-quality monitor raises one event and clears it)."""

    def __init__(self, limits: Sequence[int | None]) -> None:
        self._limits = list(limits)
        n = len(self._limits)
        self._last = np.full(n, np.nan, np.float32)
        self._runs = np.zeros(n, np.int64)
        self._checked = np.array([lim is not None for lim in self._limits])
        self._limit = np.array([lim or 0 for lim in self._limits], np.int64)
        self._running = False  # some run is longer than 1

    def apply(self, sample: Sample) -> Sample:
        values = sample.values
        # NaN != NaN, so a missing value breaks a run, as it should.
        same = values == self._last
        self._last = values.copy()
        if not same.any():
            # The usual case with live noise: nothing repeated, one cheap test per sample.
            if self._running:
                self._runs.fill(1)
                self._running = False
            return sample
        self._runs = np.where(same, self._runs + 1, 1)
        self._running = True
        stuck = self._checked & (self._runs > self._limit)
        if not stuck.any():
            return sample
        issues = tuple(sample.issues) + tuple((int(c), STUCK) for c in np.flatnonzero(stuck))
        return Sample(ts=sample.ts, values=values, valid=False, issues=issues)
