"""An online check of a stream's own forecasts: how far the levels that came fell from what
earlier fits had said, in units of the band those fits gave (z-scores), and how much the band
must widen for 80 % of them to have fallen inside.

Why: the band of a fit (the trend's parameter uncertainty, inflated for autocorrelation, and the
levels' spread around the trend) assumes the trend's shape is right. A degradation that curves
more or less than a quadratic, or a process that wanders on a longer time scale than the history
shows, makes the real misses larger; nothing in one fit can tell. Past fits of the same signal
can: each level that arrives is compared with what every fit of the last `leads` buckets
predicted for it. The widening is never below 1 (a band that held is not narrowed: a quiet hour
is no promise) and comes from the last `window_s` of checks only (what the stream does now)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def quantile_columns(a: F64, q: float) -> F64:
    """Per column of `a` (n × k, n ≥ 1), its `q` quantile as `np.quantile` gives it (linear
    between order statistics), from one partial sort: np.quantile's own bookkeeping costs
    more than the sort on the few hundred values of a bucket."""
    n = a.shape[0]
    pos = q * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    part = np.partition(a, (lo, hi), axis=0)
    out: F64 = part[lo] + (pos - lo) * (part[hi] - part[lo])
    return out


Z80 = 1.2815515655446004  # the band's own half width, in standard deviations


@dataclass(slots=True)
class Calibration:
    """For k forecast targets fitted together at the same level times. The stored fits sit in a
    ring of `leads` slots (a fit older than `leads` buckets has nothing left to check), so a new
    level is scored against all of them at once."""

    leads: int  # how many buckets ahead each fit is checked
    step_s: float  # the time between levels (the bucket)
    window_s: float  # checks older than this are forgotten
    min_checks: int  # fewer checks than this: no widening yet
    _times: F64 = field(default_factory=lambda: np.zeros(0))
    _mean: F64 = field(default_factory=lambda: np.zeros(0))  # slot × k × lead
    _sd: F64 = field(default_factory=lambda: np.zeros(0))
    _next: int = 0
    _checks: deque[tuple[float, F64]] = field(default_factory=deque)
    _count: int = 0

    def observe(self, t: float, level: F64) -> None:
        """A new level (k values) at time `t`: score it against every stored fit."""
        filled = min(self._next, self.leads)  # the ring fills from slot 0
        if filled:
            ahead = np.rint((t - self._times[:filled]) / self.step_s).astype(np.intp)
            slots = np.flatnonzero((ahead >= 1) & (ahead <= self.leads))
            if slots.size:
                col = ahead[slots] - 1
                mean = self._mean[slots, :, col]  # fits × k
                sd = self._sd[slots, :, col]
                rows = np.abs(level[None, :] - mean) / np.maximum(sd, 1e-12)
                self._checks.append((t, rows))
                self._count += len(rows)
        while self._checks and self._checks[0][0] < t - self.window_s:
            self._count -= len(self._checks.popleft()[1])

    def add_fit(self, t: float, mean: F64, sd: F64) -> None:
        """A fit whose last level is at `t`: its predicted levels `mean` and their standard
        deviations `sd` (k × `leads`, one column per bucket ahead, the first one bucket on)."""
        if not len(self._times):
            k = mean.shape[0]
            self._times = np.zeros(self.leads)
            self._mean = np.zeros((self.leads, k, self.leads))
            self._sd = np.ones((self.leads, k, self.leads))
        slot = self._next % self.leads
        self._times[slot] = t
        self._mean[slot] = mean
        self._sd[slot] = sd
        self._next += 1

    def widening(self, k: int) -> F64:
        """Per target, the factor the band's half width needs (≥ 1): the 80th percentile of the
        |z| of the recent checks over the band's own 1.28."""
        if self._count < self.min_checks:
            return np.ones(k)
        z = np.concatenate([z for _, z in self._checks])
        out: F64 = np.maximum(1.0, quantile_columns(z, 0.8) / Z80)
        return out
