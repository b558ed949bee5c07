"""The operator's side: `edge-agent fleet deploy | rollback | status`. Finds the gateways from
their retained status messages, publishes signed commands (and a bundle's chunks), follows the
answers on the events topics with a deadline and prints a table of gateways with their model
version and state. A deploy goes to `--canary N` gateways first and to the rest only if every
canary loaded the new model.

Building the messages is pure (`build_command`, `build_deploy`); `Operator` does the I/O."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import json
import ssl
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.fleet.archive import pack_bundle
from edge_agent.fleet.commands import (
    Action,
    Command,
    Target,
    command_topics,
    make_command,
    sign_command,
    split_chunks,
)
from edge_agent.inference.bundle import read_manifest

DEFAULT_CHUNK_BYTES = 64 * 1024
# Retained status messages arrive right after subscribing; discovery ends this long after the
# last one (bounded by DISCOVERY_MAX_S in all).
DISCOVERY_QUIET_S = 0.5
DISCOVERY_MAX_S = 5.0

# Per gateway and command: the answer that ends it, good or bad.
OK_EVENTS = {"deploy": "model_loaded", "rollback": "rolled_back", "config": "config_applied"}
FAILED_EVENTS = {"command_rejected", "model_rejected", "config_rejected"}


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes


def build_command(
    action: Action,
    args: dict[str, Any],
    target: Target,
    roots: Iterable[str],
    key: Ed25519PrivateKey,
    now: float,
    lifetime_s: float,
) -> tuple[Command, list[Outgoing]]:
    """A signed command, to be published under each of `roots` (a gateway's or the fleet's
    `.../cmd`)."""
    cmd = make_command(action, args, target, now, lifetime_s)
    raw = sign_command(cmd, key)
    return cmd, [Outgoing(f"{root}/{action}", raw) for root in roots]


def build_deploy(
    archive: bytes,
    asset: str,
    model_version: str,
    target: Target,
    roots: Iterable[str],
    key: Ed25519PrivateKey,
    now: float,
    lifetime_s: float,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[Command, list[Outgoing]]:
    """The deploy command and then the archive's chunks, per root, in the order to publish."""
    chunks = split_chunks(archive, chunk_bytes)
    args = {
        "asset": asset,
        "sha256": hashlib.sha256(archive).hexdigest(),
        "bytes": len(archive),
        "chunks": len(chunks),
        "chunk_bytes": chunk_bytes,
        "model_version": model_version,
    }
    roots = list(roots)
    cmd, out = build_command("deploy", args, target, roots, key, now, lifetime_s)
    msgs: list[Outgoing] = []
    for root, command in zip(roots, out, strict=True):
        msgs.append(command)
        msgs += [Outgoing(f"{root}/chunk/{cmd.id}/{i}", c) for i, c in enumerate(chunks)]
    return cmd, msgs


@dataclass
class GatewayState:
    site: str
    gateway: str
    online: bool = False
    models: dict[str, str] = field(default_factory=dict)
    state: str = "-"
    reason: str = ""
    done: bool = False
    ok: bool = False

    @property
    def name(self) -> str:
        return f"{self.site}/{self.gateway}"


@dataclass
class BrokerOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "edge"
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None


