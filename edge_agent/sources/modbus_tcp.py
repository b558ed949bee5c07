"""Modbus TCP polling source (pymodbus asyncio client).

Polls on an absolute schedule (t0 + k * interval) so batches land on the asset grid without
drift. A device fault never escapes the loop: exception responses mark the block's points bad and
are counted; timeouts and broken connections close the client and reconnect with capped, jittered
backoff, while readings are reported bad so the stream knows the data is missing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from edge_agent.backoff import Backoff
from edge_agent.config import ModbusTcpSource as ModbusTcpConfig
from edge_agent.logs import RateLimitedLog
from edge_agent.profiles import DeviceProfile, ModbusPoint
from edge_agent.sources.modbus_codec import DecodeError, decode_raw, to_engineering
from edge_agent.sources.modbus_plan import ReadBlock, plan_reads
from edge_agent.types import Batch, Quality, Reading

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SourceStats:
    polls: int = 0
    requests: int = 0
    readings: int = 0
    exceptions: int = 0
    timeouts: int = 0
    reconnects: int = 0
    decode_errors: int = 0
    connected: bool = False


def decode_block(
    block: ReadBlock, registers: Sequence[int], profile: DeviceProfile
) -> list[Reading]:
    """Pure: the registers of one block → one reading per point of the block."""
    out = []
    for p in block.points:
        off = p.address - block.start
        try:
            raw = decode_raw(registers[off : off + p.count], p.type, profile.order_of(p))
            value = to_engineering(raw, p.scale, p.offset)
            quality = Quality.GOOD if math.isfinite(value) else Quality.BAD
        except DecodeError:
            value, quality = math.nan, Quality.BAD
        out.append(Reading(p.name, value, quality))
    return out


class ModbusTcpSource:
    def __init__(self, cfg: ModbusTcpConfig, profile: DeviceProfile, points: Sequence[str]) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.profile = profile
        wanted: list[ModbusPoint] = [profile.point(n) for n in dict.fromkeys(points)]
        self.blocks = plan_reads(wanted, max_gap=cfg.max_gap)
        self.stats = SourceStats()
        self._client: AsyncModbusTcpClient | None = None
        self._errors = RateLimitedLog(log)
        self._backoff = Backoff(cfg.backoff.initial_s, cfg.backoff.max_s, cfg.backoff.jitter)

    async def __aenter__(self) -> ModbusTcpSource:
        log.info(
            "source %s: %s:%d unit %d, %d points in %d request(s) per poll",
            self.name,
            self.cfg.host,
            self.cfg.port,
            self.cfg.unit_id,
            sum(len(b.points) for b in self.blocks),
            len(self.blocks),
        )
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._disconnect()

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.stats.connected = False

    async def _connect(self) -> bool:
        # pymodbus' own reconnect is disabled (retries=0, no auto-reconnect); this loop owns it so
        # the backoff is capped and jittered and the state is visible.
        client = AsyncModbusTcpClient(
            self.cfg.host,
            port=self.cfg.port,
            timeout=self.cfg.timeout_s,
            retries=0,
            reconnect_delay=0,
        )
        try:
            ok = await asyncio.wait_for(client.connect(), self.cfg.timeout_s + 1)
        except (TimeoutError, OSError, ModbusException):
            ok = False
        if not ok:
            client.close()
            self._errors.log(
                logging.WARNING,
                "connect",
                "source %s: cannot connect to %s:%d (retrying with backoff)",
                self.name,
                self.cfg.host,
                self.cfg.port,
            )
            return False
        self._client = client
        self.stats.connected = True
        self.stats.reconnects += 1
        self._backoff.reset()
        self._errors.reset("connect")
        log.info("source %s: connected to %s:%d", self.name, self.cfg.host, self.cfg.port)
        return True

    async def _read(self, block: ReadBlock) -> list[Reading]:
        assert self._client is not None
        read = (
            self._client.read_holding_registers
            if block.table == "holding"
            else self._client.read_input_registers
        )
        self.stats.requests += 1
        rsp = await read(block.start, count=block.count, device_id=self.cfg.unit_id)
        if rsp.isError():
            self.stats.exceptions += 1
            self._errors.log(
                logging.WARNING,
                f"exc:{block.start}",
                "source %s: device answered exception %s reading %s",
                self.name,
                getattr(rsp, "exception_code", "?"),
                block.describe(),
            )
            return [Reading(p.name, math.nan, Quality.BAD) for p in block.points]
        readings = decode_block(block, rsp.registers, self.profile)
        self.stats.decode_errors += sum(1 for r in readings if r.quality is Quality.BAD)
        return readings

    def _all_bad(self) -> tuple[Reading, ...]:
        return tuple(Reading(p.name, math.nan, Quality.BAD) for b in self.blocks for p in b.points)

    async def poll_once(self, ts: float) -> Batch:
        """One poll cycle; any failure is turned into bad readings, never an exception."""
        self.stats.polls += 1
        if self._client is None and not await self._connect():
            return Batch(self.name, ts, self._all_bad())
        readings: list[Reading] = []
        try:
            for block in self.blocks:
                readings.extend(await self._read(block))
        except (ModbusException, OSError, TimeoutError) as exc:
            # Timeouts and transaction mismatches leave the connection in an unknown state.
            self.stats.timeouts += 1
            self._errors.log(
                logging.WARNING,
                "io",
                "source %s: %s; reconnecting",
                self.name,
                str(exc) or type(exc).__name__,
            )
            self._disconnect()
            return Batch(self.name, ts, self._all_bad())
        self.stats.readings += len(readings)
        return Batch(self.name, ts, tuple(readings))

    async def batches(self) -> AsyncIterator[Batch]:
        interval = self.cfg.poll_interval_s
        t0 = time.time()
        k = 0
        while True:
            ts = t0 + k * interval
            delay = ts - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            yield await self.poll_once(ts)
            if self._client is None:
                # Disconnected: wait out the backoff, then resume on the grid.
                await asyncio.sleep(self._backoff.next_delay())
            # Skip instants already in the past (a slow device) instead of bursting to catch up.
            k = max(k + 1, math.ceil((time.time() - t0) / interval))
