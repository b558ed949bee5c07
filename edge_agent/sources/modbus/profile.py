"""Modbus device profile: the register map of one device model and firmware revision."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.sources.modbus.codec import DataType, Order, register_count
from edge_agent.sources.profile_base import POINT_NAME, ProfileBase

Table = Literal["coil", "discrete", "holding", "input"]
BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})

# Protocol limits for one read (Modbus application protocol): function codes 3/4 read at most 125
# registers, function codes 1/2 at most 2000 bits.
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000


class ModbusPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=POINT_NAME)
    table: Table = "holding"
    address: int = Field(ge=0, le=65535)
    # `bool` for coils and discrete inputs; `string` takes `length` registers (2 chars each).
    type: DataType | Literal["bool", "string"] = "uint16"
    # A single bit (0 = least significant) of a 16-bit register, read as 0 or 1.
    bit: int | None = Field(None, ge=0, le=15)
    length: int | None = Field(None, ge=1, le=125)
    order: Order | None = None
    scale: float = 1.0
    offset: float = 0.0
    # Values outside [min, max] (engineering units) are reported with bad quality.
    min: float | None = None
    max: float | None = None
    unit: str = ""
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModbusPoint:
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if (self.table in BIT_TABLES) != (self.type == "bool"):
            raise ValueError(f"type bool goes with tables coil/discrete, not {self.table}")
        if (self.type == "string") != (self.length is not None):
            raise ValueError("`length` (registers) is required for and only for type string")
        if self.bit is not None and self.type not in ("uint16", "int16"):
            raise ValueError("`bit` needs a 16-bit register type (uint16 or int16)")
        if self.address + self.count > 65536:
            raise ValueError(f"{self.type} at {self.address} runs past address 65535")
        return self

    @property
    def count(self) -> int:
        """Registers (or bits, for the bit tables) this point occupies."""
        if self.type == "bool":
            return 1
        if self.type == "string":
            assert self.length is not None
            return self.length
        return register_count(self.type)

    @property
    def is_numeric(self) -> bool:
        return self.type != "string"


class ModbusProfile(ProfileBase):
    """The register map of a Modbus device."""

    protocol: Literal["modbus"] = "modbus"
    order: Order = "ABCD"
    points: tuple[ModbusPoint, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_and_disjoint(self) -> ModbusProfile:
        seen: dict[str, int] = {}
        for i, p in enumerate(self.points):
            if p.name in seen:
                raise ValueError(f"points[{i}].name: duplicate point name {p.name!r}")
            seen[p.name] = i
        # Bits of one register may be shared by several bit points, never by a whole register.
        used: dict[tuple[str, int], tuple[str, int | None]] = {}
        for p in self.points:
            for a in range(p.address, p.address + p.count):
                other = used.get((p.table, a))
                if other is not None and (p.bit is None or other[1] is None or other[1] == p.bit):
                    raise ValueError(f"point {p.name!r} overlaps {other[0]!r} at {p.table} {a}")
                used[(p.table, a)] = (p.name, p.bit)
        return self

    def point(self, name: str) -> ModbusPoint:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)

    def point_names(self) -> list[str]:
        return [p.name for p in self.points]

    def check_signal(self, name: str) -> None:
        if not self.point(name).is_numeric:
            raise ValueError(f"point {name!r} is a string; strings are not signals")

    def unit_of(self, name: str) -> str:
        return self.point(name).unit

    def order_of(self, point: ModbusPoint) -> Order:
        return point.order or self.order
