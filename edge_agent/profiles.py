"""Device profiles: one YAML file per device model and firmware revision in `firmware_configs/`.

A profile declares its protocol (`protocol: modbus | opcua | mqtt`, one per package under
`edge_agent/sources/`; a profile without the key is a Modbus profile, so the original format
stays valid). A Modbus profile is the register map of a device, an OPC UA profile maps point
names to node ids, an MQTT profile maps topic filters and payload fields to point names. The
agent decodes with a profile and the simulators serve with it, so both always agree.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from edge_agent.sources.modbus.profile import ModbusProfile
from edge_agent.sources.profile_base import ProfileBase
from edge_agent.sources.registry import parse_profile


def load_any_profile(path: Path) -> ProfileBase:
    with path.open(encoding="utf-8") as fh:
        return parse_profile(yaml.safe_load(fh))


def load_profile(path: Path) -> ModbusProfile:
    """A Modbus profile (the simulators' register maps); other protocols are a ValueError."""
    profile = load_any_profile(path)
    if not isinstance(profile, ModbusProfile):
        raise ValueError(f"{path}: a {profile.protocol} profile, not a modbus one")
    return profile


def packaged_profile_dirs() -> list[Path]:
    """Profile folders that ship with the code: installed next to the package, or the repo's."""
    here = Path(__file__).resolve().parent
    return [p for p in (here / "firmware_configs", here.parent / "firmware_configs") if p.is_dir()]


def resolve_profile(ref: str, search_dirs: list[Path]) -> Path:
    """A profile reference is a path (relative to the first search dir) or a bare name."""
    candidates: list[Path] = []
    as_path = Path(ref)
    if as_path.suffix in (".yaml", ".yml") or "/" in ref:
        candidates.append(as_path if as_path.is_absolute() else search_dirs[0] / as_path)
    else:
        candidates.extend(d / f"{ref}.yaml" for d in search_dirs)
    for c in candidates:
        if c.is_file():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"device profile {ref!r} not found (looked for {tried})")
