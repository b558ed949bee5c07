"""Replay recorded data through exactly the pipeline the agent runs (assembler, windows, scaler,
detector, alert policy), in virtual time: each CSV row becomes one batch at its timestamp."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from edge_agent.alerts.policy import AlertPolicy
from edge_agent.config import SignalConfig
from edge_agent.csvdata import Table
from edge_agent.pipeline import AssetPipeline, Scorer
from edge_agent.stream.rows import table_batches
from edge_agent.types import (
    AlertEvent,
    AlertEventKind,
    Batch,
    DataQualityEvent,
    DataQualityEventKind,
)


@dataclass(frozen=True, slots=True)
class ReplayRow:
    ts: float
    score: float  # NaN where no window ended at this row
    # An alert's condition holds (raised, not returned to normal): the sample is flagged.
    alert_active: bool
    events: tuple[AlertEvent, ...]
    # While the asset's data is bad (missing, stale, stuck): what the data-quality event said,
    # e.g. "discharge_pressure stuck"; "" otherwise. Such samples are not scored.
    bad_data: str = ""
    bad_data_raised: bool = False  # a data-quality episode started at this row
    # An alert is open (its episode, quiet period included): what a subscriber holds open.
    alert_open: bool = False


def batches(sigs: Sequence[SignalConfig], table: Table) -> Iterator[tuple[float, list[Batch]]]:
    """Each CSV row as the batches the asset's sources would have delivered (`stream/rows.py`)."""
    return table_batches([(s.source, s.point_name) for s in sigs], [s.name for s in sigs], table)


def replay(pipeline: AssetPipeline, table: Table) -> Iterator[ReplayRow]:
    """Rows are fed as batches of the signals' sources (empty cells: no reading; bad cells:
    bad-quality readings), each batch pushed as the live agent pushes it."""
    bad = ""
    state = _state(pipeline.policy)
    for ts, row_batches in batches(pipeline.asset.signals, table):
        outs = [pipeline.push(b) for b in row_batches]
        events = tuple(e for out in outs for e in out.alerts)
        state = _state_after(events, state)
        raised = False
        for q in (q for out in outs for q in out.quality):
            if q.event is DataQualityEventKind.RAISED:
                raised = True
                bad = ", ".join(f"{n} {why}" for n, why in q.issues) or "bad data"
            else:
                bad = ""
        scores = [s for out in outs for s in out.scores]
        score = scores[-1].score if scores else float("nan")
        yield ReplayRow(ts, score, state[0], events, bad, raised, state[1])


def _state(policy: AlertPolicy) -> tuple[bool, bool]:
    """(condition active, alert open) of `policy` now."""
    return policy.condition_active, policy.active_alert is not None


def _state_after(events: Sequence[AlertEvent], state: tuple[bool, bool]) -> tuple[bool, bool]:
    """(condition active, alert open) after `events`, given the state before them."""
    for e in events:
        is_open = e.event is not AlertEventKind.CLEARED
        state = (is_open and e.condition_active, is_open)
    return state


@dataclass(frozen=True, slots=True)
class BatchedReplay:
    ts: np.ndarray  # every sample on the grid
    window_ts: np.ndarray  # samples at which a window ended
    scores: np.ndarray
    alert_active: np.ndarray  # per grid sample: an alert's condition holds (flagged)
    invalid: np.ndarray  # per grid sample: bad data (missing, stale, stuck), so not scored
    events: tuple[AlertEvent, ...]
    quality: tuple[DataQualityEvent, ...] = ()
    alert_open: np.ndarray | None = None  # per grid sample: an alert's episode is open


def replay_batched(
    pipeline: AssetPipeline,
    table: Table,
    score: Scorer | None = None,
    policy: AlertPolicy | None = None,
    batch: int = 1024,
) -> BatchedReplay:
    """The same computation as `replay` (the pipeline's own `run`, which `push` is too), with
    windows scored `batch` at a time for speed, and the result as arrays over the grid. Used by
    the benchmarks to compare detectors (int8, fp32, teacher) on identical windows: `score` and
    `policy` replace the bundle's detector and alert policy."""
    state = _state(policy or pipeline.policy)
    all_batches = (
        b for _ts, row_batches in batches(pipeline.asset.signals, table) for b in row_batches
    )
    out = pipeline.run(all_batches, score, policy, max_batch=batch)
    grid = np.asarray(out.grid, dtype=np.float64)
    win_ts = np.asarray([s.ts for s in out.scores], dtype=np.float64)
    # The alert state changes only at the windows that produced an event: state after each
    # window, then per grid sample the state of the last window ended at or before it.
    by_ts: dict[float, list[AlertEvent]] = {}
    for e in out.alerts:
        by_ts.setdefault(e.ts, []).append(e)
    states: list[tuple[bool, bool]] = []
    for t in win_ts:
        state = _state_after(by_ts.get(float(t), ()), state)
        states.append(state)
    alert = np.zeros(len(grid), dtype=bool)
    alert_open = np.zeros(len(grid), dtype=bool)
    if states:
        st = np.asarray(states, dtype=bool).reshape(-1, 2)
        idx = np.searchsorted(win_ts, grid, side="right") - 1
        alert = np.where(idx >= 0, st[np.maximum(idx, 0), 0], False)
        alert_open = np.where(idx >= 0, st[np.maximum(idx, 0), 1], False)
    return BatchedReplay(
        grid, win_ts, np.asarray([s.score for s in out.scores]), alert,
        ~np.asarray(out.valid, dtype=bool), out.alerts, out.quality, alert_open,
    )  # fmt: skip
