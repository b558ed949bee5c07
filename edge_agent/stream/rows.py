"""Rows of recorded data (a historian CSV row, a recording of the agent's input) as the batches a
live source would have delivered: one batch per source with cells in the row, at the row's time.
An empty cell is no reading (the assembler holds the last one, as for a missed poll); a cell
marked bad (status text, a non-finite number) is a bad-quality reading. Training, replay and
`replay --config` all start here, so recorded data enters the same assembler the agent runs."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from edge_agent.csvdata import Table
from edge_agent.types import Batch, FloatArray, Quality, Reading

BoolArray = npt.NDArray[np.bool_]


def row_batches(
    points: Sequence[tuple[str, str]], ts: float, row: FloatArray, bad: BoolArray
) -> list[Batch]:
    """`points`: (source, point) of each column of `row`, in order; `bad`: the row's marks."""
    by_source: dict[str, list[Reading]] = {}
    for (source, point), v, b in zip(points, row, bad, strict=True):
        value = float(v)
        if b:
            reading = Reading(point, value, Quality.BAD)
        elif math.isfinite(value):
            reading = Reading(point, value, Quality.GOOD)
        else:
            continue
        by_source.setdefault(source, []).append(reading)
    return [Batch(src, ts, tuple(r)) for src, r in by_source.items()]


def table_batches(
    points: Sequence[tuple[str, str]], names: list[str], table: Table
) -> Iterator[tuple[float, list[Batch]]]:
    """Each row of `table` (columns `names`, fed as `points`) as (time, batches), in file order."""
    x, bad = table.select(names), table.select_bad(names)
    for ts, row, marks in zip(table.ts, x, bad, strict=True):
        yield float(ts), row_batches(points, float(ts), row, marks)
