"""Modbus polling source, over TCP or RTU (the difference lives in `ModbusLink`).

Polls on an absolute schedule (t0 + k * interval) so batches land on the asset grid without
drift. A device fault never escapes the loop: exception responses mark the block's points bad,
are counted and logged naming the registers, the signals and the exception; timeouts and broken
connections mark the device's points bad and (on TCP) reconnect with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from pymodbus.exceptions import ConnectionException, ModbusException

from edge_agent.logs import RateLimitedLog
from edge_agent.sources.base import SourceStartupError, poll_instants
from edge_agent.sources.modbus.codec import DecodeError, decode_string
from edge_agent.sources.modbus.config import ModbusRtuConfig, ModbusTcpConfig
from edge_agent.sources.modbus.decode import BlockDecoder
from edge_agent.sources.modbus.link import ModbusLink
from edge_agent.sources.modbus.plan import ReadBlock, plan_reads
from edge_agent.sources.modbus.profile import BIT_TABLES, ModbusPoint, ModbusProfile
from edge_agent.types import Batch, Quality, Reading

log = logging.getLogger(__name__)

__all__ = ["ModbusSource", "SourceStartupError", "SourceStats"]

EXCEPTION_NAMES = {
    1: "ILLEGAL FUNCTION",
    2: "ILLEGAL DATA ADDRESS",
    3: "ILLEGAL DATA VALUE",
    4: "SERVER DEVICE FAILURE",
    5: "ACKNOWLEDGE",
    6: "SERVER DEVICE BUSY",
    10: "GATEWAY PATH UNAVAILABLE",
    11: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}


# The client's call reading each table (pymodbus' names).
_READ_CALLS = {
    "coil": "read_coils",
    "discrete": "read_discrete_inputs",
    "holding": "read_holding_registers",
    "input": "read_input_registers",
}


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
    identity: dict[str, str] = field(default_factory=dict)


def exception_text(code: object) -> str:
    name = EXCEPTION_NAMES.get(code, "unknown") if isinstance(code, int) else "unknown"
    return f"exception {code} ({name})"


class ModbusSource:
    def __init__(
        self,
        cfg: ModbusTcpConfig | ModbusRtuConfig,
        profile: ModbusProfile,
        points: Sequence[str],
        link: ModbusLink,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.profile = profile
        self.link = link
        wanted: list[ModbusPoint] = [profile.point(n) for n in dict.fromkeys(points)]
        self.blocks = plan_reads(wanted, max_gap=cfg.max_gap, merge=cfg.merge_reads)
        self._strings = [p for p in profile.points if p.type == "string"]
        self.stats = SourceStats()
        self._errors = RateLimitedLog(log)
        self._seen_connects = 0
        # Each block's decoder, by the block's identity (kept with the block: a block split
        # after an exception gets new decoders, and a reused id cannot pick up a stale one).
        self._decoders: dict[int, tuple[ReadBlock, BlockDecoder]] = {}

    def _decoder(self, block: ReadBlock) -> BlockDecoder:
        entry = self._decoders.get(id(block))
        if entry is None or entry[0] is not block:
            entry = (block, BlockDecoder(block, self.profile))
            self._decoders[id(block)] = entry
        return entry[1]

    async def __aenter__(self) -> Self:
        log.info(
            "source %s: modbus %s unit %d, %d points in %d request(s) per poll",
            self.name,
            self.link.description,
            self.cfg.unit_id,
            sum(len(b.points) for b in self.blocks),
            len(self.blocks),
        )
        if self.cfg.strict:
            await self.probe()
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.link.disconnect()
        self.stats.connected = False

    async def _request(self, client: Any, table: str, start: int, count: int) -> Any:
        read = getattr(client, _READ_CALLS[table])
        self.stats.requests += 1
        return await read(start, count=count, device_id=self.cfg.unit_id)

    @staticmethod
    def _words(block: ReadBlock, rsp: Any) -> list[int]:
        if block.table in BIT_TABLES:
            return [int(b) for b in rsp.bits[: block.count]]
        return list(rsp.registers)

    async def probe(self) -> None:
        """Read every point on its own once; raise naming each point the device rejects."""
        async with self.link.lock:
            client = await self.link.ensure_connected()
            if client is None:
                raise SourceStartupError(
                    f"source {self.name}: cannot connect to {self.link.description}"
                )
            rejected = []
            for block in plan_reads([p for b in self.blocks for p in b.points], 0, merge=False):
                try:
                    rsp = await self._request(client, block.table, block.start, block.count)
                except (ModbusException, OSError, TimeoutError) as exc:
                    raise SourceStartupError(
                        f"source {self.name}: no answer reading {block.describe()}: {exc}"
                    ) from None
                if rsp.isError():
                    code = getattr(rsp, "exception_code", "?")
                    rejected.append(f"{block.describe()}: {exception_text(code)}")
        if rejected:
            raise SourceStartupError(
                f"source {self.name} (unit {self.cfg.unit_id}): the device rejects "
                + "; ".join(rejected)
            )

    async def _read_identity(self, client: Any) -> None:
        """String points (serial number, firmware text) are read once per connection."""
        for p in self._strings:
            try:
                rsp = await self._request(client, p.table, p.address, p.count)
                if not rsp.isError():
                    self.stats.identity[p.name] = decode_string(
                        rsp.registers, self.profile.order_of(p)
                    )
            except DecodeError:
                continue
            except (ModbusException, OSError, TimeoutError):
                break  # a silent device: the poll will report it; do not wait out every string
        if self.stats.identity:
            log.info("source %s: device identity %s", self.name, self.stats.identity)

    async def _read_block(self, client: Any, block: ReadBlock) -> list[Reading]:
        rsp = await self._request(client, block.table, block.start, block.count)
        if rsp.isError():
            self.stats.exceptions += 1
            code = getattr(rsp, "exception_code", "?")
            self._errors.log(
                logging.WARNING,
                f"exc:{block.table}:{block.start}",
                "source %s: unit %d answered %s reading %s",
                self.name,
                self.cfg.unit_id,
                exception_text(code),
                block.describe(),
            )
            if code == 2 and len(block.points) > 1:
                # An illegal address inside a merged read spoils the whole read: read these
                # points one by one from now on, so only the illegal one stays bad and the next
                # exception names it alone.
                i = self.blocks.index(block)
                self.blocks[i : i + 1] = plan_reads(block.points, 0, merge=False)
                self._decoders.clear()
                log.warning(
                    "source %s: reading %s point by point from now on", self.name, block.describe()
                )
            return [Reading(p.name, math.nan, Quality.BAD) for p in block.points]
        readings = self._decoder(block).decode(self._words(block, rsp))
        self.stats.decode_errors += sum(1 for r in readings if r.quality is Quality.BAD)
        return readings

    def _all_bad(self) -> tuple[Reading, ...]:
        return tuple(Reading(p.name, math.nan, Quality.BAD) for b in self.blocks for p in b.points)

    async def poll_once(self, ts: float) -> Batch:
        """One poll cycle; any failure is turned into bad readings, never an exception."""
        self.stats.polls += 1
        async with self.link.lock:
            client = await self.link.ensure_connected()
            self.stats.connected = client is not None
            if client is None:
                return Batch(self.name, ts, self._all_bad())
            if self.link.connects != self._seen_connects:
                self._seen_connects = self.link.connects
                self.stats.reconnects += 1
                await self._read_identity(client)
            readings: list[Reading] = []
            try:
                # A copy: a block split after an exception takes effect at the next poll.
                for i, block in enumerate(list(self.blocks)):
                    if i and self.link.pause_s:
                        await asyncio.sleep(self.link.pause_s)
                    readings.extend(await self._read_block(client, block))
            except (ModbusException, OSError, TimeoutError) as exc:
                self.stats.timeouts += 1
                line_broken = not self.link.serial or isinstance(exc, ConnectionException | OSError)
                self._errors.log(
                    logging.WARNING,
                    "io",
                    "source %s: unit %d: %s%s",
                    self.name,
                    self.cfg.unit_id,
                    str(exc) or type(exc).__name__,
                    "; reconnecting" if line_broken else "",
                )
                if line_broken:
                    self.link.disconnect()
                    self.stats.connected = False
                return Batch(self.name, ts, self._all_bad())
            finally:
                if self.link.pause_s:
                    # The next device on the line must not start talking right away either.
                    await asyncio.sleep(self.link.pause_s)
        self.stats.readings += len(readings)
        self._errors.reset("io")
        return Batch(self.name, ts, tuple(readings))

    async def batches(self) -> AsyncIterator[Batch]:
        async for ts in poll_instants(self.cfg.poll_interval_s):
            yield await self.poll_once(ts)
