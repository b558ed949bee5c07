"""One Modbus connection (a TCP socket or a serial line) shared by the devices behind it.

The link owns the pymodbus client, the reconnect backoff and a lock: devices on one serial line
take turns, one poll cycle at a time, with a quiet pause between requests. A device on another
link is never held up, since every link has its own client and lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusException

from edge_agent.backoff import Backoff
from edge_agent.config_base import BackoffConfig
from edge_agent.logs import RateLimitedLog
from edge_agent.sources.modbus.config import ModbusRtuConfig, ModbusTcpConfig

log = logging.getLogger(__name__)


class ModbusLink:
    def __init__(
        self,
        description: str,
        make_client: Callable[[], ModbusBaseClient],
        connect_timeout: float,
        backoff: BackoffConfig,
        pause_s: float = 0.0,
        serial: bool = False,
    ) -> None:
        self.description = description
        self.pause_s = pause_s
        # On a serial line a silent device is no reason to reopen the port (the others answer);
        # on TCP a timeout leaves the connection in an unknown state (late answers would be taken
        # for the next transaction), so it is closed.
        self.serial = serial
        self.lock = asyncio.Lock()
        self.client: ModbusBaseClient | None = None
        self.connects = 0
        self._make_client = make_client
        self._connect_timeout = connect_timeout
        self._backoff = Backoff.from_config(backoff)
        self._retry_at = 0.0
        self._errors = RateLimitedLog(log)

    async def ensure_connected(self) -> ModbusBaseClient | None:
        """The connected client, or None while the link is down (retried after a backoff)."""
        if self.client is not None:
            return self.client
        if time.monotonic() < self._retry_at:
            return None
        # pymodbus' own reconnect is disabled (retries=0, no auto-reconnect); this loop owns it
        # so the backoff is capped and jittered and the state is visible.
        client = self._make_client()
        try:
            ok = await asyncio.wait_for(client.connect(), self._connect_timeout + 1)
        except (TimeoutError, OSError, ModbusException):
            ok = False
        if not ok:
            client.close()
            self._retry_at = time.monotonic() + self._backoff.next_delay()
            self._errors.log(
                logging.WARNING,
                "connect",
                "modbus %s: cannot connect (retrying with backoff)",
                self.description,
            )
            return None
        self.client = client
        self.connects += 1
        self._backoff.reset()
        self._errors.reset("connect")
        log.info("modbus %s: connected", self.description)
        return client

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
            # Reconnect at the next poll, then back off if that fails.
            self._retry_at = 0.0


def tcp_link(cfg: ModbusTcpConfig) -> ModbusLink:
    def make() -> ModbusBaseClient:
        return AsyncModbusTcpClient(
            cfg.host, port=cfg.port, timeout=cfg.timeout_s, retries=0, reconnect_delay=0
        )

    return ModbusLink(f"tcp {cfg.host}:{cfg.port}", make, cfg.timeout_s, cfg.backoff)


def serial_link(cfg: ModbusRtuConfig) -> ModbusLink:
    def make() -> ModbusBaseClient:
        return AsyncModbusSerialClient(
            cfg.serial_port,
            baudrate=cfg.baudrate,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            bytesize=cfg.bytesize,
            timeout=cfg.timeout_s,
            retries=0,
            reconnect_delay=0,
        )

    return ModbusLink(
        f"rtu {cfg.serial_port}@{cfg.baudrate}",
        make,
        cfg.timeout_s,
        cfg.backoff,
        pause_s=cfg.inter_request_delay_s,
        serial=True,
    )


def line_settings(cfg: ModbusRtuConfig) -> tuple[int, str, int, int]:
    """What devices sharing a serial line must agree on."""
    return (cfg.baudrate, cfg.parity, cfg.stopbits, cfg.bytesize)
