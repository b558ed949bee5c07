"""Pure mapping of OPC UA data values to readings: status code → quality, variant → float."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from edge_agent.types import Quality, Reading

# The two most significant bits of a StatusCode give its severity (OPC UA Part 4, 7.39).
_SEVERITY = {0: Quality.GOOD, 1: Quality.UNCERTAIN, 2: Quality.BAD, 3: Quality.BAD}


def quality_of_status(code: int) -> Quality:
    return _SEVERITY[(code >> 30) & 0x3]


def numeric(value: object) -> float | None:
    """Numbers and booleans as float; anything else (text, arrays, structures) is None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def epoch(ts: datetime | None) -> float | None:
    if ts is None:
        return None
    if ts.tzinfo is None:  # asyncua hands out naive UTC datetimes
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def to_reading(point: str, value: object, status: int, source_ts: datetime | None) -> Reading:
    """A data value as a reading; a value we cannot use is a bad reading, never an error."""
    quality = quality_of_status(status)
    number = numeric(value)
    if number is None or not math.isfinite(number):
        return Reading(point, math.nan, Quality.BAD, epoch(source_ts))
    return Reading(point, number, quality, epoch(source_ts))
