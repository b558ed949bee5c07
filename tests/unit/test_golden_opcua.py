"""Run every golden data-value case under edge_agent/sources/opcua/testcases/ (README there)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from edge_agent.sources.opcua.values import to_reading
from edge_agent.types import Quality

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted(p for p in (ROOT / "edge_agent/sources/opcua/testcases").iterdir() if p.is_dir())


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _variant(item: dict[str, Any]) -> ua.Variant:
    kind = ua.VariantType[item["type"]]
    if kind is ua.VariantType.Null:
        return ua.Variant()
    value = item["value"]
    if kind is ua.VariantType.ByteString:
        value = bytes.fromhex(value)
    elif kind is ua.VariantType.LocalizedText:
        value = ua.LocalizedText(value)
    return ua.Variant(value, kind, is_array=isinstance(value, list))


def _on_the_wire(item: dict[str, Any]) -> ua.DataValue:
    """The data value encoded as the server sends it and decoded as the client receives it."""
    source_time = item.get("source_time")
    dv = ua.DataValue(
        _variant(item),
        ua.StatusCode(getattr(ua.StatusCodes, item.get("status", "Good"))),
        SourceTimestamp=datetime.fromisoformat(source_time).replace(tzinfo=UTC)
        if source_time
        else None,
    )
    return struct_from_binary(ua.DataValue, Buffer(struct_to_binary(dv)))


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 3


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_golden_case(case: Path) -> None:
    values = _yaml(case / "values.yaml")
    expected = _yaml(case / "expected.yaml")
    assert len(values) == len(expected), "one expected entry per value"
    for i, (item, want) in enumerate(zip(values, expected, strict=True)):
        dv = _on_the_wire(item)
        value = dv.Value.Value if dv.Value is not None else None
        r = to_reading("p", value, dv.StatusCode.value, dv.SourceTimestamp)
        assert r.quality is Quality[want["quality"].upper()], i
        if want["value"] == "bad":
            assert math.isnan(r.value), i
        else:
            assert r.value == want["value"], i  # exact: the mapping must not round
        assert r.source_ts == want["ts"], i
