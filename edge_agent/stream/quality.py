"""Data-quality episodes of one asset, as pure state: samples in, at most one event per change.

An episode starts at the first invalid grid sample (a signal stale, bad or missing) and ends at
the next valid one; the assembler's samples say why they are invalid. Before the asset's data has
ever been complete, a few invalid samples are expected (sources connect one after another), so an
episode only starts after the first valid sample or after `grace` invalid samples in a row.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.types import (
    Batch,
    DataQualityEvent,
    DataQualityEventKind,
    Quality,
    Sample,
    SourceQualityEvent,
)


class DataQualityMonitor:
    def __init__(self, asset: str, signals: Sequence[str], grace: int = 10) -> None:
        self.asset = asset
        self.signals = list(signals)
        self.grace = grace
        self.degraded = False
        self._seen_valid = False
        self._invalid_run = 0

    def update(self, sample: Sample) -> DataQualityEvent | None:
        if sample.valid:
            self._seen_valid = True
            run, self._invalid_run = self._invalid_run, 0
            if not self.degraded:
                return None
            self.degraded = False
            return DataQualityEvent(
                self.asset, sample.ts, DataQualityEventKind.CLEARED, (), invalid_samples=run
            )
        self._invalid_run += 1
        if self.degraded or not (self._seen_valid or self._invalid_run >= self.grace):
            return None
        self.degraded = True
        issues = tuple((self.signals[col], why) for col, why in sample.issues)
        return DataQualityEvent(self.asset, sample.ts, DataQualityEventKind.RAISED, issues)


class SourceQualityMonitor:
    """The readings of connected sources, as pure state: batches in, at most one event per
    change (some readings not good / all good again), per source. The asset-level episodes
    above are what windows see; this says which device delivers the bad data."""

    def __init__(self) -> None:
        self._bad: dict[str, bool] = {}

    def update(self, batch: Batch, reason: str | None = None) -> SourceQualityEvent | None:
        bad = tuple(r.point for r in batch.readings if r.quality is not Quality.GOOD)
        if self._bad.get(batch.source, False) is bool(bad):
            return None
        self._bad[batch.source] = bool(bad)
        if not bad:
            return SourceQualityEvent(batch.source, DataQualityEventKind.CLEARED)
        return SourceQualityEvent(
            batch.source, DataQualityEventKind.RAISED, bad, len(batch.readings), reason
        )
