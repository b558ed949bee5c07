"""Read historian exports: one timestamp column, one column per signal, as historians write them.

What is accepted (and tested in `tests/unit/test_historian_csv.py`):
- encodings: UTF-8 (with or without BOM), UTF-16 / UTF-32 with BOM (UTF-16 without one is
  recognised by its zero bytes), else Windows-1252, else Latin-1; bytes that decode to control
  characters (a binary file, a zip) are an error naming row and column;
- separators `,` `;` or tab, sniffed from the header line (outside quotes); an Excel `sep=;` line;
- decimal comma, when the separator is `;` or tab and numbers look like `1,5`;
- timestamps: ISO 8601 (`Z`, offsets, or none: naive means UTC; `T` or a space), epoch seconds,
  or epoch milliseconds (a column whose values are above 1e11). The time column is the one named
  like a time (`timestamp`, `time`, `Date/Time`, `Timestamp (UTC)` ...), else the first column;
- headers: any text. `split_header` maps it to a signal name and a unit: Unicode NFC, trimmed,
  inner whitespace collapsed, trailing `[..]` / `(..)` groups split off (the one next to the name
  is the unit): `Flow  Rate [m3/h]` is the signal `Flow Rate` in `m3/h`. The config's signal
  names and the command line's `--signals`, `--exclude`, `--labels` go through the same mapping.

Cells mean what they mean in historian exports: a number is a reading; an empty cell is no reading
at that time (the signal was not logged then; the assembler holds its last value); text in a
numeric column (`bad`, `I/O Timeout`, `#N/A`) or a non-finite number is a reading of bad quality.
Both are NaN in `values`; `bad` tells them apart. Columns with text but no number (such as a
`label` column) are kept apart as text. Rows stay in file order: the assembler drops duplicated
and out-of-order readings and counts them, as it does for a live source.

Bad input raises `CsvError` whose message names the file, and the row (the file's line) and the
column where there is one; the command line prints it and exits 2.

`format_time` writes ISO 8601 UTC that `parse_time` reads back as exactly the same float: the
agent's recordings (`edge-agent run --record-dir`) must replay on the very grid the agent ran on.
"""

from __future__ import annotations

import codecs
import csv
import glob
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.signal_names import signal_name as signal_name
from edge_agent.signal_names import signal_names as signal_names
from edge_agent.signal_names import split_header as split_header

# Header names (after `signal_name`, lower case) taken as the time column.
TIME_NAMES = (
    "timestamp", "time", "ts", "datetime", "date_time", "_time", "date time", "date/time",
    "time stamp", "zeitstempel", "zeit",
)  # fmt: skip
# What the agent's recorder writes for a reading of bad quality.
BAD_CELL = "bad"
# Epoch timestamps above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
EPOCH_MS_ABOVE = 1e11
SEPARATORS = (",", ";", "\t")


class CsvError(ValueError):
    pass


