"""The Sparkplug connection: its own MQTT client (own client id, clean session, the NDEATH as its
will) to the broker of `upstream.mqtt`, beside the JSON publisher. Reconnects with backoff; each
connection takes a new bdSeq and sends the births again.

Sparkplug is an additional view: births and data go out at QoS 0 and are not queued while the
broker is away (the next births carry the current state). Alerts keep going through the JSON
outbox, which does not lose them."""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.backoff import Backoff
from edge_agent.config import IdentityConfig, MqttConfig
from edge_agent.logs import RateLimitedLog
from edge_agent.mqtt_inbox import inbox
from edge_agent.upstream.sparkplug.bdseq import BdSeqStore
from edge_agent.upstream.sparkplug.config import SparkplugConfig
from edge_agent.upstream.sparkplug.metrics import (
    MetricDef,
    alert_values,
    device_definitions,
    score_values,
)
from edge_agent.upstream.sparkplug.session import Command, EdgeNodeSession, Outgoing
from edge_agent.upstream.sparkplug.topics import SparkplugTopics
from edge_agent.upstream.tls import tls_context

if TYPE_CHECKING:
    from edge_agent.pipeline import AssetPipeline
    from edge_agent.types import StepOutput

log = logging.getLogger(__name__)

# DDATA waiting for the connection task. Beyond this (a broker far slower than the scoring) they
# are dropped, counted, and replaced by new births: dropping single DDATA would leave gaps in seq,
# which a host takes for lost messages; the births carry every metric's current value.
QUEUE_LIMIT = 1000
PUBLISH_TIMEOUT_S = 10.0
# NCMDs received and not yet handled; a flood beyond it drops the oldest, counted.
COMMAND_INBOX = 1000


