"""Run every golden decoding case under edge_agent/sources/modbus/testcases/ (README there)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from edge_agent.sources.modbus.decode import BlockDecoder, decode_block
from edge_agent.sources.modbus.plan import plan_reads
from edge_agent.sources.modbus.profile import ModbusProfile
from edge_agent.types import Quality, Reading

ROOT = Path(__file__).resolve().parents[2]


def same_reading(a: Reading, b: Reading) -> bool:
    """Equal readings, NaN values counting as equal (a bad reading's value is NaN)."""
    both_nan = math.isnan(a.value) and math.isnan(b.value)
    return (a.point, a.quality) == (b.point, b.quality) and (both_nan or a.value == b.value)


CASES = sorted(p for p in (ROOT / "edge_agent/sources/modbus/testcases").iterdir() if p.is_dir())


def _yaml(path: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def _load_profile(case: Path) -> ModbusProfile:
    data = _yaml(case / "profile.yaml")
    if "use" in data:
        data = _yaml(ROOT / "firmware_configs" / data["use"])
    return ModbusProfile.model_validate(data)


def test_there_are_golden_cases():
    assert len(CASES) >= 5


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_golden_case(case: Path) -> None:
    expected = _yaml(case / "expected.yaml")
    if "error" in expected:
        with pytest.raises(ValidationError, match=expected["error"]):
            _load_profile(case)
        return
    profile = _load_profile(case)
    tables: dict[str, dict[int, int]] = {}
    for table, chunks in _yaml(case / "registers.yaml").items():
        for start, words in chunks.items():
            for i, w in enumerate(words):
                tables.setdefault(table, {})[int(start) + i] = int(w)
    numeric = [p for p in profile.points if p.is_numeric]
    got: dict[str, float | str] = {}
    # Through the planner, as the source does: blocks merge points and bridge gaps.
    for block in plan_reads(numeric, max_gap=16):
        words = [
            tables[block.table].get(a, 0) for a in range(block.start, block.start + block.count)
        ]
        readings = decode_block(block, words, profile)
        # The source's precompiled decoder gives the same readings.
        fast = BlockDecoder(block, profile).decode(words)
        assert len(fast) == len(readings) and all(map(same_reading, fast, readings))
        for r in readings:
            got[r.point] = "bad" if r.quality is Quality.BAD else r.value
    want = expected["values"]
    assert set(got) == set(want)
    for name, value in want.items():
        if value == "bad":
            assert got[name] == "bad", name
        else:
            assert got[name] == pytest.approx(value, rel=1e-6), name
