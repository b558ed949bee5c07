"""Modbus RTU source: the shared Modbus poller on a serial line, possibly shared with other
devices (unit ids) that take turns on it."""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.config_base import SourceConfigBase
from edge_agent.sources.base import BuildContext
from edge_agent.sources.modbus.config import ModbusRtuConfig
from edge_agent.sources.modbus.link import ModbusLink, line_settings, serial_link
from edge_agent.sources.modbus.profile import ModbusProfile
from edge_agent.sources.modbus.source import ModbusSource
from edge_agent.sources.profile_base import ProfileBase


class SerialLines:
    """The serial lines of one agent, opened once each however many devices hang on them."""

    def __init__(self) -> None:
        self._lines: dict[str, tuple[tuple[int, str, int, int], ModbusLink]] = {}

    def get(self, cfg: ModbusRtuConfig) -> ModbusLink:
        known = self._lines.get(cfg.serial_port)
        if known is None:
            link = serial_link(cfg)
            self._lines[cfg.serial_port] = (line_settings(cfg), link)
            return link
        settings, link = known
        if settings != line_settings(cfg):
            raise ValueError(
                f"source {cfg.name}: line settings of {cfg.serial_port} differ from another "
                "source on the same line"
            )
        return link


class ModbusRtuSource(ModbusSource):
    def __init__(
        self,
        cfg: ModbusRtuConfig,
        profile: ModbusProfile,
        points: Sequence[str],
        lines: SerialLines,
    ) -> None:
        super().__init__(cfg, profile, points, lines.get(cfg))


def build(
    cfg: SourceConfigBase, profile: ProfileBase, points: Sequence[str], ctx: BuildContext
) -> ModbusRtuSource:
    """The registry's factory for `type: modbus_rtu`; the sources of one agent share its serial
    lines."""
    assert isinstance(cfg, ModbusRtuConfig) and isinstance(profile, ModbusProfile)
    lines = ctx.shared.setdefault("modbus_serial_lines", SerialLines())
    assert isinstance(lines, SerialLines)
    return ModbusRtuSource(cfg, profile, points, lines)