class SparkplugPublisher:
    def __init__(
        self,
        cfg: SparkplugConfig,
        mqtt: MqttConfig,
        identity: IdentityConfig,
        agent_version: str,
        state_dir: Path,
        password: str | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.mqtt = mqtt
        self.topics = SparkplugTopics(
            cfg.group_id or identity.site, cfg.edge_node_id or identity.gateway
        )
        json_id = mqtt.client_id or f"edge-agent-{identity.site}-{identity.gateway}"
        self.client_id = cfg.client_id or f"{json_id}-spb"
        self.session = EdgeNodeSession(self.topics, agent_version, identity.site)
        self.bd_seq = BdSeqStore(state_dir / "sparkplug-bdseq")
        self._password = password
        self._base_dir = base_dir or Path.cwd()
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._client: aiomqtt.Client | None = None
        self._errors = RateLimitedLog(log)
        self.connected = asyncio.Event()
        self.connects = 0
        self.commands_dropped = 0  # NCMDs received faster than handled (the oldest dropped)
        self.dropped = 0
        self._defined: dict[str, AssetPipeline] = {}
        self._closed = False

    # -- from the agent (non-blocking) ------------------------------------------------------

    def observe(self, pipeline: AssetPipeline, out: StepOutput) -> None:
        """A pipeline's output for one batch: its alert changes and its latest score."""
        if self._closed:
            return  # the NDEATH is out: nothing may follow it
        if self._defined.get(pipeline.name) is not pipeline:  # new, or swapped by a reload
            self._defined[pipeline.name] = pipeline
            if self.session.define_device(pipeline.name, self._definitions(pipeline)):
                self._rebirth(f"metrics of {pipeline.name} changed")
        for event in out.alerts:
            self._send(self.session.update(pipeline.name, alert_values(event), _ms(event.ts)))
        if out.scores:
            s = out.scores[-1]
            names = pipeline.policy.signals.names
            values = score_values(s, names, pipeline.raise_threshold, pipeline.model_version)
            self._send(self.session.update(pipeline.name, values, _ms(s.ts)))

    def define(self, pipelines: list[AssetPipeline]) -> None:
        """Declare every asset as a device before the first births."""
        for p in pipelines:
            self._defined[p.name] = p
            self.session.define_device(p.name, self._definitions(p))

    def _definitions(self, pipeline: AssetPipeline) -> tuple[MetricDef, ...]:
        # The signal order of the errors in a Score: the bundle's, as alert messages use it.
        return device_definitions(pipeline.policy.signals.names, self.cfg.score_deadband)

    def _send(self, msg: Outgoing | None) -> None:
        if msg is None:
            return
        if self._queue.qsize() >= QUEUE_LIMIT:
            self.dropped += self._queue.qsize() + 1
            self._rebirth("DDATA queue full")  # `msg`'s values are in the births
            return
        self._queue.put_nowait(msg)

    def _rebirth(self, why: str) -> None:
        if not self.session.online:
            return  # the births of the next connection carry it
        log.info("sparkplug: rebirth (%s)", why)
        # Queued DDATA carry seqs of before the births: dropped, the births hold their values.
        while not self._queue.empty():
            self._queue.get_nowait()
        for msg in self.session.births():
            self._queue.put_nowait(msg)

    # -- connection -------------------------------------------------------------------------

    def _make_client(self, will: Outgoing) -> aiomqtt.Client:
        v5 = self.mqtt.protocol == "5"
        properties = None
        if v5:
            # Sparkplug 3.0: a clean start and no session kept (session expiry 0).
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0
        return aiomqtt.Client(
            self.mqtt.host,
            self.mqtt.port,
            identifier=self.client_id,
            username=self.mqtt.username,
            password=self._password,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(will.topic, will.payload, qos=1, retain=False),
            keepalive=self.mqtt.keepalive_s,
            timeout=PUBLISH_TIMEOUT_S,
            clean_session=None if v5 else True,
            clean_start=True,
            properties=properties,
            tls_context=tls_context(self.mqtt.tls, self._base_dir),
            queue_type=inbox(self._command_overflow),
            max_queued_incoming_messages=COMMAND_INBOX,
        )

    def _command_overflow(self) -> None:
        self.commands_dropped += 1
        self._errors.log(
            logging.WARNING, "commands",
            "sparkplug: commands arrive faster than they are handled; dropped the oldest "
            "(%d so far)", self.commands_dropped,
        )  # fmt: skip

    async def run(self) -> None:
        """Connect, births, then DDATA and commands; reconnect forever with backoff, each time
        with a new bdSeq (taken, and persisted, before the connection is attempted)."""
        backoff = Backoff.from_config(self.mqtt.backoff)
        while True:
            will = self.session.connecting(self.bd_seq.next())
            try:
                async with self._make_client(will) as client:
                    self._client = client
                    self.connects += 1
                    backoff.reset()
                    self._errors.reset("connect")
                    log.info(
                        "sparkplug: edge node %s/%s connected (bdSeq %d)",
                        self.topics.group, self.topics.edge_node, self.session.bd_seq,
                    )  # fmt: skip
                    for sub in self.topics.subscriptions:
                        await client.subscribe(sub, qos=1)
                    while not self._queue.empty():  # seqs of the previous connection
                        self._queue.get_nowait()
                    for msg in self.session.births():
                        self._queue.put_nowait(msg)
                    self.connected.set()
                    await self._serve(client)
            except (aiomqtt.MqttError, ssl.SSLError, OSError) as exc:
                self._errors.log(
                    logging.WARNING, "connect",
                    "sparkplug: broker %s:%d unavailable: %s (retrying with backoff)",
                    self.mqtt.host, self.mqtt.port, exc,
                )  # fmt: skip
            finally:
                self._client = None
                self.connected.clear()
                self.session.disconnected()
            await asyncio.sleep(backoff.next_delay())

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Publish what is queued and take commands until the connection drops (MqttError)."""

        async def commands() -> None:
            async for msg in client.messages:
                p = msg.payload
                raw = bytes(p) if isinstance(p, bytes | bytearray) else b""
                if self.session.command(str(msg.topic), raw) is Command.REBIRTH:
                    self._rebirth("Node Control/Rebirth")

        watcher = asyncio.create_task(commands(), name="sparkplug-commands")
        get: asyncio.Task[Outgoing] | None = None
        try:
            while True:
                get = asyncio.create_task(self._queue.get())
                done, _ = await asyncio.wait({get, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if watcher in done:
                    watcher.result()  # raises the MqttError that ended the connection
                    raise aiomqtt.MqttError("connection closed")
                msg = get.result()
                get = None
                await client.publish(msg.topic, msg.payload, qos=msg.qos)
        finally:
            if get is not None:  # not left waiting on the queue (it would take a message)
                get.cancel()
            watcher.cancel()
            await asyncio.wait([watcher])
            if not watcher.cancelled():
                watcher.exception()

    async def close(self, wait_s: float = 2.0) -> None:
        """Before a clean stop: the NDEATH (a clean disconnect does not fire the will)."""
        self._closed = True
        client = self._client
        if client is None or self.session.bd_seq is None:
            return
        death = self.session.death()
        try:
            await client.publish(death.topic, death.payload, qos=1, timeout=wait_s)
        except aiomqtt.MqttError as exc:
            log.warning("sparkplug: could not publish NDEATH: %s", exc)


def _ms(ts: float) -> int:
    # Data times are judged against the gateway clock upstream; still, a metric timestamp is an
    # unsigned 64-bit integer, so nothing non-finite or negative reaches the encoder.
    return round(ts * 1000) if math.isfinite(ts) and ts > 0 else 0
