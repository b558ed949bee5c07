"""The assembler keeps its per-signal state in Python lists for speed (issue 7). This checks it
against the straightforward numpy formulation it replaced, kept here as the executable
specification, on random streams with jitter, gaps, long silences, duplicated and out-of-order
stamps, bad quality, NaN, unknown points and several sources: every sample must be identical,
bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_agent.stream.assembler import Assembler
from edge_agent.types import Batch, Quality, Reading, Sample


class SpecAssembler:
    """Each reading belongs to its nearest grid instant; an instant is emitted when every signal
    has a reading in its slot, or when a later batch shows the slot has passed (then holding the
    last values); readings not newer than the value held are dropped."""

    def __init__(self, columns: dict[tuple[str, str], int], period: float, max_age: float):
        self.columns = columns
        self.sources = {src for src, _ in columns}
        n = 1 + max(columns.values())
        self.period, self.max_age, self.tol = period, max_age, max(period * 1e-6, 1e-6)
        self.values = np.full(n, np.nan, dtype=np.float32)
        self.ts = np.full(n, -np.inf)
        self.ok = np.zeros(n, dtype=bool)
        self.slot_of = np.full(n, -1)
        self.anchor: float | None = None
        self.k = 0

    def instant(self, k: int) -> float:
        assert self.anchor is not None
        return self.anchor + k * self.period

    def issues(self, t: float) -> tuple[tuple[int, str], ...]:
        out = []
        for col in range(len(self.ts)):
            if self.ts[col] == -np.inf:
                out.append((col, "missing"))
            elif t - self.ts[col] > self.max_age + self.tol:
                out.append((col, "stale"))
            elif not self.ok[col]:
                out.append((col, "bad"))
        return tuple(out)

    def emit_through(self, last: int, out: list[Sample]) -> None:
        stale_after = float(np.min(self.ts)) + self.max_age + self.tol
        while self.k <= last:
            t = self.instant(self.k)
            if t > stale_after:
                t_last = self.instant(last)
                out.append(Sample(t_last, self.values.copy(), False, self.issues(t_last)))
                self.k = last + 1
                return
            fresh = (t - self.ts) <= self.max_age + self.tol
            valid = bool(np.all(fresh & self.ok))
            out.append(Sample(t, self.values.copy(), valid, () if valid else self.issues(t)))
            self.k += 1

    def push(self, batch: Batch) -> list[Sample]:
        out: list[Sample] = []
        if batch.source not in self.sources:
            return out
        if self.anchor is None:
            self.anchor = batch.ts
        slot = math.ceil((batch.ts - self.anchor) / self.period - 0.5 - self.tol / self.period)
        if slot > self.k:
            self.emit_through(slot - 1, out)
        for r in batch.readings:
            col = self.columns.get((batch.source, r.point))
            if col is None or not batch.ts > self.ts[col]:
                continue
            self.values[col] = r.value
            self.ts[col] = batch.ts
            self.ok[col] = r.quality != Quality.BAD and math.isfinite(r.value)
            self.slot_of[col] = slot
        if slot >= self.k and np.all(self.slot_of == slot):
            valid = bool(np.all(self.ok))
            t = self.instant(slot)
            out.append(Sample(t, self.values.copy(), valid, () if valid else self.issues(t)))
            self.k = slot + 1
        return out


def random_stream(rng: np.random.Generator, n: int, period: float) -> list[Batch]:
    batches = []
    t = 1_767_225_600.0 + rng.uniform(0, 1)
    for _ in range(n):
        r = rng.random()
        if r < 0.02:
            t += period * rng.integers(5, 5000)  # long silence
        elif r < 0.1:
            t += period * rng.uniform(0.1, 3.0)  # off-grid, early or late
        elif r < 0.13:
            pass  # the same stamp again (a duplicate for signals of the same source)
        elif r < 0.16:
            t -= period * rng.uniform(0.1, 2.0)  # back in time
        elif r < 0.4:
            t += period * (1 + rng.uniform(-0.45, 0.45))  # jitter around the grid
        else:
            t += period  # on the grid
        source = "a" if rng.random() < 0.6 else ("b" if rng.random() < 0.9 else "other")
        readings = []
        for point in ("x", "y", "z", "unknown"):
            if rng.random() < 0.1:
                continue  # a point missing from this batch
            v = float(rng.normal() * 10.0 ** int(rng.integers(-3, 40)))  # beyond float32 too
            if rng.random() < 0.03:
                v = float(rng.choice([math.nan, math.inf, -math.inf]))
            q = Quality.BAD if rng.random() < 0.03 else Quality.GOOD
            readings.append(Reading(point, v, q))
        batches.append(Batch(source, t, tuple(readings)))
    return batches


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("seed", range(8))
def test_assembler_matches_its_numpy_specification(seed: int) -> None:
    rng = np.random.default_rng(seed)
    period = [1.0, 0.05, 0.1, 2.5][seed % 4]
    columns = {("a", "x"): 0, ("a", "y"): 1, ("b", "z"): 2, ("b", "x"): 3}
    if seed % 2:
        columns[("a", "z")] = 5  # column 4 never fed: always "missing"
    fast = Assembler(columns, period, max_age=period * rng.uniform(1.0, 4.0))
    spec = SpecAssembler(columns, period, fast._max_age)
    got = want = 0
    for b in random_stream(rng, 3000, period):
        a, s = fast.push(b), spec.push(b)
        assert len(a) == len(s)
        for x, y in zip(a, s, strict=True):
            assert (x.ts, x.valid, x.issues) == (y.ts, y.valid, y.issues)
            assert x.values.dtype == y.values.dtype == np.float32
            assert x.values.tobytes() == y.values.tobytes()
        got += sum(x.valid for x in a)
        want += len(a)
    # The stream exercised invalid samples, and valid ones unless a column is never fed.
    assert got < want
    assert got > 0 or seed % 2
