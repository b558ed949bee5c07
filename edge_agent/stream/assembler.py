"""Align one asset's signals, which arrive in batches from one or more sources, onto its grid.

The grid is `anchor + k * period` (k integer, never accumulated, so it does not drift), anchored at
the first batch. Instant k owns the *slot* (t_k - period/2, t_k + period/2]: a reading belongs to
its nearest grid instant, so timestamps that jitter around the grid (historian exports, MQTT
payload times) land where they were meant to, instead of every late one sliding to the next
instant. An instant is emitted as soon as every signal has a reading in its slot (a poll on the
grid completes its instant at once, no added latency), or else when a later batch shows that its
slot has passed; a signal without a reading of its own then holds its last value
(sample-and-hold) while that is no older than `max_age`.

The sample is invalid when a signal is missing, older than `max_age`, not finite or of bad
quality, or stuck: its value has lasted unchanged for its `stuck_after` limit of grid instants or
more (see `stream/stuck.py` for where the limits come from).

A reading stamped no later than the value already held for its signal (a duplicated or
out-of-order historian row, a device clock stepping back) is dropped and counted, never applied:
time only moves forward per signal. A reading that lands in a slot already emitted (two readings
in one slot) updates the held value and is counted as late.

Training, replay and the live agent all put their batches through this class (see
`stream/assembly.py` for the training side), so what a model learns from is what it will see.

This runs once per batch for every asset, so the per-signal state lives in plain Python lists:
for a handful of signals, list stores and `min`/`all` cost a fraction of the equivalent numpy
scalar operations. The float32 sample row is built once per grid instant; the conversion
(float64 → float32) is the same as storing into a float32 array, so samples are bit-identical.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_agent.stream.stuck import STUCK
from edge_agent.types import Batch, Quality, Sample


@dataclass(slots=True)
class AssemblyCounts:
    """What the assembler did with its input, for training reports and metrics."""

    batches: int = 0
    late_readings: int = 0  # landed in a slot already emitted: held for the next instant
    # Per column: instants that held an earlier value because no reading landed in their slot,
    # and readings dropped because they were stamped the same as, or before, the value held.
    held: list[int] = field(default_factory=list)
    duplicate: list[int] = field(default_factory=list)
    out_of_order: list[int] = field(default_factory=list)


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
        # Tolerance for comparing times: float noise must not make a value on the edge of its
        # max age stale. At least 1 µs: float64 epoch seconds are spaced 0.24 µs apart, so a
        # relative tolerance alone (50 ns at 0.05 s) would be below their resolution.
        self._tol = max(period * 1e-6, 1e-6)
        self._values: list[float] = [math.nan] * n
        self._ts: list[float] = [-math.inf] * n
        self._ok: list[bool] = [False] * n
        # Slot of each column's latest reading; an instant is complete when all reached it.
        self._slot_of: list[int] = [-1] * n
        self._anchor: float | None = None
        self._k = 0  # index of the next grid instant to emit
        self.counts = AssemblyCounts(held=[0] * n, duplicate=[0] * n, out_of_order=[0] * n)
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
        self._stuck_due: float = min(self._stuck_limits) - 1

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
        # Instant k carries a value unchanged since instant c: a run of k - c + 1 samples. A run
        # as long as the limit is stuck: with the limit at its floor (one window) no window made
        # of one frozen value is ever scored, not even the first after a restart, when the run's
        # earlier part is unknown (a frozen value is the easiest thing to reconstruct, yet against
        # the other signals moving it scores far over the gross cut).
        return tuple(
            (col, STUCK)
            for col, (c, limit) in enumerate(zip(self._changed, self._stuck_limits, strict=True))
            if k - c + 1 >= limit
        )

    def _sample(self, k: int, t: float, valid: bool) -> Sample:
        """Instant k at time t from the current state; `valid`: every signal fresh and good."""
        if valid and k >= self._stuck_due:
            self._stuck_due = min(
                c + limit - 1 for c, limit in zip(self._changed, self._stuck_limits, strict=True)
            )
            if k >= self._stuck_due and (stuck := self._stuck(k)):
                return Sample(ts=t, values=self._row(), valid=False, issues=stuck)
        if valid:
            # Positional, default issues: the common case, once per grid instant (keywords cost
            # a quarter more in a frozen dataclass's __init__).
            return Sample(t, np.array(self._values, dtype=np.float32), True)
        return Sample(ts=t, values=self._row(), valid=False, issues=self._issues(t))

    def _row(self) -> np.ndarray:
        return np.array(self._values, dtype=np.float32)

    def _emit_through(self, last: int, out: list[Sample]) -> None:
        """Emit instants up to `last`, whose slots have passed, from the values held now."""
        anchor = self._anchor
        assert anchor is not None
        period, k = self._period, self._k
        oldest = min(self._ts)
        fresh_within = self._max_age + self._tol
        # Instants after this are invalid for sure (some signal is older than max_age).
        stale_after = oldest + fresh_within
        held = self.counts.held
        while k <= last:
            t = anchor + k * period
            if t > stale_after:
                # After a long silence one invalid sample stands for the whole gap, instead of
                # thousands of them; the window buffer only needs to see that there was a gap.
                t_last = anchor + last * period
                out.append(
                    Sample(ts=t_last, values=self._row(), valid=False, issues=self._issues(t_last))
                )
                self._k = last + 1
                return
            for col, slot in enumerate(self._slot_of):
                if slot < k:
                    held[col] += 1
            # Every signal is fresh exactly when the oldest one is: float subtraction is monotonic.
            out.append(self._sample(k, t, t - oldest <= fresh_within and all(self._ok)))
            k += 1
        self._k = k

    def push(self, batch: Batch) -> list[Sample]:
        """Feed one batch; returns the grid samples that became complete, oldest first."""
        out: list[Sample] = []
        points = self._by_source.get(batch.source)
        if points is None:
            return out
        ts = batch.ts
        counts = self.counts
        counts.batches += 1
        anchor = self._anchor
        if anchor is None:
            self._anchor = anchor = ts
        # The nearest instant; a reading exactly half-way belongs to the earlier one.
        slot = math.ceil((ts - anchor) / self._period - 0.5 - self._tol / self._period)
        if slot > self._k:
            self._emit_through(slot - 1, out)  # their slots have passed
        values, stamps, ok, changed, slot_of = (
            self._values, self._ts, self._ok, self._changed, self._slot_of
        )  # fmt: skip
        bad, isfinite, first = Quality.BAD, math.isfinite, self._k
        for r in batch.readings:
            col = points.get(r.point)
            if col is None:
                continue
            if not ts > stamps[col]:  # a NaN stamp fails this too
                if ts == stamps[col]:
                    counts.duplicate[col] += 1
                else:
                    counts.out_of_order[col] += 1
                continue
            v = r.value
            if v != values[col]:  # NaN never equals: a missing value ends a run
                changed[col] = first
            values[col] = v
            stamps[col] = ts
            ok[col] = r.quality != bad and isfinite(v)
            slot_of[col] = slot
        if slot < self._k:
            counts.late_readings += sum(1 for r in batch.readings if r.point in points)
        elif min(slot_of) == slot:  # every signal has its reading for this instant
            t = anchor + slot * self._period
            out.append(self._sample(slot, t, all(ok)))
            self._k = slot + 1
        return out
