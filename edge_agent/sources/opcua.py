"""OPC UA source (asyncua client): subscriptions with monitored items, or polling.

A session task owns the connection: it connects (security policy None or Basic256Sha256 with
Sign/SignAndEncrypt, anonymous or username/password), resolves the configured node ids (an
unknown or bad node is reported naming its signal and read as bad, the others carry on), then
either subscribes (sampling interval, queue size, absolute/percent deadband) or reads all nodes
every interval, keeping the latest reading of every point. When the connection is lost all points
turn bad and the task reconnects with capped, jittered backoff, creating the session and the
subscription anew, so a server restart needs nobody's help.

`batches()` emits a snapshot of the latest readings on an absolute schedule in both modes: with a
deadband the server stays silent while a value holds, which must not look like a stale signal.
Each reading keeps the server's source timestamp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError

from edge_agent.backoff import Backoff
from edge_agent.config import OpcUaSource as OpcUaConfig
from edge_agent.logs import RateLimitedLog
from edge_agent.profiles import OpcUaProfile
from edge_agent.sources.base import SourceStartupError, TaskOwner, read_password_file
from edge_agent.sources.opcua_values import to_reading
from edge_agent.types import Batch, Quality, Reading

log = logging.getLogger(__name__)


@dataclass(slots=True)
class OpcUaStats:
    sessions: int = 0
    notifications: int = 0
    reads: int = 0
    bad_nodes: int = 0
    connection_losses: int = 0
    connected: bool = False


class _SessionLost(Exception):
    """The server went away or ended our subscription; reconnect."""


class OpcUaSource(TaskOwner):
    def __init__(self, cfg: OpcUaConfig, profile: OpcUaProfile, points: Sequence[str]) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.profile = profile
        self.points = list(dict.fromkeys(points))
        self.stats = OpcUaStats()
        self._latest: dict[str, Reading] = {
            p: Reading(p, math.nan, Quality.BAD) for p in self.points
        }
        self._bad_nodes: dict[str, str] = {}  # point → why
        self._task: asyncio.Task[None] | None = None
        self._errors = RateLimitedLog(log)
        self._backoff = Backoff(cfg.backoff.initial_s, cfg.backoff.max_s, cfg.backoff.jitter)
        self._lost = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        log.info(
            "source %s: opcua %s, %d node(s), mode %s",
            self.name,
            self.cfg.endpoint,
            len(self.points),
            self.cfg.mode,
        )
        if self.cfg.strict:
            client = await self._connect()
            try:
                await self._resolve(client)
            finally:
                with contextlib.suppress(Exception):
                    await client.disconnect()
            if self._bad_nodes:
                raise SourceStartupError(
                    f"source {self.name}: "
                    + "; ".join(f"signal {p!r}: {why}" for p, why in self._bad_nodes.items())
                )
        self._task = asyncio.create_task(self._session_loop(), name=f"opcua-session:{self.name}")
        return self

    # -- session -----------------------------------------------------------------------------

    async def _connect(self) -> Client:
        client = Client(self.cfg.endpoint, timeout=self.cfg.timeout_s, watchdog_intervall=1.0)
        sec = self.cfg.security
        if sec.policy == "Basic256Sha256":
            assert sec.certificate is not None and sec.private_key is not None
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                certificate=str(sec.certificate),
                private_key=str(sec.private_key),
                server_certificate=str(sec.server_certificate) if sec.server_certificate else None,
                mode=getattr(ua.MessageSecurityMode, sec.mode),
            )
        if self.cfg.username is not None:
            client.set_user(self.cfg.username)
            password = read_password_file(self.cfg.password_file)
            if password is not None:
                client.set_password(password)

        async def lost(exc: Exception) -> None:
            self._lost.set()

        client.connection_lost_callback = lost
        self._lost.clear()
        await asyncio.wait_for(client.connect(), self.cfg.timeout_s * 2)
        return client

    async def _resolve(self, client: Client) -> list[tuple[str, Any]]:
        """The (point, node) pairs that exist on the server; the others are reported bad."""
        self._bad_nodes.clear()
        candidates: list[tuple[str, Any]] = []
        for p in self.points:
            node_id = self.profile.node(p).node_id
            try:
                candidates.append((p, client.get_node(ua.NodeId.from_string(node_id))))
            except (ValueError, UaError) as exc:
                self._bad_nodes[p] = f"node id {node_id!r} is malformed ({exc})"
        if candidates:
            results = await client.read_attributes(
                [n for _, n in candidates], AttributeIds.NodeClass
            )
            for (p, _), dv in zip(candidates, results, strict=True):
                sc = dv.StatusCode
                if sc is not None and not sc.is_good():
                    self._bad_nodes[p] = f"node {self.profile.node(p).node_id} unusable ({sc.name})"
        for p, why in self._bad_nodes.items():
            self._latest[p] = Reading(p, math.nan, Quality.BAD)
            self._errors.log(
                logging.ERROR, f"node:{p}", "source %s: signal %r: %s", self.name, p, why
            )
        self.stats.bad_nodes = len(self._bad_nodes)
        return [(p, n) for p, n in candidates if p not in self._bad_nodes]

    def _mark_all_bad(self) -> None:
        for p, r in self._latest.items():
            self._latest[p] = Reading(p, r.value, Quality.BAD, r.source_ts)

    async def _session_loop(self) -> None:
        while True:
            client: Client | None = None
            try:
                client = await self._connect()
                self.stats.sessions += 1
                self.stats.connected = True
                self._backoff.reset()
                self._errors.reset("session")
                log.info("source %s: session open on %s", self.name, self.cfg.endpoint)
                nodes = await self._resolve(client)
                if self.cfg.mode == "subscribe":
                    await self._subscribe(client, nodes)
                else:
                    await self._poll(client, nodes)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the session: report, back off, reconnect
                self._errors.log(
                    logging.WARNING,
                    "session",
                    "source %s: %s: %s (reconnecting with backoff)",
                    self.name,
                    self.cfg.endpoint,
                    str(exc) or type(exc).__name__,
                )
            finally:
                if self.stats.connected:
                    self.stats.connection_losses += 1
                self.stats.connected = False
                self._mark_all_bad()
                if client is not None:
                    # Best effort: the server may be gone already.
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(client.disconnect(), 2.0)
            await asyncio.sleep(self._backoff.next_delay())

    def _filter(self) -> ua.DataChangeFilter | None:
        db = self.cfg.deadband
        if db is None:
            return None
        f = ua.DataChangeFilter()
        f.Trigger = ua.DataChangeTrigger.StatusValue
        f.DeadbandType = 1 if db.type == "absolute" else 2
        f.DeadbandValue = db.value
        return f

    def _item_request(self, handle: int, node: Any) -> ua.MonitoredItemCreateRequest:
        params = ua.MonitoringParameters()
        params.ClientHandle = handle
        params.SamplingInterval = ua.Double(self.cfg.sampling_interval_ms)
        params.QueueSize = ua.UInt32(self.cfg.queue_size)
        params.DiscardOldest = True
        if (f := self._filter()) is not None:
            params.Filter = f
        item = ua.MonitoredItemCreateRequest()
        item.ItemToMonitor = ua.ReadValueId()
        item.ItemToMonitor.NodeId = node.nodeid
        item.ItemToMonitor.AttributeId = ua.UInt32(AttributeIds.Value)
        item.MonitoringMode = ua.MonitoringMode.Reporting
        item.RequestedParameters = params
        return item

    async def _subscribe(self, client: Client, nodes: list[tuple[str, Any]]) -> None:
        by_nodeid = {n.nodeid: p for p, n in nodes}
        sub = await client.create_subscription(self.cfg.publishing_interval_ms, None)
        requests = [self._item_request(handle, n) for handle, (_, n) in enumerate(nodes, 1)]
        results = await sub.create_monitored_items(requests) if requests else []
        for (p, _), res in zip(nodes, results, strict=True):
            if isinstance(res, ua.StatusCode):
                # e.g. a percent deadband on a node without EURange: report, keep the others.
                self._errors.log(
                    logging.ERROR,
                    f"item:{p}",
                    "source %s: signal %r: cannot monitor %s (%s)",
                    self.name,
                    p,
                    self.profile.node(p).node_id,
                    res.name,
                )
                self._latest[p] = Reading(p, math.nan, Quality.BAD)
        while True:
            if self._lost.is_set():
                raise _SessionLost("connection lost")
            ev = await sub.next_event(timeout=0.5)
            if ev is None:
                continue
            if isinstance(ev, DataChangeEvent):
                point = by_nodeid.get(ev.node.nodeid)
                if point is not None:
                    self.stats.notifications += 1
                    self._latest[point] = self._reading(point, ev.data.monitored_item.Value)
            elif isinstance(ev, StatusChangeEvent):
                raise _SessionLost(f"subscription status {ev.notification.Status}")

    @staticmethod
    def _reading(point: str, dv: ua.DataValue) -> Reading:
        value = dv.Value.Value if dv.Value is not None else None
        status = dv.StatusCode.value if dv.StatusCode is not None else 0
        return to_reading(point, value, status, dv.SourceTimestamp)

    async def _poll(self, client: Client, nodes: list[tuple[str, Any]]) -> None:
        interval = self.cfg.poll_interval_s
        while True:
            if self._lost.is_set():
                raise _SessionLost("connection lost")
            started = time.monotonic()
            values = await asyncio.wait_for(
                client.read_attributes([n for _, n in nodes]), self.cfg.timeout_s
            )
            self.stats.reads += 1
            for (p, _), dv in zip(nodes, values, strict=True):
                self._latest[p] = self._reading(p, dv)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    # -- output ------------------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[Batch]:
        interval = self.cfg.poll_interval_s
        t0 = time.time()
        k = 0
        while True:
            ts = t0 + k * interval
            delay = ts - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            yield Batch(self.name, ts, tuple(self._latest[p] for p in self.points))
            k = max(k + 1, math.ceil((time.time() - t0) / interval))
