"""Device profiles: one YAML file per device model and firmware revision in `firmware_configs/`.

A profile declares its protocol (`protocol: modbus | opcua | mqtt`, discriminated union; a profile
without the key is a Modbus profile, so the original format stays valid). A Modbus profile is the
register map of a device, an OPC UA profile maps point names to node ids, an MQTT profile maps
topic filters and payload fields to point names. The agent decodes with a profile and the
simulators serve with it, so both always agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, model_validator

from edge_agent.sources.modbus_codec import DataType, Order, register_count

Table = Literal["coil", "discrete", "holding", "input"]
BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})

# Protocol limits for one read (Modbus application protocol): function codes 3/4 read at most 125
# registers, function codes 1/2 at most 2000 bits.
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000

POINT_NAME = r"^[A-Za-z_][A-Za-z0-9_.]*$"


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


class _ProfileBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile_version: Literal[1] = 1
    vendor: str
    model: str
    firmware: str
    description: str = ""

    def point_names(self) -> list[str]:
        raise NotImplementedError

    def check_signal(self, name: str) -> None:
        """Raise KeyError when `name` is not a point of this profile, ValueError when it is but
        cannot be a numeric signal."""
        if name not in self.point_names():
            raise KeyError(name)

    def unit_of(self, name: str) -> str:
        raise NotImplementedError


class DeviceProfile(_ProfileBase):
    """A Modbus device profile (the name predates the other protocols)."""

    protocol: Literal["modbus"] = "modbus"
    order: Order = "ABCD"
    points: tuple[ModbusPoint, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_and_disjoint(self) -> DeviceProfile:
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


ModbusProfile = DeviceProfile


class OpcUaNode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=POINT_NAME)
    node_id: str = Field(min_length=3, description="e.g. ns=2;s=Pump.MotorCurrent")
    unit: str = ""
    description: str = ""


class OpcUaProfile(_ProfileBase):
    protocol: Literal["opcua"]
    nodes: tuple[OpcUaNode, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> OpcUaProfile:
        names = [n.name for n in self.nodes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate node names: {', '.join(dup)}")
        return self

    def point_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def unit_of(self, name: str) -> str:
        return self.node(name).unit

    def node(self, name: str) -> OpcUaNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


class MqttField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    point: str
    # Dotted path into the JSON document; integers index arrays (`motor.temps.0`).
    path: str


class MqttTopic(BaseModel):
    """One topic filter and how to read its payloads.

    - `json`: `fields` map paths to points; `items` names an array of readings in one message,
      each item giving its point by `name_path` and its value by `value_path`;
    - `number`: the payload is a plain number.
    `point` is a template for the point name built from topic levels (`{3}` is level 3, counting
    from 0), e.g. `{2}.{4}` for asset and signal taken from the topic.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    filter: str = Field(min_length=1)
    parser: Literal["json", "number"] = "json"
    fields: tuple[MqttField, ...] = ()
    items: str | None = None
    name_path: str = "name"
    value_path: str = "value"
    point: str | None = None
    # Path of the timestamp (epoch seconds, epoch milliseconds or ISO 8601); arrival time if unset.
    # For `items`, the path is looked up in each item first, then in the document.
    timestamp: str | None = None
    # The points this topic carries (for `items` and `number` topics; simulators publish them).
    points: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> MqttTopic:
        if self.parser == "number" and self.point is None:
            raise ValueError("parser number needs `point` (a name or a topic-level template)")
        if self.parser == "json" and not self.fields and self.items is None:
            raise ValueError("parser json needs `fields` or `items`")
        return self


class MqttProfile(_ProfileBase):
    protocol: Literal["mqtt"]
    # Points the device publishes (names as produced by the topics' fields/templates).
    points: tuple[str, ...] = Field(min_length=1)
    units: dict[str, str] = {}
    topics: tuple[MqttTopic, ...] = Field(min_length=1)

    def point_names(self) -> list[str]:
        return list(self.points)

    def unit_of(self, name: str) -> str:
        return self.units.get(name, "")


def _protocol_of(data: Any) -> str:
    if isinstance(data, dict):
        return str(data.get("protocol", "modbus"))
    return str(getattr(data, "protocol", "modbus"))


AnyProfile = Annotated[
    Annotated[DeviceProfile, Tag("modbus")]
    | Annotated[OpcUaProfile, Tag("opcua")]
    | Annotated[MqttProfile, Tag("mqtt")],
    Discriminator(_protocol_of),
]
_ADAPTER: TypeAdapter[AnyProfile] = TypeAdapter(AnyProfile)
PROFILE_TAGS = {"modbus", "opcua", "mqtt"}


def parse_profile(data: object) -> DeviceProfile | OpcUaProfile | MqttProfile:
    return _ADAPTER.validate_python(data)


def load_any_profile(path: Path) -> DeviceProfile | OpcUaProfile | MqttProfile:
    with path.open(encoding="utf-8") as fh:
        return parse_profile(yaml.safe_load(fh))


def load_profile(path: Path) -> DeviceProfile:
    """A Modbus profile (the simulators' register maps); other protocols are a ValueError."""
    profile = load_any_profile(path)
    if not isinstance(profile, DeviceProfile):
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
