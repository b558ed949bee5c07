"""MQTT consumer source (aiomqtt): readings that sensors and gateways publish to a broker.

Subscribes to every topic filter of the device profile; each message is parsed by its filter's
parser (`mqtt_parse`, pure) into batches, timestamped from the payload or on arrival. The
subscriptions are made again after every (re)connect, so a broker restart or a session the
broker forgot loses nothing but the messages sent while we were away. Malformed payloads are
counted and dropped with a rate-limited log line; they never stop the source. Messages wait for
the parser in a bounded inbox (`edge_agent/mqtt_inbox.py`) and batches for the pipeline in a
bounded queue: a consumer that falls behind drops the oldest of either, counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import aiomqtt

from edge_agent.backoff import Backoff
from edge_agent.config_base import SourceConfigBase, resolve_path
from edge_agent.logs import RateLimitedLog
from edge_agent.mqtt_inbox import inbox
from edge_agent.sources.base import BuildContext, TaskOwner, read_password_file
from edge_agent.sources.mqtt.config import MqttInConfig
from edge_agent.sources.mqtt.parse import PayloadError, find_spec, parse_message
from edge_agent.sources.mqtt.profile import MqttProfile
from edge_agent.sources.profile_base import ProfileBase
from edge_agent.types import Batch

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000


@dataclass(slots=True)
class MqttInStats:
    messages: int = 0
    malformed: int = 0
    unmatched: int = 0
    readings: int = 0
    dropped: int = 0  # batches dropped because the consumer fell behind (oldest first)
    inbox_dropped: int = 0  # messages dropped before parsing, the same way
    connects: int = 0
    connected: bool = False


class MqttInSource(TaskOwner):
    def __init__(
        self,
        cfg: MqttInConfig,
        profile: MqttProfile,
        points: Sequence[str],
        base_dir: Path | None = None,
    ) -> None:
        """`base_dir`: the config file's folder, which a relative `password_file` starts from."""
        self.cfg = cfg
        self._password_file = (
            resolve_path(base_dir or Path.cwd(), cfg.password_file) if cfg.password_file else None
        )
        self.name = cfg.name
        self.profile = profile
        self.wanted = set(points)
        self.stats = MqttInStats()
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._errors = RateLimitedLog(log)
        self._backoff = Backoff.from_config(cfg.backoff)
        self.subscribed = asyncio.Event()  # set after each successful (re)subscription

    async def __aenter__(self) -> Self:
        log.info(
            "source %s: mqtt %s:%d, %d topic filter(s)",
            self.name,
            self.cfg.host,
            self.cfg.port,
            len(self.profile.topics),
        )
        self._task = asyncio.create_task(self._run(), name=f"mqtt-in:{self.name}")
        return self

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.cfg.host,
                    self.cfg.port,
                    identifier=self.cfg.client_id,
                    username=self.cfg.username,
                    password=read_password_file(self._password_file),
                    keepalive=self.cfg.keepalive_s,
                    timeout=10,
                    queue_type=inbox(self._inbox_overflow),
                    max_queued_incoming_messages=QUEUE_SIZE,
                ) as client:
                    for spec in self.profile.topics:
                        await client.subscribe(spec.filter, qos=self.cfg.qos)
                    self.stats.connects += 1
                    self.stats.connected = True
                    self._backoff.reset()
                    self._errors.reset("connect")
                    self.subscribed.set()
                    log.info(
                        "source %s: subscribed to %d filter(s)", self.name, len(self.profile.topics)
                    )
                    async for message in client.messages:
                        self.handle(str(message.topic), _payload(message.payload), time.time())
            except aiomqtt.MqttError as exc:
                self._errors.log(
                    logging.WARNING,
                    "connect",
                    "source %s: broker %s:%d: %s (reconnecting with backoff)",
                    self.name,
                    self.cfg.host,
                    self.cfg.port,
                    exc,
                )
            finally:
                self.stats.connected = False
                self.subscribed.clear()
            await asyncio.sleep(self._backoff.next_delay())

    def _inbox_overflow(self) -> None:
        self.stats.inbox_dropped += 1
        self._errors.log(
            logging.WARNING,
            "inbox",
            "source %s: messages arrive faster than they are parsed; dropped the oldest "
            "(%d so far)",
            self.name,
            self.stats.inbox_dropped,
        )

    def handle(self, topic: str, payload: bytes, arrival: float) -> None:
        """One message in: parsed, filtered to the wanted points, queued as batches."""
        self.stats.messages += 1
        spec = find_spec(self.profile.topics, topic)
        if spec is None:
            self.stats.unmatched += 1
            return
        try:
            groups = parse_message(spec, topic, payload, arrival)
        except PayloadError as exc:
            self.stats.malformed += 1
            self._errors.log(
                logging.WARNING,
                f"malformed:{spec.filter}",
                "source %s: dropped malformed message on %s: %s",
                self.name,
                topic,
                exc,
            )
            return
        for ts, readings in groups:
            mine = tuple(r for r in readings if r.point in self.wanted)
            if not mine:
                continue
            self.stats.readings += len(mine)
            if self._queue.full():
                # Overflow policy: the newest data matters most; drop the oldest batch.
                self._queue.get_nowait()
                self.stats.dropped += 1
            self._queue.put_nowait(Batch(self.name, ts, mine))

    async def batches(self) -> AsyncIterator[Batch]:
        while True:
            # Raises whatever ended the connection task (a missing password file, a bug), so the
            # agent's supervisor reports it and starts the source again.
            yield await self.next_item(self._queue)


def _payload(raw: object) -> bytes:
    if isinstance(raw, bytes | bytearray):
        return bytes(raw)
    if isinstance(raw, str):
        return raw.encode("utf-8")
    return str(raw).encode("utf-8")


def build(
    cfg: SourceConfigBase, profile: ProfileBase, points: Sequence[str], ctx: BuildContext
) -> MqttInSource:
    """The registry's factory for `type: mqtt`."""
    assert isinstance(cfg, MqttInConfig) and isinstance(profile, MqttProfile)
    return MqttInSource(cfg, profile, points, base_dir=ctx.base_dir)
