"""The gateway's side of fleet commands (issue 15 item 1), in process: messages handed to the
FleetAgent as the MQTT client would, answers read from the events the agent reports. Every bad
input is refused with its reason and leaves the running model, the bundle folder and the config
file as they were."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.agent import Agent, build_pipelines
from edge_agent.config import load_config
from edge_agent.fleet.archive import pack_bundle
from edge_agent.fleet.commands import Target, command_topics
from edge_agent.fleet.operator import build_command, build_deploy
from edge_agent.inference.bundle import (
    MANIFEST,
    Bundle,
    load_private_key,
    read_manifest,
    sign_bundle,
    write_key_pair,
    write_manifest,
)
from tests.conftest import agent_config, sign, signing_keys, tamper_threshold

SITE, GW = "test-site", "gw-1"
OWN, FLEET = command_topics("edge", SITE, GW)


def variant(src: Path, dest: Path, version: str, **edit: Any) -> Path:
    """A copy of a bundle with another model version (and manifest edits), signed."""
    shutil.copytree(src, dest)
    m = read_manifest(dest)
    m["model_version"] = version
    m.update(edit)
    write_manifest(dest, m)
    return sign(dest)


class Harness:
    def __init__(self, tmp_path: Path, trained: Bundle) -> None:
        self.bundle_dir = Path(shutil.copytree(trained.directory, tmp_path / "bundles" / "pump-1"))
        self.v1 = Bundle.load(self.bundle_dir).manifest.model_version
        path = agent_config(
            tmp_path / "agent.yaml", sim_port=1502, broker_port=1883, bundle=self.bundle_dir
        )
        data = yaml.safe_load(path.read_text())
        data["fleet"] = {"enabled": True, "chunk_timeout_s": 0.3}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        self.config_path = path
        cfg = load_config(path)
        self.agent = Agent(cfg, build_pipelines(cfg))
        assert self.agent.fleet is not None
        self.fleet = self.agent.fleet
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.agent.report_event = self._record  # type: ignore[method-assign]
        self.key = load_private_key(signing_keys()[0])
        self.tmp = tmp_path

    def _record(
        self, t: str, m: str, sev: str = "warning", subj: str | None = None, det: Any = None
    ) -> None:
        self.events.append((str(t), m, det or {}))

    def kinds(self, cid: str | None = None) -> list[str]:
        return [t for t, _, d in self.events if cid is None or d.get("command_id") == cid]

    def detail(self, kind: str, key: str) -> Any:
        return next(d[key] for t, _, d in self.events if t == kind)

    @property
    def running(self) -> str:
        return self.agent.pipelines[0].model_version

    def deliver(self, msgs: list[Any]) -> None:
        for m in msgs:
            self.fleet.handle(m.topic, m.payload)

    def deploy(self, bundle: Path, target: Target | None = None, root: str = OWN) -> Any:
        cmd, msgs = build_deploy(
            pack_bundle(bundle), "pump-1", "x", target or Target(), [root], self.key,
            time.time(), 600, chunk_bytes=8 * 1024,
        )  # fmt: skip
        return cmd, msgs

    def close(self) -> None:
        self.agent.publisher.outbox.close()


@pytest.fixture
def h(tmp_path: Path, trained_bundle: Bundle) -> Any:
    harness = Harness(tmp_path, trained_bundle)
    yield harness
    harness.close()


def test_deploy_then_rollback_then_a_replay(h: Harness) -> None:
    v2 = variant(h.bundle_dir, h.tmp / "v2", "v2-test")
    cmd, msgs = h.deploy(v2)
    assert len(msgs) > 3  # the command and several chunks
    h.deliver(msgs)
    assert h.kinds(cmd.id) == ["command_accepted", "bundle_staged", "model_loaded"]
    assert h.detail("model_loaded", "model_version") == "v2-test" == h.running
    # The configured folder now holds v2; v1 is kept for a rollback; no staging left behind.
    assert Bundle.load(h.bundle_dir).manifest.model_version == "v2-test"
    assert Bundle.load(h.fleet.dir / "previous" / "pump-1").manifest.model_version == h.v1
    assert not any((h.fleet.dir / "staging").iterdir())
    assert not [p for p in h.bundle_dir.parent.iterdir() if p.name.startswith(".")]

    # The very same deploy again (a replay, e.g. by someone who recorded it): refused.
    h.events.clear()
    h.deliver(msgs[:1])
    assert h.kinds() == ["command_rejected"]
    assert "replayed" in h.detail("command_rejected", "reason")

    h.events.clear()
    rb, out = build_command(
        "rollback", {"asset": "pump-1"}, Target(), [FLEET], h.key, time.time(), 600
    )
    h.deliver(out)
    assert h.kinds(rb.id) == ["command_accepted", "model_loaded", "rolled_back"]
    assert h.running == h.v1 and Bundle.load(h.bundle_dir).manifest.model_version == h.v1
    # A second rollback undoes the first.
    rb2, out = build_command(
        "rollback", {"asset": "pump-1"}, Target(), [FLEET], h.key, time.time(), 600
    )
    h.deliver(out)
    assert "rolled_back" in h.kinds(rb2.id) and h.running == "v2-test"


def assert_untouched(h: Harness, before: bytes) -> None:
    assert h.running == h.v1
    assert (h.bundle_dir / MANIFEST).read_bytes() == before
    assert not (h.fleet.dir / "previous").exists()


@pytest.mark.parametrize(
    "spoil",
    ["digest", "out_of_order", "other_signals", "unknown_key", "tampered"],
)
def test_bad_bundles_are_refused_with_the_reason_and_nothing_changes(
    h: Harness, spoil: str
) -> None:
    before = (h.bundle_dir / MANIFEST).read_bytes()
    expected = {
        "digest": "digest mismatch",
        "out_of_order": "arrived before chunk",
        "other_signals": "signals do not match",
        "unknown_key": "signed by unknown key",
        "tampered": "invalid signature",
    }[spoil]
    if spoil == "other_signals":
        m = read_manifest(h.bundle_dir)
        bundle = variant(h.bundle_dir, h.tmp / "b", "v-other", signals=m["signals"][::-1])
    else:
        bundle = variant(h.bundle_dir, h.tmp / "b", "v-bad")
    if spoil == "unknown_key":
        other, _ = write_key_pair(h.tmp / "keys", "rogue")
        sign_bundle(bundle, load_private_key(other))
    if spoil == "tampered":
        tamper_threshold(bundle, 1e9)
    cmd, msgs = h.deploy(bundle)
    if spoil == "digest":
        msgs[1] = type(msgs[1])(msgs[1].topic, b"\0" * len(msgs[1].payload))
    if spoil == "out_of_order":
        msgs[1], msgs[2] = msgs[2], msgs[1]
    h.deliver(msgs)
    kinds = h.kinds(cmd.id)
    assert kinds[0] == "command_accepted" and kinds[-1] == "model_rejected", kinds
    assert "model_loaded" not in kinds
    assert expected in h.detail("model_rejected", "reason")
    assert h.detail("model_rejected", "kept_model_version") == h.v1
    assert_untouched(h, before)


async def test_a_missing_chunk_times_out_and_is_refused(h: Harness) -> None:
    before = (h.bundle_dir / MANIFEST).read_bytes()
    cmd, msgs = h.deploy(variant(h.bundle_dir, h.tmp / "v2", "v2"))
    for m in msgs[:-1]:  # the last chunk never comes
        h.fleet.offer(m.topic, m.payload)
    answered = asyncio.Event()
    record = h.agent.report_event

    def recorded(*args: Any) -> None:
        record(*args)
        answered.set()

    h.agent.report_event = recorded  # type: ignore[method-assign]
    task = asyncio.create_task(h.fleet.run())
    try:
        async with asyncio.timeout(10):
            while "model_rejected" not in h.kinds(cmd.id):
                answered.clear()
                await answered.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "missing chunk" in h.detail("model_rejected", "reason")
    assert_untouched(h, before)


def test_commands_not_for_this_gateway(h: Harness) -> None:
    other = Target(gateways=["test-site/gw-2"])
    _, msgs = build_command("status", {}, other, [FLEET], h.key, time.time(), 600)
    h.deliver(msgs)
    assert h.kinds() == []  # fleet-wide, for another gateway: silence
    _, msgs = build_command("status", {}, other, [OWN], h.key, time.time(), 600)
    h.deliver(msgs)
    assert h.kinds() == ["command_rejected"]
    assert "not addressed" in h.detail("command_rejected", "reason")


def test_status_rollback_without_previous_and_unknown_asset(h: Harness) -> None:
    st, msgs = build_command("status", {}, Target(), [OWN], h.key, time.time(), 600)
    h.deliver(msgs)
    assert h.kinds(st.id) == ["command_accepted"]
    assert h.detail("command_accepted", "models") == {"pump-1": h.v1}
    h.events.clear()
    for args, reason in (({"asset": "pump-1"}, "no previous bundle"), ({"asset": "x"}, "unknown")):
        _, msgs = build_command("rollback", args, Target(), [OWN], h.key, time.time(), 600)
        h.deliver(msgs)
        assert reason in h.events[-1][2]["reason"]
    assert h.kinds() == ["command_rejected", "command_rejected"]


def test_unsigned_and_expired_commands_are_reported(h: Harness) -> None:
    h.fleet.handle(f"{OWN}/status", b'{"action": "status"}')
    assert h.kinds() == ["command_rejected"] and "malformed" in h.events[-1][2]["reason"]
    _, msgs = build_command("status", {}, Target(), [OWN], h.key, time.time() - 7200, 600)
    h.deliver(msgs)
    assert "expired" in h.events[-1][2]["reason"]


def test_config_push_applied_or_rejected_whole(h: Harness) -> None:
    original = h.config_path.read_text()
    data = yaml.safe_load(original)

    def push(doc: Any) -> str:
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
        cmd, msgs = build_command(
            "config", {"yaml": text}, Target(), [OWN], h.key, time.time(), 600
        )
        h.deliver(msgs)
        return cmd.id

    # Invalid: the errors come back, the file is untouched, no temporary file is left.
    cid = push({**data, "assets": [{**data["assets"][0], "sample_period_s": -1}]})
    assert h.kinds(cid) == ["command_accepted", "config_rejected"]
    assert any("sample_period_s" in e for e in h.detail("config_rejected", "errors"))
    assert h.config_path.read_text() == original
    assert not [p for p in h.config_path.parent.iterdir() if p.name.endswith(".tmp")]
    # Needs a restart (identity): rejected whole rather than half applied.
    h.events.clear()
    cid = push({**data, "identity": {"site": SITE, "gateway": "gw-renamed"}})
    assert h.kinds(cid) == ["command_accepted", "config_rejected"]
    assert "identity" in h.detail("config_rejected", "reason")
    assert h.config_path.read_text() == original
    # Not YAML at all.
    h.events.clear()
    cid = push("{[")
    assert h.kinds(cid) == ["command_accepted", "config_rejected"]
    # Valid and live-applicable (log level): written and reloaded.
    h.events.clear()
    level = logging.getLogger().level
    try:
        cid = push({**data, "logging": {"level": "DEBUG"}})
        assert logging.getLogger().level == logging.DEBUG
    finally:
        logging.getLogger().setLevel(level)
    assert h.kinds(cid)[-1] == "config_applied", h.events
    assert yaml.safe_load(h.config_path.read_text())["logging"]["level"] == "DEBUG"
