"""OPC UA source (asyncua client): subscriptions with monitored items, or polling.

A session task owns the connection: it connects (security policy None or Basic256Sha256 with
Sign/SignAndEncrypt, anonymous or username/password), resolves the configured node ids (an
unknown or bad node is reported naming its signal and read as bad, the others carry on), then
either subscribes (sampling interval, queue size, absolute/percent deadband) or reads all nodes
every interval, keeping the latest reading of every point. When the connection is lost all points
turn bad and the task reconnects with capped, jittered backoff, creating the session and the
subscription anew, so a server restart needs nobody's help.

Security (Basic256Sha256): the session announces the application URI of the client certificate
(strict servers refuse any other); the server's certificate is checked against the pinned file or
the trust folder before the secure channel is opened, and an untrusted one is refused. A refused
session (untrusted server, or the server refusing our certificate, URI or user) is explained
once per minute in the log, counted as `refused_<kind>` and becomes the source's offline reason,
which the agent sends with `source_offline`.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError
from cryptography.hazmat.primitives import serialization

from edge_agent.backoff import Backoff
from edge_agent.config_base import SourceConfigBase, resolve_path
from edge_agent.logs import RateLimitedLog
from edge_agent.sources.base import (
    BuildContext,
    SourceStartupError,
    TaskOwner,
    poll_instants,
    read_password_file,
)
from edge_agent.sources.opcua.certs import (
    client_identity,
    first_certificate,
    load_certificate,
    thumbprint,
)
from edge_agent.sources.opcua.config import OpcUaConfig
from edge_agent.sources.opcua.profile import OpcUaProfile
from edge_agent.sources.opcua.refusals import Context, Refusal, classify
from edge_agent.sources.opcua.trust import ServerTrust
from edge_agent.sources.opcua.values import to_reading
from edge_agent.sources.profile_base import ProfileBase
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
    # Sessions refused, by kind (untrusted server, client certificate, URI, user...).
    refusals: dict[str, int] = field(default_factory=dict)
    # Why the source is offline when a refusal says so (sent with `source_offline`); else None.
    offline_reason: str | None = None


class _SessionLost(Exception):
    """The server went away or ended our subscription; reconnect."""


class _Refused(Exception):
    """The agent itself refused the server (untrusted certificate, no matching endpoint)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class _PhasedClient(Client):
    """asyncua's client, remembering which step of the connect sequence it is in: a server that
    just closes the connection says why only through the step it closed it in. The discovery
    of endpoints (an unsecured channel of its own) stays the `endpoints` step throughout."""

    phase = "socket"

    def _step(self, phase: str) -> None:
        if self.phase != "endpoints":
            self.phase = phase

    async def send_hello(self) -> None:
        self._step("hello")
        await super().send_hello()

    async def open_secure_channel(self, renew: bool = False) -> None:
        if not renew:
            self._step("secure_channel")
        await super().open_secure_channel(renew)

    async def create_session(self) -> ua.CreateSessionResult:
        self._step("create_session")
        return await super().create_session()

    async def activate_session(
        self,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> ua.ActivateSessionResult:
        self._step("activate_session")
        return await super().activate_session(username, password, certificate)


class OpcUaSource(TaskOwner):
    def __init__(
        self,
        cfg: OpcUaConfig,
        profile: OpcUaProfile,
        points: Sequence[str],
        base_dir: Path | None = None,
    ) -> None:
        """`base_dir`: the config file's folder, which relative certificate and password file
        paths start from."""
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
        self._backoff = Backoff.from_config(cfg.backoff)
        self._lost = asyncio.Event()
        # Set once the first connect attempt has ended, so the first batch already tells
        # whether (and why not) the source is connected.
        self._first_attempt = asyncio.Event()
        base = base_dir or Path.cwd()
        sec = cfg.security
        self._secure = sec.policy != "None"
        self._certificate = resolve_path(base, sec.certificate) if sec.certificate else None
        self._private_key = resolve_path(base, sec.private_key) if sec.private_key else None
        self._password_file = resolve_path(base, cfg.password_file) if cfg.password_file else None
        # The URI and name announced in CreateSession: the certificate's unless configured
        # (`validate` has checked that they agree).
        self.identity = client_identity(
            self._certificate, self._private_key, sec.application_uri, sec.application_name
        )
        self._trust = ServerTrust(sec, base)
        self._context = Context(
            endpoint=cfg.endpoint,
            application_uri=self.identity.application_uri,
            secure=self._secure,
            certificate=str(self._certificate) if self._certificate else None,
            thumbprint=thumbprint(load_certificate(self._certificate))
            if self._certificate
            else None,
            username=cfg.username,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        log.info(
            "source %s: opcua %s, %d node(s), mode %s",
            self.name,
            self.cfg.endpoint,
            len(self.points),
            self.cfg.mode,
        )
        if self._secure:
            log.info(
                "source %s: %s %s as %s, certificate %s (thumbprint %s)",
                self.name,
                self.cfg.security.policy,
                self.cfg.security.mode,
                self.identity.application_uri,
                self._certificate,
                self._context.thumbprint,
            )
        if self._trust.accept_any and self._secure:
            log.warning(
                "source %s: INSECURE: accept_any_server_certificate is set: any server "
                "certificate is accepted, so whoever sits between the gateway and %s can read "
                "and change the data; pin it (server_certificate) or use trust_dir",
                self.name,
                self.cfg.endpoint,
            )
        if self.cfg.strict:
            client = self._client()
            try:
                await self._connect(client)
            except Exception as exc:
                refusal = self._refusal(exc, client)
                if refusal is None:
                    raise
                raise SourceStartupError(f"source {self.name}: {refusal.message}") from None
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

    async def _connect(self, client: _PhasedClient) -> None:
        sec = self.cfg.security
        if sec.policy == "Basic256Sha256":
            assert self._certificate is not None and self._private_key is not None
            server_cert = await self._trusted_server_certificate(client)
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                certificate=str(self._certificate),
                private_key=str(self._private_key),
                server_certificate=server_cert,
                mode=getattr(ua.MessageSecurityMode, sec.mode),
            )
        if self.cfg.username is not None:
            client.set_user(self.cfg.username)
            password = read_password_file(self._password_file)
            if password is not None:
                client.set_password(password)

        async def lost(exc: Exception) -> None:
            self._lost.set()

        client.connection_lost_callback = lost
        self._lost.clear()
        client.phase = "socket"
        await asyncio.wait_for(client.connect(), self.cfg.timeout_s * 2)

    def _client(self) -> _PhasedClient:
        client = _PhasedClient(
            self.cfg.endpoint, timeout=self.cfg.timeout_s, watchdog_intervall=1.0
        )
        # Never asyncua's default URI: strict servers compare it with the certificate's.
        client.application_uri = self.identity.application_uri
        client.name = client.description = self.identity.application_name
        return client

    async def _trusted_server_certificate(self, client: _PhasedClient) -> bytes:
        """The certificate the server's endpoint for our policy and mode offers (asked over an
        unsecured discovery channel), if we trust it; else the session is refused."""
        sec = self.cfg.security
        client.phase = "endpoints"
        endpoints = await asyncio.wait_for(
            client.connect_and_get_server_endpoints(), self.cfg.timeout_s * 2
        )
        mode = getattr(ua.MessageSecurityMode, sec.mode)
        wanted = SecurityPolicyBasic256Sha256.URI
        ep = next(
            (e for e in endpoints if e.SecurityMode == mode and e.SecurityPolicyUri == wanted),
            None,
        )
        if ep is None:
            offered = sorted(
                {
                    f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]} {e.SecurityMode.name}"
                    for e in endpoints
                }
            )
            raise _Refused(
                Refusal(
                    "no_endpoint",
                    f"the server offers no endpoint with {sec.policy} {sec.mode} "
                    f"(it offers: {', '.join(offered) or 'none'}): change security.policy / "
                    "security.mode",
                )
            )
        if not ep.ServerCertificate:
            raise _Refused(
                Refusal("server_untrusted", "the server's endpoint offers no certificate")
            )
        cert = first_certificate(ep.ServerCertificate)
        why = await self._trust.refusal(cert)
        if why is not None:
            raise _Refused(Refusal("server_untrusted", f"refused: {why}"))
        der: bytes = cert.public_bytes(serialization.Encoding.DER)
        return der

    def _refusal(self, exc: BaseException, client: _PhasedClient | None) -> Refusal | None:
        if isinstance(exc, _Refused):
            return exc.refusal
        return classify(exc, client.phase if client is not None else "socket", self._context)

    def _refused(self, refusal: Refusal) -> None:
        """Count a refused session, make it the offline reason, log it at most once a minute."""
        self.stats.refusals[refusal.kind] = self.stats.refusals.get(refusal.kind, 0) + 1
        self.stats.offline_reason = refusal.message
        self._errors.log(
            logging.ERROR,
            f"refused:{refusal.kind}",
            "source %s: %s: no session: %s",
            self.name,
            self.cfg.endpoint,
            refusal.message,
        )

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
            client: _PhasedClient | None = None
            try:
                client = self._client()
                await self._connect(client)
                self.stats.sessions += 1
                self.stats.connected = True
                self.stats.offline_reason = None
                self._first_attempt.set()
                self._backoff.reset()
                self._errors.reset("session")
                for kind in self.stats.refusals:
                    self._errors.reset(f"refused:{kind}")
                log.info("source %s: session open on %s", self.name, self.cfg.endpoint)
                nodes = await self._resolve(client)
                if self.cfg.mode == "subscribe":
                    await self._subscribe(client, nodes)
                else:
                    await self._poll(client, nodes)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the session: report, back off, reconnect
                refusal = None if self.stats.connected else self._refusal(exc, client)
                if refusal is not None:
                    self._refused(refusal)
                else:
                    self.stats.offline_reason = None  # unreachable, lost: nothing more to say
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
                self._first_attempt.set()
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
        # Bounded: the first attempt ends within its timeouts anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), self.cfg.timeout_s * 5)
        async for ts in poll_instants(interval):
            self.raise_if_ended()  # the session task died: the agent's supervisor restarts us
            yield Batch(self.name, ts, tuple(self._latest[p] for p in self.points))


def build(
    cfg: SourceConfigBase, profile: ProfileBase, points: Sequence[str], ctx: BuildContext
) -> OpcUaSource:
    """The registry's factory for `type: opcua`."""
    assert isinstance(cfg, OpcUaConfig) and isinstance(profile, OpcUaProfile)
    return OpcUaSource(cfg, profile, points, base_dir=ctx.base_dir)
