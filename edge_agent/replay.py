"""Replay recorded data through exactly the pipeline the agent runs (assembler, windows, scaler,
detector, alert policy), in virtual time: each CSV row becomes one batch at its timestamp."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge_agent.csvdata import Table
from edge_agent.pipeline import AssetPipeline
from edge_agent.types import AlertEvent, Batch, Quality, Reading


@dataclass(frozen=True, slots=True)
class ReplayRow:
    ts: float
    score: float  # NaN where no window ended at this row
    alert_active: bool
    events: tuple[AlertEvent, ...]


def replay(pipeline: AssetPipeline, table: Table) -> Iterator[ReplayRow]:
    """Rows are fed as batches of the signals' sources; NaN cells become bad-quality readings."""
    sigs = pipeline.asset.signals
    x = table.select([s.name for s in sigs])
    for ts, row in zip(table.ts, x, strict=True):
        before = pipeline.stats.windows
        events: list[AlertEvent] = []
        by_source: dict[str, list[Reading]] = {}
        for sig, v in zip(sigs, row, strict=True):
            q = Quality.GOOD if np.isfinite(v) else Quality.BAD
            by_source.setdefault(sig.source, []).append(Reading(sig.point_name, float(v), q))
        for source, readings in by_source.items():
            events.extend(pipeline.push(Batch(source, float(ts), tuple(readings))))
        scored = pipeline.stats.windows > before and pipeline.last_score is not None
        score = pipeline.last_score.score if scored and pipeline.last_score else float("nan")
        yield ReplayRow(float(ts), score, pipeline.policy.active_alert is not None, tuple(events))
