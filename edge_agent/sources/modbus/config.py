"""Config models of the Modbus sources (`type: modbus_tcp`, `type: modbus_rtu`) and the checks
that span several of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from edge_agent.config_base import Host, SourceConfigBase


class ModbusTcpConfig(SourceConfigBase):
    type: Literal["modbus_tcp"]
    host: Host
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    poll_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(1.0, gt=0)
    # Registers that may be read in between two wanted ones to save a request.
    max_gap: int = Field(16, ge=0, le=124)
    # False for devices that reject reads spanning several points: one request per point.
    merge_reads: bool = True
    # At start-up, probe every point once; addresses the device rejects stop the agent (exit 2)
    # instead of being reported bad and retried.
    strict: bool = False


class ModbusRtuConfig(SourceConfigBase):
    """One device (unit id) on a serial line. Sources naming the same `serial_port` share the line
    and take turns; the line settings must then agree."""

    type: Literal["modbus_rtu"]
    serial_port: str = Field(min_length=1, description="e.g. /dev/ttyUSB0")
    baudrate: int = Field(19200, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit_id: int = Field(1, ge=1, le=247)
    poll_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(0.5, gt=0)
    # Quiet time between two requests on the line; slow RS-485 converters need a few ms.
    inter_request_delay_s: float = Field(0.005, ge=0, le=1)
    max_gap: int = Field(16, ge=0, le=124)
    merge_reads: bool = True
    strict: bool = False


def check_sources(
    sources: Sequence[tuple[int, SourceConfigBase]], base_dir: Path | None
) -> list[str]:
    """Sources naming the same serial port share the line: its settings must agree."""
    errors: list[str] = []
    lines: dict[str, tuple[int, ModbusRtuConfig]] = {}
    for i, src in sources:
        if isinstance(src, ModbusRtuConfig):
            first = lines.setdefault(src.serial_port, (i, src))
            settings_of = ("baudrate", "parity", "stopbits", "bytesize")
            if any(getattr(src, k) != getattr(first[1], k) for k in settings_of):
                errors.append(
                    f"sources[{i}]: shares serial port {src.serial_port} with sources[{first[0]}] "
                    "but not its line settings (baudrate, parity, stopbits, bytesize)"
                )
    return errors
