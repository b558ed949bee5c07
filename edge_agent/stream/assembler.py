"""Align one asset's signals, which arrive in batches from one or more sources, onto its grid.

The grid is `anchor + k * period` (k integer, never accumulated, so it does not drift), anchored at
the first batch. Each grid instant takes the last value of every signal (sample-and-hold). The
sample is invalid when a signal is missing, older than `max_age`, not finite or of bad quality,
or stuck: its value has not changed for more grid instants than its `stuck_after` limit (see
`stream/stuck.py` for where the limits come from).

This runs once per batch for every asset, so the per-signal state lives in plain Python lists:
for a handful of signals, list stores and `min`/`all` cost a fraction of the equivalent numpy
scalar operations. The float32 sample row is built once per grid instant; the conversion
(float64 → float32) is the same as storing into a float32 array, so samples are bit-identical.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from edge_agent.stream.stuck import STUCK
from edge_agent.types import Batch, Quality, Sample


class Assembler:
    def __init__(
        self,
        columns: Mapping[tuple[str, str], int],
        period: float,
        max_age: float,
        stuck_after: Sequence[int | None] | None = None,
    ) -> None:
        """`columns` maps (source, point) to the column of the signal in the asset's sample;
        `stuck_after`, per column, the grid instants a value may last unchanged (None: no limit)."""
        if period <= 0 or max_age <= 0:
            raise ValueError("period and max_age must be positive")
        self._columns = dict(columns)
        self._sources = {src for src, _ in self._columns}
        # source → point → column: one dict lookup per reading, no tuple built per reading.
        self._by_source: dict[str, dict[str, int]] = {}
        for (src, point), col in self._columns.items():
            self._by_source.setdefault(src, {})[point] = col
        n = 1 + max(self._columns.values())
        self._period = period
        self._max_age = max_age
        # Tolerance for "on the grid": sources that schedule polls on the same grid land exactly on
        # it; float noise must not move a sample to the next slot.
        # At least 1 µs: float64 epoch seconds are spaced 0.24 µs apart, so a relative tolerance
        # alone (50 ns at 0.05 s) would let a batch exactly on the grid count as late.
        self._tol = max(period * 1e-6, 1e-6)
        self._values: list[float] = [math.nan] * n
        self._ts: list[float] = [-math.inf] * n
        self._ok: list[bool] = [False] * n
        self._anchor: float | None = None
        self._k = 0  # index of the next grid instant to emit
        # Stuck values: the first grid instant carrying each column's current value. Tracked at
        # the readings (one comparison each) rather than by comparing sample rows, which cost a
        # sixth of this stage's time.
        self._changed: list[int] = [0] * n
        limits = list(stuck_after) if stuck_after is not None else [None] * n
        if len(limits) != n:
            raise ValueError(f"stuck_after has {len(limits)} entries for {n} columns")
        self._stuck_limits = [lim if lim is not None else math.inf for lim in limits]
        # No column can be stuck before this instant. `_changed` only grows, so a bound computed
        # earlier stays valid: between checks an instant costs one comparison.
        self._stuck_due: float = min(self._stuck_limits)

    @property
    def sources(self) -> set[str]:
        return self._sources

    def _instant(self, k: int) -> float:
        assert self._anchor is not None
        return self._anchor + k * self._period

    def _issues(self, t: float) -> tuple[tuple[int, str], ...]:
        out = []
        for col, ts in enumerate(self._ts):
            if ts == -math.inf:
                out.append((col, "missing"))
            elif t - ts > self._max_age + self._tol:
                out.append((col, "stale"))
            elif not self._ok[col]:
                out.append((col, "bad"))
        return tuple(out)

    def _stuck(self, k: int) -> tuple[tuple[int, str], ...]:
        # Instant k carries a value unchanged since instant c: a run of k - c + 1 samples.
        return tuple(
            (col, STUCK)
            for col, (c, limit) in enumerate(zip(self._changed, self._stuck_limits, strict=True))
            if k - c >= limit
        )

    def _row(self) -> np.ndarray:
        return np.array(self._values, dtype=np.float32)

    def _emit_until(self, ts: float, inclusive: bool, out: list[Sample]) -> None:
        anchor = self._anchor
        assert anchor is not None
        period, k = self._period, self._k
        limit = ts + self._tol if inclusive else ts - self._tol
        t = anchor + k * period  # as `_instant(k)`, inlined: this runs for every batch
        if t > limit:
            return  # nothing due yet
        oldest = min(self._ts)
        fresh_within = self._max_age + self._tol
        # Instants after this are invalid for sure (some signal is older than max_age).
        stale_after = oldest + self._max_age + self._tol
        while t <= limit:
            if t > stale_after:
                # After a long silence one invalid sample stands for the whole gap, instead of
                # thousands of them; the window buffer only needs to see that there was a gap.
                last = max(k, math.floor((limit - anchor) / period))
                while last > k and self._instant(last) > limit:
                    last -= 1
                t_last = self._instant(last)
                out.append(
                    Sample(ts=t_last, values=self._row(), valid=False, issues=self._issues(t_last))
                )
                self._k = last + 1
                return
            # Every signal is fresh exactly when the oldest one is: float subtraction is monotonic.
            valid = t - oldest <= fresh_within and all(self._ok)
            stuck: tuple[tuple[int, str], ...] = ()
            if valid and k >= self._stuck_due:
                self._stuck_due = min(
                    c + limit for c, limit in zip(self._changed, self._stuck_limits, strict=True)
                )
                if k >= self._stuck_due:
                    stuck = self._stuck(k)
            if stuck:
                out.append(Sample(ts=t, values=self._row(), valid=False, issues=stuck))
            else:
                out.append(
                    Sample(
                        ts=t,
                        values=self._row(),
                        valid=valid,
                        issues=() if valid else self._issues(t),
                    )
                )
            k += 1
            t = anchor + k * period
        self._k = k

    def push(self, batch: Batch) -> list[Sample]:
        """Feed one batch; returns the grid samples that became complete, oldest first."""
        out: list[Sample] = []
        points = self._by_source.get(batch.source)
        if points is None:
            return out
        ts = batch.ts
        anchor = self._anchor
        if anchor is None:
            self._anchor = ts
        elif anchor + self._k * self._period <= ts - self._tol:
            # Grid instants before this batch are complete (checked inline: the usual batch lands
            # on the next instant, and a call per batch is a measurable share of the cost).
            self._emit_until(ts, inclusive=False, out=out)
        values, stamps, ok, changed = self._values, self._ts, self._ok, self._changed
        bad, isfinite, first = Quality.BAD, math.isfinite, self._k
        for r in batch.readings:
            col = points.get(r.point)
            if col is None:
                continue
            v = r.value
            if v != values[col]:  # NaN never equals: a missing value ends a run
                changed[col] = first
            values[col] = v
            stamps[col] = ts
            ok[col] = r.quality != bad and isfinite(v)
        self._emit_until(ts, inclusive=True, out=out)
        return out
