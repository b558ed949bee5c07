"""Record what an asset's pipeline is fed, as a historian CSV that `edge-agent replay` reads.

One row per batch routed to the asset, written before the pipeline sees it: `timestamp` (the
batch time, ISO 8601 UTC, exact to the float) and one column per signal of the asset, in its
order. A signal the batch carried has its value, or `bad` where the assembler would not take it
(bad quality, not finite); a signal it did not carry (another source's, or a point missing from
this poll) is an empty cell, which replay reads as "no reading" (historian exports mean the
same). Replay turns each row back into one batch per source that has cells in it, at that time,
so the pipeline gets the same input and raises the same alerts, sample for sample, however many
sources feed the asset.

The input is recorded, not the assembled samples, because the samples do not survive a second
pass through an assembler unchanged: a long silence is one invalid sample standing for many grid
instants, and staleness is judged from each signal's arrival time, which the grid hides.

Recording is I/O beside the real work, so it never stops the agent: rows are buffered (written
at `flush_rows` rows, at the first batch `flush_s` after the last write, and at close); a failed
open or write is logged once, counted, and the buffered rows are dropped; the next flush tries
again and logs the recovery.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.config import SignalConfig
from edge_agent.csvdata import BAD_CELL, format_time
from edge_agent.private_files import make_private_dir, make_private_file
from edge_agent.types import Batch, Quality

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RecorderStats:
    rows: int = 0  # written to the file
    dropped_rows: int = 0  # lost to write errors or out of time order
    out_of_order: int = 0
    write_errors: int = 0


def _cell(value: float, quality: Quality) -> str:
    # repr: the shortest text that parses back to the same float64. The assembler treats a bad or
    # non-finite reading as invalid whatever its value; replay turns an empty cell into exactly
    # that. float(): a numpy scalar's repr is not a number.
    return repr(float(value)) if quality is not Quality.BAD and math.isfinite(value) else BAD_CELL


def _close_quietly(fh: io.TextIOWrapper) -> None:
    # Closing flushes what the failed write left buffered and fails again: already counted.
    with contextlib.suppress(OSError):
        fh.close()


class CsvRecorder:
    def __init__(
        self,
        path: Path,
        signals: Sequence[SignalConfig],
        flush_rows: int = 256,
        flush_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.stats = RecorderStats()
        # source → point → columns (a point may feed more than one signal of the asset).
        self._columns: dict[str, dict[str, list[int]]] = {}
        for i, s in enumerate(signals):
            self._columns.setdefault(s.source, {}).setdefault(s.point_name, []).append(i)
        self._width = len(signals)
        self._header = self._csv_line(["timestamp", *(s.name for s in signals)])
        self._last_ts = -math.inf
        self._buf: list[str] = []
        self._flush_rows = flush_rows
        self._flush_s = flush_s
        self._clock = clock
        self._last_flush = clock()
        self._fh: io.TextIOWrapper | None = None
        self._good_size = 0  # file size after the last complete flush
        self._started = False  # an earlier run's file is out of the way
        self._failing = False

    @staticmethod
    def _csv_line(cells: Sequence[str]) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(cells)
        return out.getvalue()

    def add(self, batch: Batch) -> None:
        """One batch routed to the asset, before the pipeline takes it."""
        if not (math.isfinite(batch.ts) and batch.ts >= self._last_ts):
            # The assembler takes it (as a late update of the values); a CSV out of time order
            # is unreadable, so this batch is left out of the recording.
            self.stats.dropped_rows += 1
            self.stats.out_of_order += 1
            if self.stats.out_of_order == 1:
                log.warning(
                    "recording %s: a batch from %s at %r is older than the previous one (or not "
                    "a time); such batches are not recorded (replay will differ)",
                    self.path,
                    batch.source,
                    batch.ts,
                )
            return
        self._last_ts = batch.ts
        points = self._columns.get(batch.source, {})
        cells = [""] * self._width
        for r in batch.readings:
            for col in points.get(r.point, ()):
                cells[col] = _cell(r.value, r.quality)
        self._buf.append(f"{format_time(batch.ts)},{','.join(cells)}\n")
        if len(self._buf) >= self._flush_rows or self._clock() - self._last_flush >= self._flush_s:
            self.flush()

    def flush(self) -> None:
        self._last_flush = self._clock()
        if not self._buf:
            return
        rows = self._buf
        self._buf = []
        try:
            fh = self._open()
            fh.write("".join(rows))
            fh.flush()
            self._good_size = fh.tell()
        except OSError as exc:
            self._failed(exc, len(rows))
            return
        self.stats.rows += len(rows)
        if self._failing:
            self._failing = False
            log.warning(
                "recording %s: writing again; %d row(s) lost so far",
                self.path,
                self.stats.dropped_rows,
            )

    def _open(self) -> io.TextIOWrapper:
        if self._fh is not None:
            return self._fh
        if not self._started:
            make_private_dir(self.path.parent)
            self._move_aside_earlier_run()
            self._started = True
        # Process data: 0600 whatever the umask (a file left by an earlier version too).
        make_private_file(self.path)
        if self._good_size == 0:
            fh = self.path.open("w", encoding="utf-8", newline="")
            try:
                fh.write(self._header)
                fh.flush()
            except OSError:
                _close_quietly(fh)
                raise
        else:
            # After a failed write: cut off any partial row, so the file stays readable.
            fh = self.path.open("a", encoding="utf-8", newline="")
            fh.truncate(self._good_size)
        self._good_size = fh.tell()
        self._fh = fh
        return fh

    def _move_aside_earlier_run(self) -> None:
        """One file per run: replay starts from a fresh pipeline, as the agent did; a file that
        continued an earlier run would carry its alert state and time grid into this one."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        if st.st_size == 0:
            return
        stamp = datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y%m%dT%H%M%SZ")
        n = 0
        while (aside := self.path.with_name(f"{self.path.stem}.{stamp}{n or ''}.csv")).exists():
            n += 1
        os.rename(self.path, aside)
        log.info("recording %s: the previous run's file is now %s", self.path, aside.name)

    def _failed(self, exc: OSError, rows: int) -> None:
        self.stats.write_errors += 1
        self.stats.dropped_rows += rows
        if self._fh is not None:
            fh, self._fh = self._fh, None
            _close_quietly(fh)
        if not self._failing:
            self._failing = True
            log.error(
                "recording %s failed (%s); dropping rows and retrying, the agent carries on",
                self.path,
                exc.strerror or exc,
            )

    def close(self) -> None:
        self.flush()
        if self._fh is not None:
            fh, self._fh = self._fh, None
            try:
                fh.close()
            except OSError as exc:
                self._failed(exc, 0)
        s = self.stats
        log.info(
            "recording %s: %d row(s) written, %d lost, %d write error(s)",
            self.path,
            s.rows,
            s.dropped_rows,
            s.write_errors,
        )
