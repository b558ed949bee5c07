from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.profiles import load_any_profile
from edge_agent.sources.modbus.profile import ModbusProfile

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted((ROOT / "firmware_configs").glob("*.yaml"))


def test_there_are_profiles():
    assert PROFILES


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_profile_loads(path):
    profile = load_any_profile(path)
    assert profile.point_names()


def test_overlapping_registers_are_rejected():
    with pytest.raises(ValidationError, match="overlaps"):
        ModbusProfile.model_validate(
            {
                "vendor": "v", "model": "m", "firmware": "1",
                "points": [
                    {"name": "a", "address": 0, "type": "float32"},
                    {"name": "b", "address": 1, "type": "uint16"},
                ],
            }
        )  # fmt: skip
