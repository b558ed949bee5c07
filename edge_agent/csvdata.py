"""Read historian-style CSV files: one timestamp column, one column per signal, `,` or `;`.

Timestamps may be ISO 8601 (with or without zone; naive means UTC) or Unix epoch seconds. Cells
mean what they mean in historian exports: a number is a reading; an empty cell is no reading at
that time (the signal was not logged then; the assembler holds its last value); text in a numeric
column (`bad`, `I/O Timeout`, `#N/A`) or a non-finite number is a reading of bad quality. Both are
NaN in `values`; `bad` tells them apart. Columns without any number (such as a `label` column)
are kept apart as text.

`format_time` writes ISO 8601 UTC that `parse_time` reads back as exactly the same float: the
agent's recordings (`edge-agent run --record-dir`) must replay on the very grid the agent ran on.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt

TIME_NAMES = ("timestamp", "time", "ts", "datetime", "date_time", "_time")
# What the agent's recorder writes for a reading of bad quality.
BAD_CELL = "bad"


class CsvError(ValueError):
    pass


@dataclass(frozen=True)
class Table:
    ts: npt.NDArray[np.float64]
    columns: list[str]
    values: npt.NDArray[np.float64]  # rows × numeric columns, NaN where empty or bad
    text: dict[str, list[str]]  # non-numeric columns
    bad: npt.NDArray[np.bool_]  # rows × numeric columns: a reading of bad quality

    @classmethod
    def of(
        cls,
        ts: npt.NDArray[np.float64],
        columns: list[str],
        values: npt.NDArray[np.float64],
        text: dict[str, list[str]] | None = None,
    ) -> Table:
        """A table of numbers made in memory: a non-finite value marks a bad reading."""
        return cls(ts, columns, values, text or {}, ~np.isfinite(values))

    def select_bad(self, names: list[str]) -> npt.NDArray[np.bool_]:
        self.select(names)  # the same error for a missing column
        return self.bad[:, [self.columns.index(n) for n in names]]

    def select(self, names: list[str]) -> npt.NDArray[np.float64]:
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise CsvError(
                f"columns not in the data: {', '.join(missing)} (have {', '.join(self.columns)})"
            )
        return self.values[:, [self.columns.index(n) for n in names]]

    def inferred_period(self) -> float:
        d = np.diff(self.ts)
        d = d[d > 0]
        if d.size == 0:
            raise CsvError("cannot infer the sample period: fewer than two distinct timestamps")
        # Timestamps are often written with millisecond resolution; do not carry the rounding.
        return round(float(np.median(d)), 6)


# Seconds with more fractional digits than datetime keeps (microseconds).
_FINE_FRACTION = re.compile(r"^(.*\d\d:\d\d:\d\d)\.(\d{7,})(\D.*)?$")


def _iso_seconds(text: str) -> float:
    try:
        dt = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    except ValueError:
        raise CsvError(f"unrecognized timestamp {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if (m := _FINE_FRACTION.match(text)) is not None:
        # datetime would cut the fraction to microseconds, a few float64 steps at today's epoch:
        # add the exact decimal fraction to the whole seconds and round once.
        whole = int(_iso_seconds(m[1] + (m[3] or "")))
        return float(Fraction(whole) + Fraction(int(m[2]), 10 ** len(m[2])))
    return _iso_seconds(text)


def format_time(ts: float) -> str:
    """ISO 8601 UTC with milliseconds, and as many more digits as it takes for `parse_time` to
    give back exactly `ts` (the shortest decimal that round-trips, as `repr`)."""
    exact = Decimal(repr(ts))
    whole = int(exact.to_integral_value(rounding=ROUND_FLOOR))
    frac = format(exact - whole, "f").partition(".")[2].rstrip("0").ljust(3, "0")
    stamp = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac}Z"


def _cells(cells: list[str]) -> tuple[list[float], list[bool]] | None:
    """A column's values and bad-quality marks; None for a column without any number."""
    values: list[float] = []
    bad: list[bool] = []
    numbers = 0
    for cell in cells:
        cell = cell.strip()
        if not cell:
            values.append(math.nan)
            bad.append(False)
            continue
        try:
            v = float(cell)
        except ValueError:
            values.append(math.nan)
            bad.append(True)
            continue
        numbers += 1
        values.append(v if math.isfinite(v) else math.nan)
        bad.append(not math.isfinite(v))
    return (values, bad) if numbers else None


def read_table(path: Path) -> Table:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            head = fh.readline()
            sep = ";" if head.count(";") > head.count(",") else ","
            fh.seek(0)
            rows = list(csv.reader(fh, delimiter=sep))
    except OSError as exc:
        raise CsvError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(rows) < 2:
        raise CsvError(f"{path}: needs a header and at least one data row")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    tcol = next((i for i, h in enumerate(header) if h.lower() in TIME_NAMES), 0)
    try:
        ts = np.array([parse_time(r[tcol]) for r in body], dtype=np.float64)
    except (CsvError, IndexError) as exc:
        raise CsvError(f"{path}: column {header[tcol]!r}: {exc}") from None
    if np.any(np.diff(ts) < 0):
        raise CsvError(f"{path}: timestamps are not in ascending order")
    numeric: list[str] = []
    cols: list[list[float]] = []
    marks: list[list[bool]] = []
    text: dict[str, list[str]] = {}
    for i, name in enumerate(header):
        if i == tcol:
            continue
        cells = [r[i] if i < len(r) else "" for r in body]
        parsed = _cells(cells)
        if parsed is None:
            text[name] = [c.strip() for c in cells]
            continue
        cols.append(parsed[0])
        marks.append(parsed[1])
        numeric.append(name)
    shape = (len(body), 0)
    values = np.array(cols, dtype=np.float64).T if cols else np.zeros(shape)
    bad = np.array(marks, dtype=bool).T if marks else np.zeros(shape, dtype=bool)
    return Table(ts=ts, columns=numeric, values=values, text=text, bad=bad)