@dataclass(frozen=True)
class ColumnDiff:
    missing: list[str]  # wanted signals the data does not have
    extra: list[str]  # numeric columns of the data that are not wanted

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing {', '.join(self.missing)}")
        if self.extra:
            parts.append(f"not in the bundle {', '.join(self.extra)}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Table:
    ts: npt.NDArray[np.float64]
    columns: list[str]
    values: npt.NDArray[np.float64]  # rows × numeric columns, NaN where empty or bad
    text: dict[str, list[str]]  # non-numeric columns
    bad: npt.NDArray[np.bool_]  # rows × numeric columns: a reading of bad quality
    units: dict[str, str] = field(default_factory=dict)  # from the headers, where given
    origin: str = ""  # the file it was read from, for messages

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

    @property
    def where(self) -> str:
        return self.origin or "data"

    def select_bad(self, names: list[str]) -> npt.NDArray[np.bool_]:
        self.select(names)  # the same error for a missing column
        return self.bad[:, [self.columns.index(n) for n in names]]

    def select(self, names: list[str]) -> npt.NDArray[np.float64]:
        missing = [n for n in names if n not in self.columns]
        if missing:
            textual = [n for n in missing if n in self.text]
            hint = f"; text only, no number: {', '.join(textual)}" if textual else ""
            raise CsvError(
                f"{self.where}: columns not in the data: {', '.join(missing)} "
                f"(have {', '.join(self.columns) or 'no numeric column'}{hint})"
            )
        return self.values[:, [self.columns.index(n) for n in names]]

    def compare(self, signals: Sequence[str], ignore: Iterable[str] = ()) -> ColumnDiff:
        """Which of `signals` the data lacks, and which numeric columns it has besides them
        (`ignore`: columns known not to be signals, such as labels)."""
        skip = set(signals) | set(ignore)
        return ColumnDiff(
            [s for s in signals if s not in self.columns],
            [c for c in self.columns if c not in skip],
        )

    def label_values(self, name: str) -> list[str]:
        """A label column's cells as text, whether it holds words (`normal`, `cavitation`) or
        numbers (0/1)."""
        if name in self.text:
            return self.text[name]
        if name in self.columns:
            col = self.values[:, self.columns.index(name)]
            return ["" if not math.isfinite(v) else f"{v:g}" for v in col]
        have = [*self.text, *self.columns]
        raise CsvError(f"{self.where}: no column {name!r} (have {', '.join(have) or 'none'})")

    def without(self, names: Iterable[str]) -> Table:
        """The table without the named columns (numeric or text)."""
        drop = set(names)
        keep = [i for i, c in enumerate(self.columns) if c not in drop]
        return Table(
            self.ts,
            [self.columns[i] for i in keep],
            self.values[:, keep],
            {k: v for k, v in self.text.items() if k not in drop},
            self.bad[:, keep],
            {k: v for k, v in self.units.items() if k not in drop},
            self.origin,
        )

    def inferred_period(self) -> float:
        """The sample period of the grid the timestamps were meant to be on.

        A first guess is the median step; every step close to a whole number (1 to 4) of it
        joins a run of rows on one grid, and the period is the least-squares slope of time over
        grid index within those runs (each run has its own offset, so a restart at another phase
        or a long outage does not bend it). Jitter, missed rows, duplicates and out-of-order rows
        thus do not move it. The result is the roundest decimal within three standard errors of
        the fit (1.0, not 1.0000031, for a jittery 1 Hz export)."""
        t = np.sort(self.ts[np.isfinite(self.ts)])
        d = np.diff(t)
        if not np.any(d > 0):
            raise CsvError(
                f"{self.where}: cannot infer the sample period: fewer than two distinct timestamps"
            )
        p = float(np.median(d[d > 0]))
        t = t - t[0]
        se = 0.0
        for _ in range(3):
            steps = np.round(d / p)
            on_grid = (np.abs(d - steps * p) < 0.25 * p) & (steps <= 4)
            k = np.concatenate([[0.0], np.cumsum(np.where(on_grid, steps, 0.0))])
            run = np.concatenate([[0], np.cumsum(~on_grid)])
            n = np.bincount(run).astype(np.float64)
            dk = k - (np.bincount(run, k) / n)[run]
            dt = t - (np.bincount(run, t) / n)[run]
            sxx = float(np.dot(dk, dk))
            if sxx == 0.0:
                break
            p = float(np.dot(dk, dt) / sxx)
            dof = len(t) - len(n) - 1
            resid = dt - p * dk
            se = math.sqrt(float(np.dot(resid, resid)) / dof / sxx) if dof > 0 else 0.0
        tol = max(3.0 * se, 1e-9 * p)
        for decimals in range(10):
            nice = round(p, decimals)
            if nice > 0 and abs(nice - p) <= tol:
                return nice
        return p


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
    """One timestamp cell: epoch seconds or ISO 8601 (see `read_table` for milliseconds)."""
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


def expand_paths(patterns: Iterable[str]) -> list[Path]:
    """Files named by `--data` arguments: paths or glob patterns (`exports/*.csv`, `**`), each
    pattern's matches sorted by name, duplicates once. A pattern without a match is an error."""
    out: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern) and not Path(pattern).exists():
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise CsvError(f"{pattern}: no file matches")
            paths = [Path(m) for m in matches if Path(m).is_file()]
        else:
            paths = [Path(pattern)]
        out.extend(p for p in paths if p not in out)
    return out


