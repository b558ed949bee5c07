"""Align one asset's signals, which arrive in batches from one or more sources, onto its grid.

The grid is `anchor + k * period` (k integer, never accumulated, so it does not drift), anchored at
the first batch. Each grid instant takes the last value of every signal (sample-and-hold). The
sample is invalid when a signal is missing, older than `max_age`, not finite or of bad quality.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from edge_agent.types import Batch, Quality, Sample


class Assembler:
    def __init__(
        self,
        columns: Mapping[tuple[str, str], int],
        period: float,
        max_age: float,
    ) -> None:
        """`columns` maps (source, point) to the column of the signal in the asset's sample."""
        if period <= 0 or max_age <= 0:
            raise ValueError("period and max_age must be positive")
        self._columns = dict(columns)
        self._sources = {src for src, _ in self._columns}
        n = 1 + max(self._columns.values())
        self._period = period
        self._max_age = max_age
        # Tolerance for "on the grid": sources that schedule polls on the same grid land exactly on
        # it; float noise must not move a sample to the next slot.
        self._tol = period * 1e-6
        self._values = np.full(n, np.nan, dtype=np.float32)
        self._ts = np.full(n, -np.inf)
        self._ok = np.zeros(n, dtype=bool)
        self._anchor: float | None = None
        self._k = 0  # index of the next grid instant to emit

    @property
    def sources(self) -> set[str]:
        return self._sources

    def _instant(self, k: int) -> float:
        assert self._anchor is not None
        return self._anchor + k * self._period

    def _issues(self, t: float) -> tuple[tuple[int, str], ...]:
        out = []
        for col in range(len(self._ts)):
            if self._ts[col] == -np.inf:
                out.append((col, "missing"))
            elif t - self._ts[col] > self._max_age + self._tol:
                out.append((col, "stale"))
            elif not self._ok[col]:
                out.append((col, "bad"))
        return tuple(out)

    def _sample_at(self, t: float) -> Sample:
        fresh = (t - self._ts) <= self._max_age + self._tol
        valid = bool(np.all(fresh & self._ok))
        issues = () if valid else self._issues(t)
        return Sample(ts=t, values=self._values.copy(), valid=valid, issues=issues)

    def _emit_until(self, ts: float, inclusive: bool, out: list[Sample]) -> None:
        assert self._anchor is not None
        limit = ts + self._tol if inclusive else ts - self._tol
        # Instants after this are invalid for sure (some signal is older than max_age).
        stale_after = float(np.min(self._ts)) + self._max_age + self._tol
        while (t := self._instant(self._k)) <= limit:
            if t > stale_after:
                # After a long silence one invalid sample stands for the whole gap, instead of
                # thousands of them; the window buffer only needs to see that there was a gap.
                last = max(self._k, math.floor((limit - self._anchor) / self._period))
                while last > self._k and self._instant(last) > limit:
                    last -= 1
                t_last = self._instant(last)
                out.append(
                    Sample(
                        ts=t_last,
                        values=self._values.copy(),
                        valid=False,
                        issues=self._issues(t_last),
                    )
                )
                self._k = last + 1
                return
            out.append(self._sample_at(t))
            self._k += 1

    def push(self, batch: Batch) -> list[Sample]:
        """Feed one batch; returns the grid samples that became complete, oldest first."""
        out: list[Sample] = []
        if batch.source not in self._sources:
            return out
        if self._anchor is None:
            self._anchor = batch.ts
        else:
            self._emit_until(batch.ts, inclusive=False, out=out)
        for r in batch.readings:
            col = self._columns.get((batch.source, r.point))
            if col is None:
                continue
            self._values[col] = r.value
            self._ts[col] = batch.ts
            self._ok[col] = r.quality != Quality.BAD and math.isfinite(r.value)
        self._emit_until(batch.ts, inclusive=True, out=out)
        return out
