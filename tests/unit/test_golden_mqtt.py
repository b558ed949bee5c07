"""Run every golden parsing case under edge_agent/sources/mqtt/testcases/ (README there)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.sources.mqtt.parse import PayloadError, find_spec, parse_message
from edge_agent.sources.mqtt.profile import MqttProfile
from edge_agent.types import Quality

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted(p for p in (ROOT / "edge_agent/sources/mqtt/testcases").iterdir() if p.is_dir())


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _profile(case: Path) -> MqttProfile:
    data = _yaml(case / "profile.yaml")
    if "use" in data:
        data = _yaml(ROOT / "firmware_configs" / data["use"])
    return MqttProfile.model_validate(data)


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 4


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_golden_case(case: Path) -> None:
    profile = _profile(case)
    messages = _yaml(case / "messages.yaml")
    expected = _yaml(case / "expected.yaml")
    assert len(messages) == len(expected), "one expected entry per message"
    for i, (msg, want) in enumerate(zip(messages, expected, strict=True)):
        payload = (
            bytes.fromhex(msg["payload_hex"]) if "payload_hex" in msg else msg["payload"].encode()
        )
        spec = find_spec(profile.topics, msg["topic"])
        if want.get("unmatched"):
            assert spec is None, f"message {i}"
            continue
        assert spec is not None, f"message {i}: no filter matches {msg['topic']}"
        if "error" in want:
            with pytest.raises(PayloadError, match=want["error"]):
                parse_message(spec, msg["topic"], payload, msg["arrival"])
            continue
        groups = parse_message(spec, msg["topic"], payload, msg["arrival"])
        assert [ts for ts, _ in groups] == [g["ts"] for g in want["groups"]], f"message {i}"
        for (_, readings), g in zip(groups, want["groups"], strict=True):
            got = {r.point: r for r in readings}
            assert set(got) == set(g["values"]), f"message {i}"
            for point, value in g["values"].items():
                r = got[point]
                if value == "bad":
                    assert r.quality is Quality.BAD and math.isnan(r.value), (i, point)
                else:
                    assert r.quality is Quality.GOOD and r.value == pytest.approx(value), (i, point)
