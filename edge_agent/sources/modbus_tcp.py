"""Modbus TCP source: the shared Modbus poller on its own TCP connection."""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.config import ModbusTcpSource as ModbusTcpConfig
from edge_agent.profiles import DeviceProfile
from edge_agent.sources.modbus_link import tcp_link
from edge_agent.sources.modbus_source import ModbusSource, SourceStats, decode_block

__all__ = ["ModbusTcpSource", "SourceStats", "decode_block"]


class ModbusTcpSource(ModbusSource):
    def __init__(self, cfg: ModbusTcpConfig, profile: DeviceProfile, points: Sequence[str]) -> None:
        super().__init__(cfg, profile, points, tcp_link(cfg))
