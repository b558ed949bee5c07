"""MQTT publisher: QoS 1 alerts that leave the queue only after the broker's PUBACK, a retained
status (birth) message, a last will, and reconnects with capped, jittered backoff.

The queue is in memory and bounded; a message is removed only once acknowledged, so a broker
outage or a dropped connection delays alerts but does not lose them while the agent runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import aiomqtt

from edge_agent.alerts.messages import Topics, encode, status_payload
from edge_agent.backoff import Backoff
from edge_agent.config import Identity, Mqtt
from edge_agent.logs import RateLimitedLog

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False


@dataclass(slots=True)
class PublisherStats:
    published: int = 0
    dropped: int = 0
    connects: int = 0
    connect_failures: int = 0
    connected: bool = False
    queued: int = 0
    last_error: str = field(default="")


class MqttPublisher:
    def __init__(
        self,
        cfg: Mqtt,
        identity: Identity,
        agent_version: str,
        models: dict[str, str],
        max_queue: int = 100_000,
        password: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.identity = identity
        self.topics = Topics(cfg.topic_prefix, identity.site, identity.gateway)
        self.client_id = cfg.client_id or f"edge-agent-{identity.site}-{identity.gateway}"
        self.stats = PublisherStats()
        self._version = agent_version
        self._models = models
        self._queue: deque[Outgoing] = deque()
        self._max_queue = max_queue
        self._wakeup = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._password = password
        self._errors = RateLimitedLog(log)
        self.connected = asyncio.Event()

    def _status(self, state: str) -> Outgoing:
        body = status_payload(
            state,
            self.identity.site,
            self.identity.gateway,
            self._version,
            self._models,
            time.time(),
        )
        return Outgoing(self.topics.status, encode(body), qos=1, retain=True)

    def submit(self, topic: str, payload: bytes, qos: int | None = None) -> None:
        """Queue a message; never blocks. Oldest messages are dropped (and counted) only when the
        bound is reached."""
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            self.stats.dropped += 1
            self._errors.log(logging.ERROR, "drop", "upstream queue full: dropped oldest message")
        self._queue.append(Outgoing(topic, payload, self.cfg.qos if qos is None else qos))
        self.stats.queued = len(self._queue)
        self._wakeup.set()

    def _make_client(self) -> aiomqtt.Client:
        will = self._status("offline")
        return aiomqtt.Client(
            self.cfg.host,
            self.cfg.port,
            identifier=self.client_id,
            username=self.cfg.username,
            password=self._password,
            will=aiomqtt.Will(will.topic, will.payload, qos=1, retain=True),
            keepalive=self.cfg.keepalive_s,
            timeout=10.0,
            clean_session=False,
        )

    async def run(self) -> None:
        """Connect, publish birth, drain the queue; reconnect forever with backoff."""
        backoff = Backoff(
            self.cfg.backoff.initial_s, self.cfg.backoff.max_s, self.cfg.backoff.jitter
        )
        while True:
            try:
                async with self._make_client() as client:
                    self._client = client
                    self.stats.connects += 1
                    self.stats.connected = True
                    self._errors.reset("connect")
                    log.info("connected to MQTT broker %s:%d", self.cfg.host, self.cfg.port)
                    backoff.reset()
                    birth = self._status("online")
                    await client.publish(birth.topic, birth.payload, qos=1, retain=True)
                    self.connected.set()
                    await self._drain(client)
            except aiomqtt.MqttError as exc:
                self.stats.connect_failures += 1
                self.stats.last_error = str(exc)
                self._errors.log(
                    logging.WARNING,
                    "connect",
                    "MQTT broker %s:%d unavailable: %s (retrying with backoff)",
                    self.cfg.host,
                    self.cfg.port,
                    exc,
                )
            finally:
                self._client = None
                self.stats.connected = False
                self.connected.clear()
            await asyncio.sleep(backoff.next_delay())

    async def _drain(self, client: aiomqtt.Client) -> None:
        # Iterating `messages` raises MqttError when the connection drops, even while idle.
        async def watch() -> None:
            async for _ in client.messages:
                pass

        watcher = asyncio.create_task(watch(), name="mqtt-connection-watch")
        try:
            while True:
                while self._queue:
                    msg = self._queue[0]
                    # At QoS 1 this returns after PUBACK; only then does the message leave.
                    await client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
                    # The head may have been dropped for space meanwhile; remove by identity.
                    if self._queue and self._queue[0] is msg:
                        self._queue.popleft()
                    self.stats.published += 1
                    self.stats.queued = len(self._queue)
                self._wakeup.clear()
                wake = asyncio.create_task(self._wakeup.wait())
                done, _ = await asyncio.wait({wake, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if watcher in done:
                    wake.cancel()
                    watcher.result()  # raises MqttError
                    raise aiomqtt.MqttError("connection closed")
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await watcher

    async def close(self, wait_s: float = 2.0) -> None:
        """Publish the retained offline status (a clean disconnect does not fire the will)."""
        client = self._client
        if client is None:
            return
        offline = self._status("offline")
        try:
            await client.publish(offline.topic, offline.payload, qos=1, retain=True, timeout=wait_s)
        except aiomqtt.MqttError as exc:
            log.warning("could not publish offline status: %s", exc)
