"""Device profiles: one YAML file per device model and firmware revision in `firmware_configs/`.

A profile is the register map of a device. The agent decodes with it and the simulator lays out
its registers with it, so both always agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.sources.modbus_codec import DataType, Order, register_count

Table = Literal["holding", "input"]

# Protocol limit for one read of registers (Modbus application protocol, function codes 3 and 4).
MAX_REGISTERS_PER_READ = 125


class ModbusPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    table: Table = "holding"
    address: int = Field(ge=0, le=65535)
    type: DataType = "uint16"
    order: Order | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    description: str = ""

    @model_validator(mode="after")
    def _fits_address_space(self) -> ModbusPoint:
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.address + register_count(self.type) > 65536:
            raise ValueError(f"{self.type} at {self.address} runs past register 65535")
        return self

    @property
    def count(self) -> int:
        return register_count(self.type)


class DeviceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile_version: Literal[1] = 1
    vendor: str
    model: str
    firmware: str
    protocol: Literal["modbus"] = "modbus"
    description: str = ""
    order: Order = "ABCD"
    points: tuple[ModbusPoint, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_and_disjoint(self) -> DeviceProfile:
        seen: dict[str, int] = {}
        for i, p in enumerate(self.points):
            if p.name in seen:
                raise ValueError(f"points[{i}].name: duplicate point name {p.name!r}")
            seen[p.name] = i
        for table in ("holding", "input"):
            used: dict[int, str] = {}
            for p in (p for p in self.points if p.table == table):
                for a in range(p.address, p.address + p.count):
                    if a in used:
                        raise ValueError(
                            f"point {p.name!r} overlaps {used[a]!r} at {table} register {a}"
                        )
                    used[a] = p.name
        return self

    def point(self, name: str) -> ModbusPoint:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)

    def order_of(self, point: ModbusPoint) -> Order:
        return point.order or self.order


def load_profile(path: Path) -> DeviceProfile:
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return DeviceProfile.model_validate(data)


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
