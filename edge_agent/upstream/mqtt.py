"""MQTT publisher: drains the persistent outbox to the broker at QoS 1, a message leaving the
outbox only after its PUBACK; a retained status (birth) message and a last will; MQTT 5 or 3.1.1,
TLS, username/password, persistent session; reconnects with capped, jittered backoff.

`submit*` methods are the non-blocking entry points for the rest of the agent: they write one row
to the outbox and wake the drain loop. A message the broker refuses (MQTT 5 PUBACK reason code
>= 0x80) or that keeps failing is moved to the dead letters, counted and reported as an event, so
one bad message never wedges the queue.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.alerts.messages import (
    EventType,
    Topics,
    encode,
    event_payload,
    status_payload,
    telemetry_payload,
)
from edge_agent.backoff import Backoff
from edge_agent.config import IdentityConfig, MqttConfig, TelemetryConfig
from edge_agent.config import OutboxConfig as OutboxConfig
from edge_agent.logs import RateLimitedLog
from edge_agent.mqtt_inbox import inbox
from edge_agent.upstream.outbox import (
    AlertChange,
    Kind,
    Limits,
    Message,
    Outbox,
    Problem,
    ProblemKind,
    SideAlertChange,
    Stored,
)
from edge_agent.upstream.tls import tls_context

log = logging.getLogger(__name__)

IN_FLIGHT = 128  # publishes awaiting PUBACK at once (32: ~1.5k msg/s, 128: ~3k msg/s on loopback)
HOUSEKEEPING_S = 30.0
PUBLISH_TIMEOUT_S = 10.0
# Fleet commands received and not yet handled; a flood beyond it drops the oldest, counted.
COMMAND_INBOX = 1000
# PUBACK reason codes that mean "not now" rather than "never": the message is retried.
_TRANSIENT = {0x89, 0x97}  # server busy, quota exceeded
# The event each outbox problem is reported as, and its severity.
_PROBLEM_EVENTS: dict[ProblemKind, tuple[EventType, str]] = {
    ProblemKind.WRITE_FAILED: (EventType.OUTBOX_ERROR, "error"),
    ProblemKind.CORRUPT_REPLACED: (EventType.OUTBOX_ERROR, "error"),
    ProblemKind.WRITE_RECOVERED: (EventType.OUTBOX_RECOVERED, "info"),
    ProblemKind.DEAD_LETTER: (EventType.PUBLISH_REJECTED, "error"),
    ProblemKind.DROPPED: (EventType.OUTBOX_DROPPED, "warning"),
}


@dataclass(frozen=True, slots=True)
class _Report:
    """A system event about the outbox, waiting to be queued in it."""

    type: EventType
    text: str
    severity: str
    details: dict[str, Any] | None


@dataclass(slots=True)
class PublisherStats:
    published: int = 0
    rejected: int = 0
    connects: int = 0
    connect_failures: int = 0
    connected: bool = False
    bad_payloads: int = 0
    commands_dropped: int = 0  # received faster than handled: the oldest dropped (mqtt_inbox)
    last_error: str = field(default="")


class _AckingClient(aiomqtt.Client):
    """aiomqtt.Client whose publish returns the PUBACK reason code (aiomqtt discards it, but an
    MQTT 5 broker uses it to refuse a publish, e.g. for an ACL denial)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acks: dict[int, int] = {}
        # aiomqtt warns above 10 pending publishes; we keep IN_FLIGHT on purpose.
        self.pending_calls_threshold = IN_FLIGHT + 1

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        self._acks[mid] = int(getattr(reason_code, "value", 0) or 0)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_acked(
        self, topic: str, payload: bytes, qos: int, retain: bool, wait_s: float
    ) -> int:
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        try:
            if not info.is_published():
                confirmation = asyncio.Event()
                with self._pending_call(info.mid, confirmation, self._pending_publishes):
                    await self._wait_for(confirmation.wait(), timeout=wait_s)
            return self._acks.pop(info.mid, 0)
        finally:
            self._acks.pop(info.mid, None)


