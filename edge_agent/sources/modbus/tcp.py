"""Modbus TCP source: the shared Modbus poller on its own TCP connection."""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.config_base import SourceConfigBase
from edge_agent.sources.base import BuildContext
from edge_agent.sources.modbus.config import ModbusTcpConfig
from edge_agent.sources.modbus.link import tcp_link
from edge_agent.sources.modbus.profile import ModbusProfile
from edge_agent.sources.modbus.source import ModbusSource, SourceStats
from edge_agent.sources.profile_base import ProfileBase

__all__ = ["ModbusTcpSource", "SourceStats"]


class ModbusTcpSource(ModbusSource):
    def __init__(self, cfg: ModbusTcpConfig, profile: ModbusProfile, points: Sequence[str]) -> None:
        super().__init__(cfg, profile, points, tcp_link(cfg))


def build(
    cfg: SourceConfigBase, profile: ProfileBase, points: Sequence[str], ctx: BuildContext
) -> ModbusTcpSource:
    """The registry's factory for `type: modbus_tcp`."""
    assert isinstance(cfg, ModbusTcpConfig) and isinstance(profile, ModbusProfile)
    return ModbusTcpSource(cfg, profile, points)
