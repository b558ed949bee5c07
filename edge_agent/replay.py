"""Replay recorded data through exactly the pipeline the agent runs (assembler, windows, scaler,
detector, alert policy), in virtual time: each CSV row becomes one batch at its timestamp."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from edge_agent.alerts.policy import AlertPolicy
from edge_agent.config import SignalRef
from edge_agent.csvdata import Table
from edge_agent.pipeline import AssetPipeline
from edge_agent.stream.rows import table_batches
from edge_agent.types import (
    AlertEvent,
    Batch,
    DataQualityEventKind,
    FloatArray,
    Score,
)


@dataclass(frozen=True, slots=True)
class ReplayRow:
    ts: float
    score: float  # NaN where no window ended at this row
    alert_active: bool
    events: tuple[AlertEvent, ...]
    # While the asset's data is bad (missing, stale, stuck): what the data-quality event said,
    # e.g. "discharge_pressure stuck"; "" otherwise. Such samples are not scored.
    bad_data: str = ""
    bad_data_raised: bool = False  # a data-quality episode started at this row


def batches(sigs: Sequence[SignalRef], table: Table) -> Iterator[tuple[float, list[Batch]]]:
    """Each CSV row as the batches the asset's sources would have delivered (`stream/rows.py`)."""
    return table_batches([(s.source, s.point_name) for s in sigs], [s.name for s in sigs], table)


def replay(pipeline: AssetPipeline, table: Table) -> Iterator[ReplayRow]:
    """Rows are fed as batches of the signals' sources (empty cells: no reading; bad cells:
    bad-quality readings)."""
    bad = ""
    for ts, row_batches in batches(pipeline.asset.signals, table):
        before = pipeline.stats.windows
        events: list[AlertEvent] = []
        for b in row_batches:
            events.extend(pipeline.push(b))
        raised = False
        for q in pipeline.take_quality_events():
            if q.event is DataQualityEventKind.RAISED:
                raised = True
                bad = ", ".join(f"{n} {why}" for n, why in q.issues) or "bad data"
            else:
                bad = ""
        scored = pipeline.stats.windows > before and pipeline.last_score is not None
        score = pipeline.last_score.score if scored and pipeline.last_score else float("nan")
        active = pipeline.policy.active_alert is not None
        yield ReplayRow(ts, score, active, tuple(events), bad, raised)


@dataclass(frozen=True, slots=True)
class BatchedReplay:
    ts: np.ndarray  # every sample on the grid
    window_ts: np.ndarray  # samples at which a window ended
    scores: np.ndarray
    alert_active: np.ndarray  # per grid sample
    invalid: np.ndarray  # per grid sample: bad data (missing, stale, stuck), so not scored
    events: tuple[AlertEvent, ...]


def replay_batched(
    pipeline: AssetPipeline,
    table: Table,
    score: Callable[[FloatArray], tuple[FloatArray, FloatArray]] | None = None,
    policy: AlertPolicy | None = None,
    batch: int = 1024,
) -> BatchedReplay:
    """The same computation as `replay`, reordered for speed: collect every window first, score
    them in large batches, then run the alert policy over the scores in time order. Used by the
    quality benchmark to compare detectors (int8, fp32, teacher) on identical windows."""
    sample_ts: list[float] = []
    invalid: list[bool] = []
    win_ts: list[float] = []
    windows: list[FloatArray] = []
    lasts: list[FloatArray] = []
    ratios: list[FloatArray | None] = []
    for _ts, row_batches in batches(pipeline.asset.signals, table):
        for b in row_batches:
            for sample in pipeline.assembler.push(b):
                sample_ts.append(sample.ts)
                invalid.append(not sample.valid)
                r = pipeline.shift_ratio(sample.values, sample.valid)
                w = pipeline.windows.push(sample)
                if w is not None:
                    win_ts.append(sample.ts)
                    windows.append(w)
                    lasts.append(w[-1])
                    ratios.append(r)
    n = len(pipeline.bundle.manifest.signals)
    stacked = np.stack(windows) if windows else np.zeros((0, 1, n), np.float32)
    normalized = pipeline.scaler.apply(stacked)
    if score is None:
        parts = [
            pipeline.detector.score(normalized[i : i + batch])
            for i in range(0, len(normalized), batch)
        ]
        scores = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.float32)
        errors = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, n), np.float32)
    else:
        scores, errors = score(normalized)
    policy = policy or pipeline.policy
    events: list[AlertEvent] = []
    active_at: list[tuple[float, bool]] = []
    combined: list[float] = []
    for t, s, e, last, r in zip(win_ts, scores, errors, lasts, ratios, strict=True):
        value, why = pipeline.combined(float(s), e, r, policy.params.raise_threshold)
        combined.append(value)
        ev = policy.update(Score(pipeline.name, t, value, why, last))
        if ev is not None:
            events.append(ev)
        active_at.append((t, policy.active_alert is not None))
    grid = np.asarray(sample_ts)
    alert = np.zeros(len(grid), dtype=bool)
    if active_at:
        wt = np.array([t for t, _ in active_at])
        st = np.array([a for _, a in active_at])
        idx = np.searchsorted(wt, grid, side="right") - 1
        alert = np.where(idx >= 0, st[np.maximum(idx, 0)], False)
    return BatchedReplay(
        grid, np.asarray(win_ts), np.asarray(combined), alert, np.asarray(invalid, bool),
        tuple(events),
    )  # fmt: skip