class _ConnectionLost(Exception):
    pass


class MqttPublisher:
    def __init__(
        self,
        cfg: MqttConfig,
        identity: IdentityConfig,
        agent_version: str,
        models: dict[str, str],
        password: str | None = None,
        outbox: OutboxConfig | None = None,
        telemetry: TelemetryConfig | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.identity = identity
        self.topics = Topics(cfg.topic_prefix, identity.site, identity.gateway)
        self.client_id = cfg.client_id or f"edge-agent-{identity.site}-{identity.gateway}"
        self.stats = PublisherStats()
        self._version = agent_version
        self._models = models
        # Assets running unsigned bundles (bundles.allow_unsigned), named in the status message.
        self.unsigned_models: Callable[[], list[str]] = list
        self._password = password
        self._base_dir = base_dir or Path.cwd()
        ocfg = outbox or OutboxConfig()
        odir = ocfg.dir if ocfg.dir.is_absolute() else self._base_dir / ocfg.dir
        self.outbox = Outbox(
            odir,
            Limits(
                max_messages=ocfg.max_messages,
                max_bytes=ocfg.max_bytes,
                max_age_s=ocfg.max_age_s,
                max_attempts=ocfg.max_attempts,
                max_message_bytes=ocfg.max_message_bytes,
                synchronous=ocfg.synchronous,
            ),
            on_problem=self._outbox_problem,
        )
        self._opened = False
        self._telemetry = telemetry or TelemetryConfig()
        self._telemetry_last: dict[str, float] = {}
        self._wakeup = asyncio.Event()
        # Set while the drain loop has found the outbox empty; cleared by every submit.
        self._drained = asyncio.Event()
        self._client: _AckingClient | None = None
        self._errors = RateLimitedLog(log)
        self._housekept = time.monotonic()
        # Outbox problems become events, but never from inside the outbox call that reported
        # them (the outbox is mid-operation there): they wait here until that call returns and
        # `_send_outbox_reports` queues them. Set while it does, so the reports that queueing a
        # report may cause are sent by the same loop instead of a nested one.
        self._outbox_reports: list[_Report] = []
        self._sending_reports = False
        self.connected = asyncio.Event()
        # Fleet commands (edge_agent/fleet): topics subscribed at QoS 1 on every connect, within
        # this client's persistent session so the broker keeps what arrives while we are away;
        # each message received is handed to `on_message` (which must not block).
        self.subscriptions: tuple[str, ...] = ()
        self.on_message: Callable[[str, bytes], None] | None = None

    # -- entry points for the agent (non-blocking) ----------------------------------------------

    def open(self) -> None:
        """Open the outbox (idempotent). Raises OSError if its directory cannot be created."""
        if not self._opened:
            self.outbox.open()
            self._opened = True
            if self.outbox.stats.queued:
                log.info("outbox holds %d message(s) from before", self.outbox.stats.queued)
            self._send_outbox_reports()  # e.g. a corrupt file replaced on opening

    def submit(
        self,
        topic: str,
        payload: bytes,
        qos: int | None = None,
        kind: Kind = Kind.ALERT,
        alert_change: AlertChange | SideAlertChange | None = None,
    ) -> None:
        """Queue a message durably; returns at once (one small SQLite insert)."""
        self.open()
        qos = self.cfg.qos if qos is None else qos
        self.outbox.put(Message(topic, payload, qos, kind, alert_change=alert_change))
        self._drained.clear()
        self._wakeup.set()
        self._send_outbox_reports()

    def submit_alert(
        self, asset: str, body: dict[str, Any], change: AlertChange | SideAlertChange | None = None
    ) -> None:
        """Queue an alert message; `change` (what it does to the asset's open alert) is stored
        with it in one transaction, so a restart knows which alerts consumers hold open."""
        self._submit_body(self.topics.alert(asset), body, Kind.ALERT, alert_change=change)

    def submit_event(
        self,
        type_: EventType,
        message: str,
        severity: str = "warning",
        subject: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Publish a system event (edge-agent/event/1) on `{prefix}/{site}/{gateway}/events`."""
        body = event_payload(
            type_,
            severity,
            message,
            self.identity.site,
            self.identity.gateway,
            time.time(),
            subject=subject,
            details=details,
        )
        self._submit_body(self.topics.events, body, Kind.EVENT)

    def submit_status(self) -> None:
        """Publish the retained `online` status again through the outbox, e.g. after a model
        changed, so the fleet's retained status shows the model each gateway runs."""
        topic, payload = self._status("online")
        self.open()
        self.outbox.put(Message(topic, payload, 1, Kind.EVENT, retain=True))
        self._drained.clear()
        self._wakeup.set()
        self._send_outbox_reports()

    def submit_telemetry(
        self, asset: str, ts: float, score: float, threshold: float, model: str
    ) -> None:
        """Optional QoS 0 score telemetry, at most one per asset per `interval_s` of data time."""
        if not self._telemetry.enabled:
            return
        last = self._telemetry_last.get(asset)
        if last is not None and ts - last < self._telemetry.interval_s:
            return
        self._telemetry_last[asset] = ts
        body = telemetry_payload(
            self.identity.site, self.identity.gateway, asset, ts, score, threshold, model
        )
        self._submit_body(self.topics.telemetry(asset), body, Kind.TELEMETRY, qos=0)

    def submit_energy(self, asset: str, body: dict[str, Any]) -> None:
        """An `energy/1` interval report, at the configured QoS (1). Metering, not an alert: it
        is dropped before alerts (with the system events) if the outbox overflows."""
        self._submit_body(self.topics.energy(asset), body, Kind.EVENT)

    def _submit_body(
        self,
        topic: str,
        body: dict[str, Any],
        kind: Kind,
        qos: int | None = None,
        alert_change: AlertChange | SideAlertChange | None = None,
    ) -> None:
        try:
            payload = encode(body)
        except (TypeError, ValueError) as exc:
            # NaN or a non-JSON value: the message cannot be sent; say so instead of crashing.
            self.stats.bad_payloads += 1
            log.error("cannot serialize message for %s: %s", topic, exc)
            if kind is not Kind.EVENT:  # an event about an unsendable event could loop
                self.submit_event(
                    EventType.PUBLISH_REJECTED,
                    f"message for {topic} not serializable: {exc}",
                    "error",
                    topic,
                )
            return
        self.submit(topic, payload, qos, kind, alert_change)

    def _outbox_problem(self, problem: Problem) -> None:
        """The outbox's problem hook: note the event; `_send_outbox_reports` queues it."""
        if problem.kind is ProblemKind.DEAD_LETTER and problem.message_kind is Kind.EVENT:
            return  # a refused event must not produce another event (it could loop forever)
        type_, severity = _PROBLEM_EVENTS[problem.kind]
        details = (
            {"dropped": dict(self.outbox.stats.dropped)}
            if problem.kind is ProblemKind.DROPPED
            else None
        )
        self._outbox_reports.append(_Report(type_, problem.text, severity, details))

    def _send_outbox_reports(self) -> None:
        """Queue the events about outbox problems reported so far; called after each outbox
        call of the publisher has returned. Terminates: problems are reported once per
        episode, drops evict down to 95 % of the bound, and a dead-lettered event is never
        reported."""
        if self._sending_reports:
            return
        self._sending_reports = True
        try:
            while self._outbox_reports:
                r = self._outbox_reports.pop(0)
                self.submit_event(r.type, r.text, r.severity, None, r.details)
        finally:
            self._sending_reports = False

    # -- connection ---------------------------------------------------------------------------

    def _status(self, state: str) -> tuple[str, bytes]:
        body = status_payload(
            state,
            self.identity.site,
            self.identity.gateway,
            self._version,
            self._models,
            time.time(),
            unsigned_models=self.unsigned_models(),
        )
        return self.topics.status, encode(body)

    def _make_client(self) -> _AckingClient:
        topic, payload = self._status("offline")
        v5 = self.cfg.protocol == "5"
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.cfg.session_expiry_s
        return _AckingClient(
            self.cfg.host,
            self.cfg.port,
            identifier=self.client_id,
            username=self.cfg.username,
            password=self._password,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(topic, payload, qos=1, retain=True),
            keepalive=self.cfg.keepalive_s,
            timeout=PUBLISH_TIMEOUT_S,
            # Persistent session: the broker keeps our state (and in-flight ids) across drops.
            clean_session=None if v5 else False,
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,  # v5 only, else default
            properties=properties,
            tls_context=tls_context(self.cfg.tls, self._base_dir),
            max_inflight_messages=IN_FLIGHT,
            queue_type=inbox(self._command_overflow),
            max_queued_incoming_messages=COMMAND_INBOX,
        )

    def _command_overflow(self) -> None:
        self.stats.commands_dropped += 1
        self._errors.log(
            logging.WARNING,
            "commands",
            "commands arrive faster than they are handled; dropped the oldest (%d so far)",
            self.stats.commands_dropped,
        )

    async def run(self) -> None:
        """Connect, publish birth, drain the outbox; reconnect forever with backoff."""
        self.open()
        backoff = Backoff.from_config(self.cfg.backoff)
        try:
            while True:
                try:
                    async with self._make_client() as client:
                        self._client = client
                        self._on_connected()
                        backoff.reset()
                        topic, payload = self._status("online")
                        await client.publish(topic, payload, qos=1, retain=True)
                        for sub in self.subscriptions:
                            await client.subscribe(sub, qos=1)
                        self.connected.set()
                        await self._drain(client)
                except (aiomqtt.MqttError, _ConnectionLost, ssl.SSLError, OSError) as exc:
                    self._on_connect_failed(exc)
                finally:
                    self._client = None
                    self.stats.connected = False
                    self.connected.clear()
                self._housekeep(force=False)
                await asyncio.sleep(backoff.next_delay())
        finally:
            self.outbox.close()
            self._opened = False

    def _on_connected(self) -> None:
        self.stats.connects += 1
        self.stats.connected = True
        self._errors.reset("connect")
        log.info(
            "connected to MQTT broker %s:%d (MQTT %s%s)",
            self.cfg.host,
            self.cfg.port,
            self.cfg.protocol,
            ", TLS" if self.cfg.tls else "",
        )

    def _on_connect_failed(self, exc: BaseException) -> None:
        self.stats.connect_failures += 1
        self.stats.last_error = str(exc)
        if isinstance(exc, MqttConnectError):
            # Refused by the broker: most often credentials or ACL. Never log the password.
            self._errors.log(
                logging.ERROR,
                "connect",
                "MQTT broker %s:%d refused the connection: %s; check upstream.mqtt.username "
                "and the password source (retrying with backoff)",
                self.cfg.host,
                self.cfg.port,
                exc,
            )
            return
        self._errors.log(
            logging.WARNING,
            "connect",
            "MQTT broker %s:%d unavailable: %s (retrying with backoff)",
            self.cfg.host,
            self.cfg.port,
            exc,
        )

    def _housekeep(self, force: bool) -> None:
        now = time.monotonic()
        if force or now - self._housekept >= HOUSEKEEPING_S:
            self._housekept = now
            self.outbox.expire()
            self.outbox.retry_spill()
            self._send_outbox_reports()

    # -- draining -----------------------------------------------------------------------------

    async def _drain(self, client: _AckingClient) -> None:
        # Iterating `messages` raises MqttError when the connection drops, even while idle.
        async def watch() -> None:
            async for msg in client.messages:
                if self.on_message is not None:
                    p = msg.payload
                    data = bytes(p) if isinstance(p, bytes | bytearray) else str(p).encode()
                    self.on_message(str(msg.topic), data)

        watcher = asyncio.create_task(watch(), name="mqtt-connection-watch")
        try:
            while True:
                self._housekeep(force=False)
                self._wakeup.clear()  # before peeking, so a submit in between is not missed
                batch = self.outbox.peek(IN_FLIGHT)
                if batch:
                    await self._publish_batch(client, batch, watcher)
                    continue
                self._drained.set()
                wake = asyncio.create_task(self._wakeup.wait())
                try:
                    done, _ = await asyncio.wait(
                        {wake, watcher}, timeout=HOUSEKEEPING_S, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    wake.cancel()
                if watcher in done:
                    watcher.result()  # raises MqttError
                    raise _ConnectionLost("connection closed")
        finally:
            watcher.cancel()
            # wait() neither raises the watcher's outcome nor hides our own cancellation.
            await asyncio.wait([watcher])
            if not watcher.cancelled():
                watcher.exception()  # retrieved: the drop it saw is handled by our caller

    async def _publish_batch(
        self, client: _AckingClient, batch: Sequence[Stored], watcher: asyncio.Task[None]
    ) -> None:
        async def one(s: Stored) -> int:
            m = s.message
            return await client.publish_acked(
                m.topic, m.payload, m.qos, m.retain, wait_s=PUBLISH_TIMEOUT_S
            )

        tasks = [asyncio.ensure_future(one(s)) for s in batch]
        try:
            all_done = asyncio.gather(*tasks, return_exceptions=True)
            race: set[asyncio.Future[Any]] = {all_done, watcher}
            await asyncio.wait(race, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            # Let cancelled publishes finish so their outcome can be read below.
            await asyncio.wait(tasks)
        acked: list[int] = []
        lost = False
        for s, t in zip(batch, tasks, strict=True):
            if t.cancelled():
                lost = True
                continue
            exc = t.exception()
            if exc is None:
                code = t.result()
                if code < 0x80:
                    acked.append(s.id)
                elif code in _TRANSIENT:
                    self.outbox.fail(s, f"PUBACK reason code {code:#04x}")
                else:
                    self.stats.rejected += 1
                    self.outbox.reject(s, f"PUBACK reason code {code:#04x} from the broker")
            elif isinstance(exc, ValueError | TypeError):
                # paho refuses it outright (e.g. a topic with wildcards, payload too large).
                self.stats.rejected += 1
                self.outbox.reject(s, f"refused by the MQTT client: {exc}")
            elif isinstance(exc, aiomqtt.MqttCodeError) and exc.rc == paho.MQTT_ERR_NO_CONN:
                lost = True
            elif isinstance(exc, aiomqtt.MqttError) and "timed out" in str(exc):
                # aiomqtt's timeout error carries no code, only this text.
                self.outbox.fail(s, "no PUBACK within the timeout")
            else:
                lost = True
        # Acknowledged messages leave the outbox in one transaction.
        self.outbox.ack(acked)
        self.stats.published += len(acked)
        self._send_outbox_reports()  # dead letters (refused, failed too often)
        if lost or watcher.done():
            raise _ConnectionLost("connection lost while publishing")

    async def flush(self, wait_s: float) -> bool:
        """Wait (at most `wait_s`) until everything queued so far is acknowledged, so alerts
        raised just before a stop reach subscribers now rather than after the next start.
        Without a connection it returns at once: the outbox keeps them either way."""
        if not self.connected.is_set():
            return False
        try:
            await asyncio.wait_for(self._drained.wait(), wait_s)
        except TimeoutError:
            log.warning("stopping with %d message(s) still in the outbox", self.outbox.stats.queued)
            return False
        return True

    async def close(self, wait_s: float = 2.0) -> None:
        """Publish the retained offline status (a clean disconnect does not fire the will)."""
        client = self._client
        if client is None:
            return
        topic, payload = self._status("offline")
        try:
            await client.publish(topic, payload, qos=1, retain=True, timeout=wait_s)
        except aiomqtt.MqttError as exc:
            log.warning("could not publish offline status: %s", exc)
