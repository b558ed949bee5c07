"""Write data the way plant historians export it, for tests and benchmarks of what users bring.

A historian export is not a clean recording: the historian misses a poll now and then (a row is
absent), its timestamps jitter around the grid, values are stored at a resolution, headers carry
display names with units (`Flow Rate [m3/h]`), and the file comes in the regional format of the
PC that exported it (`;` and decimal comma, UTF-16 or Windows-1252, a BOM, local time with an
offset, epoch seconds or milliseconds). `write_export` writes such a file from a clean grid;
`CLEAN` writes it as is, `messy(seed)` draws a format and its flaws from a seed.
`edge_agent.csvdata.read_table` reads every style back (tests/unit/test_historian_csv.py).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

TimeFormat = Literal["iso_z", "offset", "epoch_s", "epoch_ms"]
HeaderStyle = Literal["brackets", "parens", "plain"]
T = TypeVar("T")


@dataclass(frozen=True)
class ExportStyle:
    sep: str = ","
    decimal_comma: bool = False  # `1,5` (with sep `;` or tab)
    bom: bool = False  # a UTF-8 BOM (UTF-16 always has one)
    encoding: str = "utf-8"  # "utf-8", "utf-16" or "cp1252"
    # iso_z: `2026-01-01T00:00:00.000Z`; offset: local time `2026-01-01T01:00:00.000+01:00`;
    # epoch_s: `1767225600.000`; epoch_ms: `1767225600000`.
    time_format: TimeFormat = "iso_z"
    utc_offset_min: int = 60  # for "offset"
    time_header: str = "Timestamp"
    quantum: float | None = None  # values stored as multiples of this (None: as given)
    missed: float = 0.05  # share of rows the historian did not log
    jitter_s: float = 0.02  # standard deviation of the timestamps around the grid
    duplicated: float = 0.0  # share of rows written twice
    header: HeaderStyle = "brackets"  # `Name [unit]`, `Name (unit)` or `Name`
    label_header: str = "label"
    seed: int = 0  # draws the missed rows, the jitter and the duplicates


HISTORIAN = ExportStyle()  # comma, UTF-8, ISO `Z`; 5 % missed rows, 20 ms jitter
CLEAN = ExportStyle(missed=0.0, jitter_s=0.0)


def messy(seed: int) -> ExportStyle:
    """A regional format and historian flaws drawn from `seed` (always 5 % missed rows and 20 ms
    jitter; sometimes duplicated rows and a stored resolution)."""
    rng = np.random.default_rng([seed, 4099])

    def pick(options: Sequence[T]) -> T:
        return options[int(rng.integers(len(options)))]

    sep = pick([",", ";", "\t"])
    times: list[TimeFormat] = ["iso_z", "offset", "epoch_s", "epoch_ms"]
    headers: list[HeaderStyle] = ["brackets", "brackets", "parens", "plain"]
    return ExportStyle(
        sep=sep,
        decimal_comma=sep != "," and bool(rng.random() < 0.7),
        bom=bool(rng.random() < 0.5),
        encoding=pick(["utf-8", "utf-8", "utf-16", "cp1252"]),
        time_format=pick(times),
        utc_offset_min=pick([-300, 60, 120, 330]),
        time_header=pick(["Timestamp", "Time", "Date/Time", "Timestamp (UTC)"]),
        quantum=pick([None, 0.01, 0.001]),
        duplicated=pick([0.0, 0.002]),
        header=pick(headers),
        seed=seed,
    )


def _time(ts: float, style: ExportStyle) -> str:
    if style.time_format == "epoch_s":
        return f"{ts:.3f}"
    if style.time_format == "epoch_ms":
        return str(round(ts * 1000.0))
    zone = timezone(timedelta(minutes=style.utc_offset_min))
    stamp = datetime.fromtimestamp(round(ts, 3), UTC if style.time_format == "iso_z" else zone)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _value(v: float, style: ExportStyle) -> str:
    if not math.isfinite(v):
        return ""
    if style.quantum is not None:
        v = round(v / style.quantum) * style.quantum
    return f"{v:.10g}"


def header_of(name: str, unit: str, style: ExportStyle) -> str:
    if not unit or style.header == "plain":
        return name
    return f"{name} [{unit}]" if style.header == "brackets" else f"{name} ({unit})"


def write_export(
    path: Path,
    ts: npt.NDArray[np.float64],
    names: Sequence[str],
    units: Sequence[str],
    values: npt.NDArray[np.float64],
    labels: Sequence[str] | None = None,
    style: ExportStyle = HISTORIAN,
) -> Path:
    """Rows × signals `values` at grid times `ts` (epoch seconds) as a historian export: rows
    missed, times jittered, values at the stored resolution, one `label` column if given."""
    if values.shape != (len(ts), len(names)) or len(units) != len(names):
        raise ValueError(f"values {values.shape} do not match {len(ts)} rows × {len(names)} names")
    if labels is not None and len(labels) != len(ts):
        raise ValueError(f"{len(labels)} labels for {len(ts)} rows")
    rng = np.random.default_rng([style.seed, 2039])
    kept = rng.random(len(ts)) >= style.missed
    jitter = rng.normal(0.0, style.jitter_s, len(ts)) if style.jitter_s > 0 else np.zeros(len(ts))
    twice = rng.random(len(ts)) < style.duplicated
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=style.sep, lineterminator="\r\n")
    header = [style.time_header]
    header += [header_of(n, u, style) for n, u in zip(names, units, strict=True)]
    w.writerow(header + ([style.label_header] if labels is not None else []))
    for i in (int(k) for k in np.flatnonzero(kept)):
        cells = [_value(float(v), style) for v in values[i]]
        if style.decimal_comma:
            cells = [c.replace(".", ",") for c in cells]
        stamp = _time(float(ts[i] + jitter[i]), style)
        if style.decimal_comma and style.time_format == "epoch_s":
            stamp = stamp.replace(".", ",")
        row = [stamp, *cells, *([labels[i]] if labels is not None else [])]
        for _ in range(2 if twice[i] else 1):
            w.writerow(row)
    encoding = "utf-8-sig" if style.encoding == "utf-8" and style.bom else style.encoding
    path.write_bytes(buf.getvalue().encode(encoding))
    return path