_UTF_BOMS = (  # longest first: the UTF-32 LE BOM starts like the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _decode(data: bytes, where: str) -> str:
    body, encoding = data, None
    for bom, enc in _UTF_BOMS:
        if data.startswith(bom):
            body, encoding = data[len(bom) :], enc
            break
    if encoding is None and b"\x00" in data[:4096]:
        # UTF-16 without a BOM: every other byte of ASCII text is zero.
        head = data[:4096]
        if head[1::2].count(0) > len(head) // 4:
            encoding = "utf-16-le"
        elif head[0::2].count(0) > len(head) // 4:
            encoding = "utf-16-be"
    if encoding is not None:
        try:
            return body.decode(encoding)
        except UnicodeDecodeError as exc:
            row = body[: exc.start].decode(encoding, errors="replace").count("\n") + 1
            raise CsvError(
                f"{where}: row {row}: not valid {encoding.upper()} "
                f"(byte {exc.start + len(data) - len(body)} of the file: {exc.reason})"
            ) from None
    for enc in ("utf-8", "cp1252"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1")


def _unquoted(line: str) -> str:
    return re.sub(r'"[^"]*"', "", line)


def _sniff(text: str) -> tuple[str, int]:
    """(separator, 1 if the first line is Excel's `sep=;` line, else 0)."""
    first = text.partition("\n")[0]
    m = re.fullmatch(r'"?sep=(.)"?\s*', first)
    if m is not None:
        return m[1], 1
    header = _unquoted(next((line for line in text.splitlines() if line.strip()), ""))
    counts = [header.count(s) for s in SEPARATORS]
    best = max(range(len(SEPARATORS)), key=lambda i: (counts[i], -i))
    return SEPARATORS[best], 0


_COMMA_NUMBER = re.compile(r"\s*[+-]?\d*,\d+(?:[eE][+-]?\d+)?\s*")
_DOT_DECIMAL = re.compile(r"\s*[+-]?\d*\.\d+(?:[eE][+-]?\d+)?\s*")


def _decimal_comma(rows: list[list[str]], skip: int) -> bool:
    """Numbers written `1,5`: some cell looks so and none has a decimal point."""
    comma = dot = False
    for r in rows[:2000]:
        for i, cell in enumerate(r):
            if i == skip or not cell:
                continue
            if _COMMA_NUMBER.fullmatch(cell):
                comma = True
            elif _DOT_DECIMAL.fullmatch(cell):
                dot = True
    return comma and not dot


def _cells(cells: list[str], comma: bool) -> tuple[list[float], list[bool]] | None:
    """A column's values and bad-quality marks; None for a column of text without any number
    (a column with no cell at all is numeric: a signal that was never logged)."""
    values: list[float] = []
    bad: list[bool] = []
    numbers = texts = 0
    for cell in cells:
        cell = cell.strip()
        if not cell:
            values.append(math.nan)
            bad.append(False)
            continue
        try:
            v = float(cell.replace(",", ".") if comma else cell)
        except ValueError:
            values.append(math.nan)
            bad.append(True)
            texts += 1
            continue
        numbers += 1
        values.append(v if math.isfinite(v) else math.nan)
        bad.append(not math.isfinite(v))
    return (values, bad) if numbers or not texts else None


def _times(cells: list[str], lines: list[int], column: str, comma: bool, where: str) -> list[float]:
    """Timestamps of one column; epoch numbers above `EPOCH_MS_ABOVE` are milliseconds."""
    out: list[float] = []
    numeric: list[int] = []
    for cell, line in zip(cells, lines, strict=True):
        text = cell.strip()
        if not text:
            raise CsvError(f"{where}: row {line}, column {column!r}: empty timestamp")
        try:
            out.append(float(text.replace(",", ".") if comma else text))
            numeric.append(len(out) - 1)
            continue
        except ValueError:
            pass
        try:
            out.append(parse_time(text))
        except CsvError:
            raise CsvError(
                f"{where}: row {line}, column {column!r}: unrecognized timestamp {text!r} "
                "(expected ISO 8601, epoch seconds or epoch milliseconds)"
            ) from None
    if numeric and float(np.median([out[i] for i in numeric])) > EPOCH_MS_ABOVE:
        for i in numeric:
            out[i] = out[i] / 1000.0
    bad = next((i for i, v in enumerate(out) if not math.isfinite(v)), None)
    if bad is not None:
        raise CsvError(f"{where}: row {lines[bad]}, column {column!r}: timestamp {cells[bad]!r}")
    return out


def _blank(rows: list[list[str]], i: int) -> bool:
    return not any(i < len(r) and r[i].strip() for r in rows)


def read_table(path: Path) -> Table:
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CsvError(f"{where}: cannot read: {exc.strerror or exc}") from None
    text = _decode(data, where)
    if not text.strip():
        raise CsvError(f"{where}: the file is empty")
    sep, skip = _sniff(text)
    if (m := _CONTROL.search(text)) is not None:
        line_start = text.rfind("\n", 0, m.start()) + 1
        row = text.count("\n", 0, m.start()) + 1
        col = _unquoted(text[line_start : m.start()]).count(sep) + 1
        raise CsvError(
            f"{where}: row {row}, column {col}: not text (character {m[0]!r}); expected a CSV in "
            "UTF-8, UTF-16 with a BOM or Windows-1252"
        )
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    rows: list[list[str]] = []
    lines: list[int] = []
    header: list[str] | None = None
    header_line = 1
    try:
        for r in reader:
            if reader.line_num <= skip or not any(c.strip() for c in r):
                continue
            if header is None:
                header, header_line = r, reader.line_num
            else:
                rows.append(r)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise CsvError(f"{where}: row {reader.line_num}: {exc}") from None
    if header is None:
        raise CsvError(f"{where}: the file is empty (no cell has text)")
    if not rows:
        raise CsvError(f"{where}: no data rows, only a header (row {header_line})")
    width = len(header)
    for r, line in zip(rows, lines, strict=True):
        if len(r) > width and any(c.strip() for c in r[width:]):
            raise CsvError(f"{where}: row {line}: {len(r)} cells, the header has {width}")
    # A trailing separator gives a column without a header and without a value: not a column.
    while header and not header[-1].strip() and _blank(rows, len(header) - 1):
        header = header[:-1]
    names: list[str] = []
    units: dict[str, str] = {}
    for i, h in enumerate(header):
        name, unit = split_header(h)
        name = name or f"column {i + 1}"
        if name in names:
            j = names.index(name)
            raise CsvError(
                f"{where}: columns {j + 1} ({header[j]!r}) and {i + 1} ({h!r}) are both "
                f"the signal {name!r}"
            )
        names.append(name)
        if unit is not None:
            units[name] = unit
    named = [i for i, n in enumerate(names) if n.lower() in TIME_NAMES]
    tcol = named[0] if named else 0
    comma = sep != "," and _decimal_comma(rows, tcol)
    cells = [r[tcol] if tcol < len(r) else "" for r in rows]
    try:
        ts = np.array(_times(cells, lines, names[tcol], comma, where), dtype=np.float64)
    except CsvError:
        if named:
            raise
        try:
            parse_time(cells[0].replace(",", ".") if comma else cells[0])
        except CsvError:
            raise CsvError(
                f"{where}: no timestamp column: no header is a time name ({', '.join(TIME_NAMES)})"
                f" and the first column {header[0]!r} does not hold times (row {lines[0]}: "
                f"{cells[0]!r})"
            ) from None
        raise
    numeric: list[str] = []
    cols: list[list[float]] = []
    marks: list[list[bool]] = []
    texts: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        if i == tcol:
            continue
        column = [r[i] if i < len(r) else "" for r in rows]
        parsed = _cells(column, comma)
        if parsed is None:
            texts[name] = [c.strip() for c in column]
            continue
        cols.append(parsed[0])
        marks.append(parsed[1])
        numeric.append(name)
    shape = (len(rows), 0)
    values = np.array(cols, dtype=np.float64).T if cols else np.zeros(shape)
    bad = np.array(marks, dtype=bool).T if marks else np.zeros(shape, dtype=bool)
    units = {k: v for k, v in units.items() if k != names[tcol]}
    return Table(ts, numeric, values, texts, bad, units, where)


def read_tables(paths: Sequence[Path]) -> list[Table]:
    return [read_table(p) for p in paths]