class Operator:
    def __init__(
        self, broker: BrokerOptions, key: Ed25519PrivateKey, out: TextIO = sys.stdout
    ) -> None:
        self.broker = broker
        self.key = key
        self.out = out
        self.gateways: dict[str, GatewayState] = {}
        self._client: aiomqtt.Client | None = None
        self._changed = asyncio.Event()
        self._last_status = 0.0
        self._pending: dict[str, set[str]] = {}  # command id → gateways that have not ended it
        self._action: dict[str, str] = {}
        # Bytes published (commands and chunks), for the bench.
        self.bytes_published = 0

    # -- connection ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connected(self) -> Any:
        b = self.broker
        tls = ssl.create_default_context(cafile=str(b.ca_file)) if b.ca_file else None
        async with aiomqtt.Client(
            b.host, b.port, identifier=f"edge-agent-fleet-{uuid.uuid4().hex[:12]}",
            username=b.username, password=b.password, tls_context=tls,
            protocol=aiomqtt.ProtocolVersion.V5, timeout=30,
        ) as client:  # fmt: skip
            self._client = client
            p = b.prefix.rstrip("/")
            # Events first: an answer must not come before we listen.
            await client.subscribe(f"{p}/+/+/events", qos=1)
            await client.subscribe(f"{p}/+/+/status", qos=1)
            reader = asyncio.create_task(self._read(client))
            try:
                yield self
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                self._client = None

    async def _read(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            try:
                body = json.loads(bytes(msg.payload) if isinstance(msg.payload, bytes) else b"")
            except ValueError:
                continue
            if not isinstance(body, dict):
                continue
            # By schema, not topic: `{prefix}/fleet/cmd/status` matches `+/+/status` too.
            schema = body.get("schema")
            if schema == "edge-agent/status/1":
                self._on_status(body)
            elif schema == "edge-agent/event/1":
                self._on_event(body)
            self._changed.set()

    def _state(self, site: str, gateway: str) -> GatewayState:
        name = f"{site}/{gateway}"
        if name not in self.gateways:
            self.gateways[name] = GatewayState(site, gateway)
        return self.gateways[name]

    def _on_status(self, body: dict[str, Any]) -> None:
        site, gw = body.get("site"), body.get("gateway")
        if not (isinstance(site, str) and isinstance(gw, str)):
            return
        g = self._state(site, gw)
        g.online = body.get("state") == "online"
        models = body.get("models")
        if isinstance(models, dict):
            g.models = {str(k): str(v) for k, v in models.items()}
        self._last_status = time.monotonic()

    def _on_event(self, body: dict[str, Any]) -> None:
        details = body.get("details") or {}
        cid = details.get("command_id") if isinstance(details, dict) else None
        site, gw = body.get("site"), body.get("gateway")
        if cid not in self._pending or not (isinstance(site, str) and isinstance(gw, str)):
            return
        g = self._state(site, gw)
        if g.name not in self._pending[cid]:
            return
        kind = str(body.get("type"))
        action = self._action[cid]
        if kind == "model_loaded" and isinstance(details.get("model_version"), str):
            g.models[str(body.get("subject", ""))] = details["model_version"]
        if kind == "command_accepted" and isinstance(details.get("models"), dict):
            g.models = {str(k): str(v) for k, v in details["models"].items()}
        if kind in FAILED_EVENTS:
            g.state, g.reason, g.done, g.ok = "failed", str(details.get("reason", "")), True, False
        elif kind == OK_EVENTS.get(action) or (action == "status" and kind == "command_accepted"):
            g.state, g.reason, g.done, g.ok = "done", "", True, True
        else:
            g.state = {"command_accepted": "accepted", "bundle_staged": "staged"}.get(kind, kind)
        if g.done:
            self._pending[cid].discard(g.name)

    async def discover(self, site: str, gateways: str) -> list[GatewayState]:
        """The gateways whose retained status matches the patterns, online or not, sorted."""
        started = time.monotonic()
        while (now := time.monotonic()) - started < DISCOVERY_MAX_S:
            quiet_since = max(self._last_status, started)
            if now - quiet_since >= DISCOVERY_QUIET_S:
                break
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), DISCOVERY_QUIET_S)
        return sorted(
            (
                g
                for g in self.gateways.values()
                if fnmatch.fnmatchcase(g.site, site) and fnmatch.fnmatchcase(g.gateway, gateways)
            ),
            key=lambda g: (g.site, g.gateway),
        )

    async def publish(self, msgs: list[Outgoing]) -> None:
        assert self._client is not None
        for m in msgs:
            await self._client.publish(m.topic, m.payload, qos=1)
            self.bytes_published += len(m.payload)

    def roots(self, phase: list[GatewayState]) -> list[str]:
        """A gateway's own topics for a few, the fleet's topic (one publish) for more."""
        if len(phase) <= 4:
            return [command_topics(self.broker.prefix, g.site, g.gateway)[0] for g in phase]
        return [command_topics(self.broker.prefix, "", "")[1]]

    async def run_phase(
        self, cmd: Command, msgs: list[Outgoing], phase: list[GatewayState], deadline: float
    ) -> None:
        """Publish and wait until every gateway of the phase answered or the deadline."""
        self._pending[cmd.id] = {g.name for g in phase}
        self._action[cmd.id] = cmd.action
        for g in phase:
            g.state, g.reason, g.done, g.ok = "sent", "", False, False
        await self.publish(msgs)
        while self._pending[cmd.id] and (left := deadline - time.monotonic()) > 0:
            self.progress(phase)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
        for g in phase:
            if not g.done:
                g.state = "no answer" if g.online else "no answer (offline)"
                g.reason = g.reason or "deadline passed"
        self.progress(phase, final=True)

    def progress(self, phase: list[GatewayState], final: bool = False) -> None:
        if not sys.stderr.isatty():
            return
        done = sum(g.done for g in phase)
        failed = sum(g.done and not g.ok for g in phase)
        width = 30
        bar = "#" * (width * done // max(len(phase), 1))
        end = "\n" if final else ""
        print(
            f"\r[{bar:<{width}}] {done}/{len(phase)} answered, {failed} failed",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    def table(self, gateways: list[GatewayState], asset: str | None = None) -> None:
        rows = [("GATEWAY", "MODEL", "STATE", "REASON")]
        for g in gateways:
            model = (
                g.models.get(asset, "-")
                if asset
                else ", ".join(f"{a}={v}" for a, v in sorted(g.models.items())) or "-"
            )
            rows.append((g.name, model, g.state, g.reason[:100]))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            print(
                "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3],
                file=self.out,
            )


async def fleet_command(
    op: Operator,
    action: Action,
    site: str,
    gateways: str,
    timeout_s: float,
    lifetime_s: float,
    args: dict[str, Any] | None = None,
    bundle: Path | None = None,
    canary: int = 0,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> int:
    """Run one fleet command to the end; 0 when every gateway answered success, 1 otherwise,
    2 when no gateway matches."""
    args = args or {}
    async with op.connected():
        found = await op.discover(site, gateways)
        if not found:
            print(f"edge-agent fleet: no gateway matches {site}/{gateways}", file=sys.stderr)
            return 2
        phases = [found[:canary], found[canary:]] if 0 < canary < len(found) else [found]
        archive = pack_bundle(bundle) if bundle is not None else b""
        version = ""
        if bundle is not None:
            version = str(read_manifest(bundle)["model_version"])
        deadline = time.monotonic() + timeout_s
        for i, phase in enumerate(phases):
            target = Target(gateways=[g.name for g in phase])
            now = time.time()
            if action == "deploy":
                cmd, msgs = build_deploy(
                    archive, args["asset"], version, target, op.roots(phase), op.key, now,
                    lifetime_s, chunk_bytes,
                )  # fmt: skip
            else:
                cmd, msgs = build_command(
                    action, args, target, op.roots(phase), op.key, now, lifetime_s
                )
            what = "canary" if len(phases) == 2 and i == 0 else "rest" if i else "all"
            print(
                f"{action} {cmd.id}: sent to {len(phase)} gateway(s) ({what})",
                file=sys.stderr,
                flush=True,
            )
            await op.run_phase(cmd, msgs, phase, deadline)
            if not all(g.ok for g in phase):
                for later in phases[i + 1 :]:
                    for g in later:
                        g.state, g.reason = "not sent", "a canary failed"
                break
        op.table(found, args.get("asset"))
        return 0 if all(g.ok for g in found) else 1
