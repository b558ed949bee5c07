"""Training data through the agent's own stream stages: each file (a table) is one recording whose
rows become the batches a source would have delivered, put through the very assembler the agent
runs (nearest grid instant, sample-and-hold up to the max age, duplicates and out-of-order rows
dropped) and the window buffer. A missed sample in a historian export is held exactly as the
running agent would hold a missed poll, so the model learns from what it will later be shown.

The report says, per signal, what the assembler held, dropped or could not use, and how much of
the data became windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.csvdata import Table
from edge_agent.stream.assembler import Assembler
from edge_agent.stream.rows import table_batches
from edge_agent.stream.windows import WindowBuffer

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
SOURCE = "data"


@dataclass(frozen=True)
class SignalUse:
    name: str
    values: int  # readings with a number in the input
    empty: int  # empty cells (no reading at that time)
    bad: int  # readings of bad quality (status text, non-finite numbers)
    held: int  # grid instants that held an earlier value (no reading of their own)
    dropped: int  # readings stamped the same as, or before, the value held (duplicates)
    blamed: int  # invalid grid samples this signal made invalid (missing, stale, bad)


@dataclass(frozen=True)
class DataReport:
    files: int
    rows: int
    samples: int  # grid instants
    valid_samples: int
    window_samples: int  # valid samples inside at least one window
    signals: tuple[SignalUse, ...]

    @property
    def windowed_share(self) -> float:
        return self.window_samples / self.samples if self.samples else 0.0

    def lines(self) -> list[str]:
        """The table `edge-agent train` prints."""
        out = [
            f"{self.files} file(s), {self.rows} rows → {self.samples} grid samples, "
            f"{self.valid_samples} valid; {self.windowed_share:.1%} of the samples are in windows",
            f"  {'signal':<28} {'values':>7} {'empty':>6} {'bad':>6} {'held':>6} "
            f"{'dropped':>7} {'invalid':>7}",
        ]
        for s in self.signals:
            out.append(
                f"  {s.name:<28} {s.values:>7} {s.empty:>6} {s.bad:>6} {s.held:>6} "
                f"{s.dropped:>7} {s.blamed:>7}"
            )
        return out


@dataclass(frozen=True)
class TrainingData:
    """Valid grid samples in runs without a gap (float32, as the pipeline carries them), and every
    window the agent could score on them (hop 1), in time order, with the run each belongs to."""

    segments: list[F32]
    windows: F32  # (n, window, signals)
    window_segment: npt.NDArray[np.int64]  # (n,) index into `segments`
    # (n,) position of each window's last sample among all valid samples (segments joined)
    window_end: npt.NDArray[np.int64]
    report: DataReport

    def split(self, share: float) -> tuple[list[F32], F32, list[F32], F32]:
        """Chronological split at `share` of the valid samples: (segments, windows) before and
        after it. No window spans the cut, so held-out windows share no sample with the rest."""
        cut = round(self.report.valid_samples * share)
        window = self.windows.shape[1]
        before_w = self.windows[self.window_end < cut]
        after_w = self.windows[self.window_end - window + 1 >= cut]
        before: list[F32] = []
        after: list[F32] = []
        start = 0
        for seg in self.segments:
            end = start + len(seg)
            if end <= cut:
                before.append(seg)
            elif start >= cut:
                after.append(seg)
            else:
                before.append(seg[: cut - start])
                after.append(seg[cut - start :])
            start = end
        return before, before_w, after, after_w


def assemble(
    tables: Sequence[Table], signals: Sequence[str], period: float, max_age: float, window: int
) -> TrainingData:
    points = [(SOURCE, name) for name in signals]
    columns = {p: i for i, p in enumerate(points)}
    n = len(signals)
    segments: list[F32] = []
    windows: list[F32] = []
    window_segment: list[int] = []
    window_end: list[int] = []
    empty = np.zeros(n, np.int64)
    bad = np.zeros(n, np.int64)
    values = np.zeros(n, np.int64)
    held = np.zeros(n, np.int64)
    dropped = np.zeros(n, np.int64)
    blamed = np.zeros(n, np.int64)
    rows = samples = valid = 0
    for table in tables:
        x, marks = table.select(list(signals)), table.select_bad(list(signals))
        finite = np.isfinite(x)
        values += finite.sum(axis=0)
        bad += marks.sum(axis=0)
        empty += (~finite & ~marks).sum(axis=0)
        rows += len(x)
        # A fresh assembler per file: files are separate recordings, never joined by a window.
        asm = Assembler(columns, period, max_age)
        buf = WindowBuffer(window, 1, n)
        run: list[F32] = []

        def close_run(run: list[F32]) -> None:
            if run:
                segments.append(np.stack(run))

        for _ts, row_batches in table_batches(points, list(signals), table):
            for batch in row_batches:
                for sample in asm.push(batch):
                    samples += 1
                    if not sample.valid:
                        for col, _why in sample.issues:
                            blamed[col] += 1
                        close_run(run)
                        run = []
                    else:
                        valid += 1
                        run.append(sample.values)
                    w = buf.push(sample)
                    if w is not None:
                        windows.append(w)
                        window_segment.append(len(segments))
                        window_end.append(valid - 1)
        close_run(run)
        held += asm.counts.held
        dropped += np.asarray(asm.counts.duplicate) + np.asarray(asm.counts.out_of_order)
    window_samples = sum(len(s) for s in segments if len(s) >= window)
    report = DataReport(
        files=len(tables),
        rows=rows,
        samples=samples,
        valid_samples=valid,
        window_samples=window_samples,
        signals=tuple(
            SignalUse(name, int(v), int(e), int(q), int(h), int(d), int(b))
            for name, v, e, q, h, d, b in zip(
                signals, values, empty, bad, held, dropped, blamed, strict=True
            )
        ),
    )
    stacked = np.stack(windows) if windows else np.zeros((0, window, n), np.float32)
    return TrainingData(
        segments,
        stacked,
        np.asarray(window_segment, np.int64),
        np.asarray(window_end, np.int64),
        report,
    )
