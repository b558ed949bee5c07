"""The field protocols the agent speaks: one entry per protocol package (`sources/<protocol>/`).

Everything protocol-specific outside those packages is derived from this table: the config's
`sources` union and its `type` tags, the profile union and its `protocol` tags, the cross-source
config checks, the error counters the metrics export and `build_sources`. A protocol's library
(pymodbus, asyncua, aiomqtt) is imported only by its factory, which `build_source` imports when
a configured source needs it, so a Modbus-only gateway never loads asyncua.

Adding a protocol: a folder with `config.py` (a `SourceConfigBase` per kind of source),
`profile.py` (a `ProfileBase`), its source with a `build` factory, a README and golden cases;
then one `Protocol(...)` line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Discriminator, Field, Tag, TypeAdapter

from edge_agent.config_base import SourceConfigBase
from edge_agent.sources.base import BuildContext
from edge_agent.sources.modbus import config as modbus_config
from edge_agent.sources.modbus.config import ModbusRtuConfig, ModbusTcpConfig
from edge_agent.sources.modbus.profile import ModbusProfile
from edge_agent.sources.mqtt import config as mqtt_config
from edge_agent.sources.mqtt.config import MqttInConfig
from edge_agent.sources.mqtt.profile import MqttProfile
from edge_agent.sources.opcua import config as opcua_config
from edge_agent.sources.opcua.config import OpcUaConfig
from edge_agent.sources.opcua.profile import OpcUaProfile
from edge_agent.sources.profile_base import ProfileBase

if TYPE_CHECKING:
    from edge_agent.sources.base import Source

# Config checks that span the sources of one protocol (a shared serial line, certificate files);
# the config's folder, or None to leave the files alone (`load_config(files=False)`).
Check = Callable[[Sequence[tuple[int, SourceConfigBase]], Path | None], list[str]]


@dataclass(frozen=True)
class Protocol:
    name: str  # the `protocol:` tag of its profiles
    profile: type[ProfileBase]
    # `type:` tag of a source → (its config model, "module:factory" imported only when used).
    kinds: dict[str, tuple[type[SourceConfigBase], str]]
    check: Check
    # Counters of its sources' `stats` that mean something went wrong (exported as errors).
    error_counters: tuple[str, ...]


PROTOCOLS: tuple[Protocol, ...] = (
    Protocol(
        "modbus",
        ModbusProfile,
        {
            "modbus_tcp": (ModbusTcpConfig, "edge_agent.sources.modbus.tcp:build"),
            "modbus_rtu": (ModbusRtuConfig, "edge_agent.sources.modbus.rtu:build"),
        },
        modbus_config.check_sources,
        ("exceptions", "timeouts", "decode_errors", "reconnects"),
    ),
    Protocol(
        "opcua",
        OpcUaProfile,
        {"opcua": (OpcUaConfig, "edge_agent.sources.opcua.source:build")},
        opcua_config.check_sources,
        ("bad_nodes", "connection_losses"),
    ),
    Protocol(
        "mqtt",
        MqttProfile,
        {"mqtt": (MqttInConfig, "edge_agent.sources.mqtt.source:build")},
        mqtt_config.check_sources,
        ("malformed", "dropped", "inbox_dropped"),
    ),
)

PROTOCOL_OF_KIND: dict[str, Protocol] = {k: p for p in PROTOCOLS for k in p.kinds}
SOURCE_TAGS: frozenset[str] = frozenset(PROTOCOL_OF_KIND)
PROFILE_TAGS: frozenset[str] = frozenset(p.name for p in PROTOCOLS)
ERROR_COUNTERS: tuple[str, ...] = tuple(c for p in PROTOCOLS for c in p.error_counters)

# The `sources` list item: pydantic picks the model by `type`. Built from the table, so mypy sees
# the common base (protocol code narrows with isinstance) and pydantic the discriminated union.
if TYPE_CHECKING:
    SourceConfig = SourceConfigBase
else:
    SourceConfig = Annotated[
        Union[tuple(model for p in PROTOCOLS for model, _ in p.kinds.values())],  # noqa: UP007
        Field(discriminator="type"),
    ]


def _protocol_of(data: Any) -> str:
    # A profile without `protocol:` is a Modbus register map (the original format).
    if isinstance(data, dict):
        return str(data.get("protocol", "modbus"))
    return str(getattr(data, "protocol", "modbus"))


_PROFILES: TypeAdapter[ProfileBase] = TypeAdapter(
    Annotated[  # type: ignore[arg-type]  # a union built from the table, as SourceConfig
        Union[tuple(Annotated[p.profile, Tag(p.name)] for p in PROTOCOLS)],  # noqa: UP007
        Discriminator(_protocol_of),
    ]
)


def parse_profile(data: object) -> ProfileBase:
    """A device profile of any protocol (pydantic's ValidationError when it is not one)."""
    return _PROFILES.validate_python(data)


def build_source(
    cfg: SourceConfigBase, profile: ProfileBase, points: Sequence[str], ctx: BuildContext
) -> Source:
    """The runtime source of one configured source, its protocol imported now."""
    _, target = PROTOCOL_OF_KIND[cfg.type].kinds[cfg.type]
    module, _, attr = target.partition(":")
    factory: Callable[[SourceConfigBase, ProfileBase, Sequence[str], BuildContext], Source]
    factory = getattr(importlib.import_module(module), attr)
    return factory(cfg, profile, points, ctx)
