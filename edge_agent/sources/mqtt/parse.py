"""Pure parsing of MQTT messages into readings, per topic filter of an MQTT device profile.

Nothing here does I/O or reads a clock: the arrival time comes in with the message. A payload
that cannot be used raises `PayloadError` (the source counts and drops it); a field that is
present but not a finite number becomes a bad reading.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime

from paho.mqtt.client import topic_matches_sub

from edge_agent.sources.mqtt.profile import MqttTopic
from edge_agent.types import Quality, Reading

_MISSING = object()
# Epoch values above this are milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD = 1e11


class PayloadError(ValueError):
    """A message whose payload does not fit its topic's parser."""


def point_from_template(template: str, topic: str) -> str:
    """`{2}.{4}` with topic `plant/a/pump-1/raw/flow` → `pump-1.flow` (levels count from 0)."""
    levels = topic.split("/")
    try:
        return template.format(*levels)
    except (IndexError, ValueError, KeyError) as exc:
        raise PayloadError(f"point template {template!r} does not fit topic {topic!r}") from exc


def get_path(doc: object, path: str) -> object:
    """Dotted path into nested objects and arrays; `_MISSING` when any step is absent."""
    node = doc
    for key in path.split("."):
        if isinstance(node, dict):
            node = node.get(key, _MISSING)
        elif isinstance(node, list) and key.lstrip("-").isdigit():
            i = int(key)
            node = node[i] if -len(node) <= i < len(node) else _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def parse_timestamp(value: object) -> float:
    """Epoch seconds, epoch milliseconds or ISO 8601 (UTC when no offset) → epoch seconds."""
    if isinstance(value, bool):
        raise PayloadError(f"timestamp {value!r} is not a time")
    if isinstance(value, int | float):
        ts = _float(value)
        if not math.isfinite(ts) or ts < 0:
            raise PayloadError(f"timestamp {value!r} is not a time")
        return ts / 1000.0 if ts > _MS_THRESHOLD else ts
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise PayloadError(f"timestamp {value!r} is not ISO 8601") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return parsed.timestamp()
        except (OverflowError, ValueError, OSError) as exc:
            raise PayloadError(f"timestamp {value!r} is out of range") from exc
    raise PayloadError(f"timestamp {value!r} is not a time")


def _float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # a JSON integer beyond float range
        return math.nan


def _number(point: str, value: object, ts: float | None) -> Reading:
    if isinstance(value, bool):
        return Reading(point, float(value), Quality.GOOD, ts)
    if isinstance(value, int | float) and math.isfinite(_float(value)):
        return Reading(point, _float(value), Quality.GOOD, ts)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return Reading(point, number, Quality.GOOD, ts)
    # null, NaN, text, objects: the point is there but its value is unusable.
    return Reading(point, math.nan, Quality.BAD, ts)


def _time_of(doc: object, path: str | None, arrival: float) -> float:
    if path is None:
        return arrival
    raw = get_path(doc, path)
    if raw is _MISSING:
        raise PayloadError(f"timestamp field {path!r} missing")
    return parse_timestamp(raw)


Group = tuple[float, tuple[Reading, ...]]


def parse_message(spec: MqttTopic, topic: str, payload: bytes, arrival: float) -> list[Group]:
    """One message → (timestamp, readings) groups; several when an array carries readings of
    different instants. Raises PayloadError for a payload that does not fit, and for nothing
    else: whatever a payload makes the decoder or the conversions raise (a JSON integer longer
    than Python's 4,300-digit limit raises ValueError) is a malformed payload too."""
    try:
        return _parse(spec, topic, payload, arrival)
    except PayloadError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise PayloadError(f"payload not usable: {type(exc).__name__}: {str(exc)[:200]}") from exc


def _parse(spec: MqttTopic, topic: str, payload: bytes, arrival: float) -> list[Group]:
    if spec.parser == "number":
        assert spec.point is not None
        point = point_from_template(spec.point, topic)
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise PayloadError("payload is not UTF-8 text") from exc
        try:
            number = float(text)
        except ValueError as exc:
            raise PayloadError(f"payload {text[:40]!r} is not a number") from exc
        return [(arrival, (_number(point, number, None),))]
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, digits
        raise PayloadError(f"payload is not JSON: {str(exc)[:200]}") from exc
    prefix = point_from_template(spec.point, topic) + "." if spec.point else ""
    groups: dict[float, list[Reading]] = {}
    if spec.fields:
        ts = _time_of(doc, spec.timestamp, arrival)
        source_ts = ts if spec.timestamp else None
        found = 0
        for f in spec.fields:
            value = get_path(doc, f.path)
            if value is _MISSING:
                continue
            found += 1
            groups.setdefault(ts, []).append(_number(prefix + f.point, value, source_ts))
        if not found:
            raise PayloadError("none of the configured fields is in the payload")
    if spec.items is not None:
        items = get_path(doc, spec.items)
        if not isinstance(items, list):
            raise PayloadError(f"{spec.items!r} is not an array")
        for item in items:
            name = get_path(item, spec.name_path)
            value = get_path(item, spec.value_path)
            if not isinstance(name, str) or value is _MISSING:
                raise PayloadError(f"array item without {spec.name_path!r}/{spec.value_path!r}")
            ts = arrival
            if spec.timestamp is not None:
                own = get_path(item, spec.timestamp)
                ts = (
                    parse_timestamp(own)
                    if own is not _MISSING
                    else _time_of(doc, spec.timestamp, arrival)
                )
            source_ts = ts if spec.timestamp else None
            groups.setdefault(ts, []).append(_number(prefix + name, value, source_ts))
    return [(ts, tuple(rs)) for ts, rs in sorted(groups.items())]


def find_spec(specs: Sequence[MqttTopic], topic: str) -> MqttTopic | None:
    """The first topic spec whose filter matches (profiles list specific filters first); paho's
    matcher, so `$SYS/...` topics stay out of wildcard filters as MQTT specifies."""
    return next((s for s in specs if topic_matches_sub(s.filter, topic)), None)
