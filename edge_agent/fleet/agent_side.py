"""The gateway's side of fleet commands: take signed commands from the broker, answer each step
on the events topic, deploy bundles, roll back, apply pushed configs. docs/FLEET.md has the
topic, command and event map.

Messages arrive through the publisher's MQTT client (its persistent session: the broker keeps
what is published for this gateway while it is away) and are queued here; `run` handles them
one at a time in the agent's TaskGroup, between batches like a SIGHUP reload. Every change goes
through the SIGHUP reload code (`reload_agent`), with its checks and its events; the running
model and config are left untouched by anything refused, at any step.

State folder `{upstream.outbox.dir}/fleet/`: `seen.json` (ids of commands taken), `staging/`
(bundles being verified), `previous/<asset>/` (the bundle a deploy replaced, for rollback).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_agent.alerts.messages import EventType
from edge_agent.config import (
    AssetConfig,
    ConfigError,
    FleetConfig,
    IdentityConfig,
    LoadedConfig,
    load_config,
)
from edge_agent.fleet.archive import ArchiveError, unpack_bundle
from edge_agent.fleet.commands import (
    CommandRefused,
    ConfigArgs,
    DeployArgs,
    RollbackArgs,
    Transfer,
    TransferError,
    Verified,
    command_topics,
    verify_command,
)
from edge_agent.fleet.seen import SeenFull, SeenIds
from edge_agent.inference.bundle import Bundle, BundleError
from edge_agent.inference.detector import DetectorPool
from edge_agent.pipeline import AssetPipeline
from edge_agent.reload import ReloadHost, needs_restart, reload_agent

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000


class _Tagged:
    """The agent as a reload sees it, with the command's id added to every event the reload
    publishes, so the operator can tell which command a `model_loaded` answers."""

    def __init__(self, host: ReloadHost, command_id: str) -> None:
        self._host = host
        self.command_id = command_id
        self.loaded: set[str] = set()

    @property
    def cfg(self) -> LoadedConfig:
        return self._host.cfg

    @property
    def pipelines(self) -> Sequence[AssetPipeline]:
        return self._host.pipelines

    @property
    def detectors(self) -> DetectorPool:
        return self._host.detectors

    def report_event(
        self,
        type_: EventType,
        message: str,
        severity: str = "warning",
        subject: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        tagged = {**(details or {}), "command_id": self.command_id}
        self._host.report_event(type_, message, severity, subject, tagged)

    def report_model_loaded(
        self, p: AssetPipeline, previous: str | None = None, **extra: Any
    ) -> None:
        self.loaded.add(p.name)
        self._host.report_model_loaded(
            p, previous, command_id=self.command_id, model_version=p.model_version, **extra
        )

    def replace_pipeline(self, old: AssetPipeline, new: AssetPipeline) -> None:
        self._host.replace_pipeline(old, new)


class FleetAgent:
    def __init__(
        self,
        host: ReloadHost,
        identity: IdentityConfig,
        topic_prefix: str,
        settings: FleetConfig,
        state_dir: Path,
        on_model_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.identity = identity
        self.settings = settings
        self.dir = state_dir
        self.clock = clock
        self.on_model_change = on_model_change
        self.own_root, self.fleet_root = command_topics(
            topic_prefix, identity.site, identity.gateway
        )
        self.seen = SeenIds(state_dir / "seen.json", settings.max_skew_s)
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(QUEUE_LIMIT)
        self.transfer: Transfer | None = None
        self._transfer_deadline = 0.0
        # Counters for tests and /metrics readers: commands by outcome, chunks ignored.
        self.counts: dict[str, int] = {}

    @property
    def subscriptions(self) -> tuple[str, ...]:
        return (f"{self.own_root}/#", f"{self.fleet_root}/#")

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # -- intake (called from the MQTT client's message loop: never blocks) -----------------------

    def offer(self, topic: str, payload: bytes) -> None:
        try:
            self._queue.put_nowait((topic, payload))
        except asyncio.QueueFull:
            # Only a flood does this (a deploy is a few messages); QoS 1 was already
            # acknowledged, so it is lost: a chunk lost here makes its deploy fail visibly.
            self._count("dropped")
            log.error("fleet: command queue full, message on %s dropped", topic)

    async def run(self) -> None:
        while True:
            wait: float | None = None
            if self.transfer is not None:
                wait = max(self._transfer_deadline - time.monotonic(), 0.0)
            try:
                topic, payload = await asyncio.wait_for(self._queue.get(), wait)
            except TimeoutError:
                t = self.transfer
                if t is not None:
                    self._fail_transfer(
                        f"missing chunk {t.next_index} of {t.args.chunks}: none arrived within "
                        f"{self.settings.chunk_timeout_s:g} s"
                    )
                continue
            self.handle(topic, payload)

    def handle(self, topic: str, payload: bytes) -> None:
        for root, own in ((self.own_root, True), (self.fleet_root, False)):
            if topic.startswith(root + "/"):
                rest = topic[len(root) + 1 :].split("/")
                if rest[0] == "chunk":
                    self._on_chunk(rest[1:], payload)
                else:
                    self._on_command(payload, own)
                return
        log.debug("fleet: message on %s ignored", topic)

    # -- commands ------------------------------------------------------------------------------

    def _event(
        self,
        type_: EventType,
        message: str,
        severity: str,
        command_id: str | None,
        subject: str | None = None,
        **details: Any,
    ) -> None:
        if command_id is not None:
            details["command_id"] = command_id
        self.host.report_event(type_, message, severity, subject, details)

    def _reject(self, reason: str, command_id: str | None, action: str | None = None) -> None:
        self._count("rejected")
        extra = {"action": action} if action else {}
        self._event(
            EventType.COMMAND_REJECTED,
            f"command {command_id or '(unreadable)'} refused: {reason}",
            "error",
            command_id,
            reason=reason,
            **extra,
        )

    def _current_config(self) -> LoadedConfig:
        """The config file as a reload would read it now (keys rotated by a reload or a push
        count at once); the running one if the file is unreadable."""
        try:
            return load_config(self.host.cfg.path)
        except ConfigError:
            return self.host.cfg

    def _on_command(self, payload: bytes, own_topic: bool) -> None:
        cfg = self._current_config()
        try:
            v = verify_command(
                payload, cfg.bundle_trust, self.clock(), self.seen, self.settings.max_skew_s
            )
        except CommandRefused as exc:
            self._reject(exc.reason, exc.command_id)
            return
        cmd = v.command
        if not cmd.target.matches(self.identity.site, self.identity.gateway):
            if own_topic:
                self._reject("not addressed to this gateway", cmd.id, cmd.action)
            else:
                log.debug("fleet: command %s is for other gateways", cmd.id)
            return
        problem = self._precheck(v, cfg)
        if problem is not None:
            self._reject(problem, cmd.id, cmd.action)
            return
        try:
            self.seen.add(cmd.id, cmd.expires_at, self.clock())
        except (SeenFull, OSError) as exc:
            self._reject(f"cannot remember the command id: {exc}", cmd.id, cmd.action)
            return
        self._count("accepted")
        details: dict[str, Any] = {"action": cmd.action, "key_id": v.key_id}
        if cmd.action == "status":
            details.update(self.status())
        self._event(
            EventType.COMMAND_ACCEPTED,
            f"command {cmd.id} ({cmd.action}) accepted, signed by key {v.key_id}",
            "info",
            cmd.id,
            **details,
        )
        if cmd.action == "deploy":
            self._start_transfer(cmd.id, cmd.parsed_args())
        elif cmd.action == "rollback":
            self._rollback(cmd.id, cmd.parsed_args())
        elif cmd.action == "config":
            self._push_config(cmd.id, cmd.parsed_args(), cfg)

    def _precheck(self, v: Verified, cfg: LoadedConfig) -> str | None:
        """What makes a verified command impossible here, before it is taken."""
        args = v.command.parsed_args()
        if isinstance(args, DeployArgs | RollbackArgs) and self._asset(args.asset) is None:
            known = ", ".join(p.name for p in self.host.pipelines)
            return f"unknown asset {args.asset!r} (this gateway runs {known})"
        if isinstance(args, RollbackArgs) and not self._previous(args.asset).is_dir():
            return f"no previous bundle of asset {args.asset} to roll back to"
        return None

    def _asset(self, name: str) -> AssetConfig | None:
        return next((p.asset for p in self.host.pipelines if p.name == name), None)

    def _previous(self, asset: str) -> Path:
        return self.dir / "previous" / asset

    def status(self) -> dict[str, Any]:
        previous: dict[str, str] = {}
        for p in self.host.pipelines:
            prev = self._previous(p.name)
            if prev.is_dir():
                try:
                    previous[p.name] = Bundle.load(prev).manifest.model_version
                except BundleError:
                    previous[p.name] = "(unreadable)"
        out: dict[str, Any] = {
            "models": {p.name: p.model_version for p in self.host.pipelines},
            "previous_models": previous,
        }
        if self.transfer is not None:
            t = self.transfer
            out["transfer"] = {
                "command_id": t.command_id,
                "asset": t.args.asset,
                "chunks": t.args.chunks,
                "received": t.next_index,
            }
        return out

    # -- deploy: chunks, staging, verification, activation -------------------------------------

    def _start_transfer(self, command_id: str, args: DeployArgs) -> None:
        if self.transfer is not None:
            self._fail_transfer(f"superseded by deploy command {command_id}")
        self.transfer = Transfer(command_id, args)
        self._transfer_deadline = time.monotonic() + self.settings.chunk_timeout_s

    def _on_chunk(self, where: list[str], data: bytes) -> None:
        t = self.transfer
        if len(where) != 2 or t is None or where[0] != t.command_id or not where[1].isdigit():
            self._count("chunks_ignored")  # another gateway's deploy, or one already refused
            return
        try:
            done = t.add(int(where[1]), data)
        except TransferError as exc:
            self._fail_transfer(str(exc))
            return
        self._transfer_deadline = time.monotonic() + self.settings.chunk_timeout_s
        if done:
            self.transfer = None
            self._stage_and_activate(t)

    def _fail_transfer(self, reason: str) -> None:
        t = self.transfer
        self.transfer = None
        if t is not None:
            self._model_rejected(t.command_id, t.args.asset, "transfer", reason)

    def _model_rejected(self, command_id: str, asset: str, stage: str, reason: str) -> None:
        self._count("failed")
        kept = next((p.model_version for p in self.host.pipelines if p.name == asset), None)
        self._event(
            EventType.MODEL_REJECTED,
            f"asset {asset}: deploy {command_id} refused at {stage}, keeping model {kept}: "
            f"{reason}",
            "error",
            command_id,
            asset,
            stage=stage,
            reason=reason,
            kept_model_version=kept,
        )

    def _stage_and_activate(self, t: Transfer) -> None:
        cid, name = t.command_id, t.args.asset
        staging = self.dir / "staging" / cid
        asset = self._asset(name)
        try:
            if asset is None:
                raise BundleError(f"asset {name} is no longer configured")
            shutil.rmtree(staging, ignore_errors=True)
            unpack_bundle(t.data(), staging)
            cfg = self._current_config()
            # The same checks as at start: signature, checksums, then the pipeline's own
            # (signals, sample period, window match the asset).
            bundle = Bundle.load(staging, cfg.bundle_trust)
            AssetPipeline(asset, bundle, self.host.detectors)
        except (BundleError, ArchiveError, ValueError, OSError) as exc:
            reason = str(exc).replace(f"{staging}/", "").replace(str(staging), "bundle")
            self._model_rejected(cid, name, "verify", reason)
            shutil.rmtree(staging, ignore_errors=True)
            return
        m = bundle.manifest
        self._event(
            EventType.BUNDLE_STAGED,
            f"asset {name}: bundle {m.model_version} received and verified "
            f"({bundle.describe_signature()})",
            "info",
            cid,
            name,
            model_version=m.model_version,
            bytes=t.args.bytes,
            sha256=t.args.sha256,
        )
        try:
            self._swap_in(name, staging, cid, m.model_version)
        except OSError as exc:
            # After the swap (keeping the previous bundle): the new model runs already.
            log.error("fleet: command %s: %s", cid, exc)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _swap_in(self, name: str, source: Path, cid: str, version: str) -> bool:
        """Put the bundle in `source` where the config says the asset's bundle is, reload as on
        SIGHUP, keep what it replaced as the previous bundle. If the reload does not end with
        the asset on the new bundle, the old folder goes back and nothing has changed."""
        cfg = self._current_config()
        asset = next((a for a in cfg.settings.assets if a.name == name), None)
        if asset is None:
            self._model_rejected(cid, name, "activate", "asset not in the config file")
            return False
        target = cfg.bundle_dir(asset)
        new_tmp = target.parent / f".{target.name}.fleet-new-{cid}"
        old_tmp = target.parent / f".{target.name}.fleet-old-{cid}"
        try:
            shutil.rmtree(new_tmp, ignore_errors=True)
            # Copied next to the target first, so the two renames below stay on one file
            # system (each is atomic; between them the folder is missing for microseconds).
            shutil.copytree(source, new_tmp)
            had_old = target.exists()
            if had_old:
                os.replace(target, old_tmp)
            os.replace(new_tmp, target)
        except OSError as exc:
            shutil.rmtree(new_tmp, ignore_errors=True)
            self._model_rejected(cid, name, "activate", f"cannot write {target}: {exc}")
            return False
        tagged = _Tagged(self.host, cid)
        try:
            reload_agent(tagged)
            running = next((p for p in self.host.pipelines if p.name == name), None)
            loaded = running is not None and running.bundle.manifest == Bundle.load(target).manifest
        except Exception as exc:  # the reload never raises for bad input; anything else: undo
            log.exception("fleet: reload for command %s failed", cid)
            self._model_rejected(cid, name, "activate", f"reload failed: {exc}")
            loaded = False
        if not loaded:
            # Refused by the reload (it said why, tagged with the command): put the old back.
            shutil.rmtree(target, ignore_errors=True)
            if had_old:
                os.replace(old_tmp, target)
            self._count("failed")
            return False
        if name not in tagged.loaded:
            # The asset already ran this very bundle: the reload had nothing to load.
            tagged.report_event(
                EventType.MODEL_LOADED,
                f"asset {name}: model {version} already running",
                "info",
                name,
                {"model_version": version, "unchanged": True},
            )
        prev = self._previous(name)
        shutil.rmtree(prev, ignore_errors=True)
        if had_old:
            prev.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(old_tmp, prev)
        self._count("applied")
        self.on_model_change()
        return True

    def _rollback(self, cid: str, args: RollbackArgs) -> None:
        prev = self._previous(args.asset)
        was = next((p.model_version for p in self.host.pipelines if p.name == args.asset), None)
        # The previous folder is swapped in (and so becomes the current one); what ran until
        # now becomes the previous one, so a second rollback undoes the first.
        hold = self.dir / "staging" / f"rollback-{cid}"
        try:
            shutil.rmtree(hold, ignore_errors=True)
            hold.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(prev, hold)
            version = Bundle.load(hold).manifest.model_version
            if self._swap_in(args.asset, hold, cid, version):
                self._event(
                    EventType.ROLLED_BACK,
                    f"asset {args.asset}: rolled back to model {version} (was {was})",
                    "info",
                    cid,
                    args.asset,
                    model_version=version,
                    previous_model_version=was,
                )
        except (BundleError, OSError) as exc:
            self._model_rejected(cid, args.asset, "rollback", str(exc))
        finally:
            shutil.rmtree(hold, ignore_errors=True)

    # -- config push ---------------------------------------------------------------------------

    def _config_rejected(self, cid: str, reason: str, errors: list[str] | None = None) -> None:
        self._count("failed")
        details: dict[str, Any] = {"reason": reason}
        if errors:
            details["errors"] = errors[:20]
        self._event(
            EventType.CONFIG_REJECTED,
            f"pushed config {cid} rejected, keeping the running one: {reason}",
            "error",
            cid,
            str(self.host.cfg.path),
            **details,
        )

    def _push_config(self, cid: str, args: ConfigArgs, current: LoadedConfig) -> None:
        """Validate the pushed file exactly as `edge-agent validate` does (in the config's own
        folder, so relative paths mean the same), refuse what a reload could not apply whole,
        then replace the file atomically and reload."""
        path = self.host.cfg.path
        tmp = path.parent / f".{path.name}.fleet-{cid}.tmp"
        try:
            try:
                tmp.write_text(args.yaml, encoding="utf-8")
            except OSError as exc:
                self._config_rejected(cid, f"cannot write next to {path}: {exc}")
                return
            try:
                new = load_config(tmp)
            except ConfigError as exc:
                self._config_rejected(cid, f"{len(exc.errors)} problem(s)", exc.errors)
                return
            restart = needs_restart(current.settings, new.settings)
            if restart:
                self._config_rejected(
                    cid, "changes that need a restart: " + ", ".join(restart), restart
                )
                return
            for asset in new.settings.assets:
                try:
                    bundle = Bundle.load(new.bundle_dir(asset), new.bundle_trust)
                    AssetPipeline(asset, bundle, self.host.detectors)
                except (BundleError, ValueError) as exc:
                    self._config_rejected(cid, f"asset {asset.name}: {exc}")
                    return
            try:
                os.replace(tmp, path)
            except OSError as exc:
                self._config_rejected(cid, f"cannot replace {path}: {exc}")
                return
        finally:
            tmp.unlink(missing_ok=True)
        tagged = _Tagged(self.host, cid)
        outcome = reload_agent(tagged)
        self._count("applied")
        self._event(
            EventType.CONFIG_APPLIED,
            f"pushed config {cid} applied ({outcome})",
            "info",
            cid,
            str(path),
            outcome=outcome,
        )
        if tagged.loaded:
            self.on_model_change()
