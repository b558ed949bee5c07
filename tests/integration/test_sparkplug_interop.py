"""Sparkplug B against an independent host: Eclipse Tahu's JavaScript decoder
(`sparkplug-payload`, tests/interop/sparkplug) subscribed to a real Mosquitto, a real agent process
fed by the simulated pump PLC. Checked on the decoded messages: NBIRTH, DBIRTH, DDATA in order,
one seq over them wrapping 255 → 0 and 0 on every NBIRTH; a rebirth on Tahu's NCMD; hostile NCMDs
survived; across a broker restart a new bdSeq and births from seq 0; the NDEATH will with the
bdSeq of the last NBIRTH when the agent dies; bdSeq still increasing after an agent restart."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulators.broker import Mosquitto, find_mosquitto
from simulators.process import start_modbus_sim
from tests.conftest import PROFILE, SEED, SIGNALS, SPEED, Subscriber, agent_config
from tests.integration.test_end_to_end import start_agent, stop
from tests.reliability.helpers import persistence

pytestmark = pytest.mark.integration

DECODER_DIR = Path(__file__).resolve().parents[1] / "interop" / "sparkplug"
GROUP, NODE, DEVICE = "test-site", "gw-1", "pump-1"
NODE_TOPIC = f"spBv1.0/{GROUP}/{{}}/{NODE}"
REBIRTH = {"name": "Node Control/Rebirth", "type": "Boolean", "value": True}

COMMANDS = ("NCMD", "DCMD")
Msg = dict[str, Any]


class TahuHost:
    """`node decoder.js PORT`: every Sparkplug message on the broker, decoded by Tahu, as a dict
    in a queue (in arrival order); `publish` sends a payload encoded by Tahu."""

    def __init__(self, port: int, log: Path) -> None:
        self.proc = subprocess.Popen(
            ["node", str(DECODER_DIR / "decoder.js"), str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("wb"), text=True,
        )  # fmt: skip
        self.lines: queue.Queue[Msg] = queue.Queue()
        self.seen: list[Msg] = []  # every Sparkplug message taken from the queue, in order
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_event("subscribed", 30)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def _next(self, deadline: float) -> Msg:
        left = deadline - time.monotonic()
        if left <= 0:
            raise queue.Empty
        return self.lines.get(timeout=left)

    def wait_event(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                m = self._next(deadline)
            except queue.Empty:
                raise TimeoutError(f"decoder: no {name!r} within {timeout} s") from None
            if m.get("event") == name:
                return
            if "topic" in m:
                self.seen.append(m)

    def wait_for(self, what: str, pred: Callable[[Msg], bool], timeout: float) -> Msg:
        deadline = time.monotonic() + timeout
        while True:
            try:
                m = self._next(deadline)
            except queue.Empty:
                tail = [(x["topic"], x.get("payload", {}).get("seq")) for x in self.seen[-8:]]
                raise TimeoutError(f"no {what} within {timeout} s; last: {tail}") from None
            if "topic" not in m:
                continue
            # Every message of the agent decodes (the test's own hostile NCMDs need not).
            assert "decode_error" not in m or kind(m) in COMMANDS, f"Tahu could not decode {m}"
            self.seen.append(m)
            if pred(m):
                return m

    def publish(self, topic: str, payload: Msg) -> None:
        self._send({"publish": {"topic": topic, "payload": payload}})

    def publish_raw(self, topic: str, raw: bytes) -> None:
        self._send({"publish_raw": {"topic": topic, "hex": raw.hex()}})

    def _send(self, cmd: Msg) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        self.wait_event("published", 10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def command(*metrics: Msg) -> Msg:
    """An NCMD/DCMD payload as Tahu's encoder takes it."""
    return {"timestamp": int(time.time() * 1000), "metrics": list(metrics)}


def kind(m: Msg) -> str:
    return str(m["topic"]).split("/")[2]


def metrics(m: Msg) -> dict[str, Msg]:
    return {x["name"]: x for x in m["payload"].get("metrics", [])}


def is_nbirth(bd_seq: Callable[[int], bool] = lambda b: True) -> Callable[[Msg], bool]:
    return lambda m: kind(m) == "NBIRTH" and bd_seq(metrics(m)["bdSeq"]["value"])


def check_sequence(messages: list[Msg]) -> int:
    """Every message of the node but NDEATH carries the node's seq: 0 on an NBIRTH, otherwise
    the previous one plus 1 mod 256 (nothing lost on loopback, QoS 0). Returns how many
    wrapped from 255 to 0."""
    prev: int | None = None
    wraps = 0
    for m in messages:
        if kind(m) in COMMANDS:
            continue
        if kind(m) == "NDEATH":
            assert "seq" not in m["payload"] or m["payload"]["seq"] is None, m
            continue
        seq = m["payload"]["seq"]
        assert 0 <= seq <= 255
        if kind(m) == "NBIRTH":
            assert seq == 0, m
        else:
            assert prev is not None and seq == (prev + 1) % 256, (prev, m["topic"], seq)
            wraps += prev == 255
        prev = seq
    return wraps


def sparkplug_config(tmp_path: Path, sim_port: int, broker_port: int, bundle: Path) -> Path:
    path = agent_config(
        tmp_path / "agent.yaml", sim_port=sim_port, broker_port=broker_port, bundle=bundle,
        keepalive_s=5,
    )  # fmt: skip
    cfg = yaml.safe_load(path.read_text())
    cfg["upstream"]["sparkplug"] = {"enabled": True}  # group: the site, edge node: the gateway
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that keeps sessions across a restart and queues QoS 0 messages for a subscriber
    that is away, so the host sees the births sent while it reconnects after the restart."""
    if find_mosquitto() is None:
        pytest.fail("mosquitto is required for integration tests (apt-get install mosquitto)")
    workdir = tmp_path / "broker"
    with Mosquitto(workdir, extra_config=persistence(workdir) + "queue_qos0_messages true\n") as b:
        yield b


def _decoder_missing() -> str | None:
    if shutil.which("node") is None:
        return "Node.js is not installed (bash dev.sh test installs it)"
    if not (DECODER_DIR / "node_modules" / "sparkplug-payload").is_dir():
        return f"sparkplug-payload is not installed in {DECODER_DIR} (bash dev.sh test runs npm ci)"
    return None


def test_sparkplug_session_as_seen_by_tahu(tmp_path, trained_bundle, broker):
    if (missing := _decoder_missing()) is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    sim = start_modbus_sim(PROFILE, seed=SEED, speed=SPEED, log=tmp_path / "sim.log")
    cfg = sparkplug_config(tmp_path, sim.port, broker.port, trained_bundle.directory)
    host = TahuHost(broker.port, tmp_path / "decoder.log")
    json_sub = Subscriber(broker.port)
    agent_log = tmp_path / "agent.log"
    agent = start_agent(cfg, agent_log)
    try:
        # Births: NBIRTH (bdSeq 0 on a fresh state dir, the rebirth control), then the DBIRTH.
        nbirth = host.wait_for("NBIRTH", is_nbirth(), 60)
        node = metrics(nbirth)
        assert nbirth["topic"] == NODE_TOPIC.format("NBIRTH")
        assert node["bdSeq"]["type"] == "Int64" and node["bdSeq"]["value"] == 0
        assert node["Node Control/Rebirth"] == {**node["Node Control/Rebirth"],
                                                "type": "Boolean", "value": False}  # fmt: skip
        dbirth = host.wait_for("DBIRTH", lambda m: kind(m) == "DBIRTH", 10)
        assert dbirth["topic"] == f"spBv1.0/{GROUP}/DBIRTH/{NODE}/{DEVICE}"
        types = {k: v["type"] for k, v in metrics(dbirth).items()}
        assert types == {
            "Anomaly/Score": "Double", "Anomaly/Threshold": "Double", "Alert/Active": "Boolean",
            "Alert/Condition Active": "Boolean", "Alert/Severity": "String", "Alert/Id": "String",
            "Model/Version": "String",
            **{f"Contributions/{s}": "Double" for s in SIGNALS},
        }  # fmt: skip
        # The JSON view goes on beside it (its retained status from the outbox publisher).
        json_sub.wait_for(lambda m: m.topic.endswith("/status") and m.body["state"] == "online", 30)

        # DDATA on every scored window: the seq runs past 255 and wraps to 0.
        first = host.wait_for("DDATA", lambda m: kind(m) == "DDATA", 60)
        data = metrics(first)
        assert data["Anomaly/Score"]["type"] == "Double"
        assert isinstance(data["Anomaly/Score"]["value"], float)
        assert data["Model/Version"]["value"] == trained_bundle.manifest.model_version
        shares = [data[f"Contributions/{s}"]["value"] for s in SIGNALS]
        assert sum(shares) == pytest.approx(1.0, abs=1e-3)
        host.wait_for("seq 255 → 0", lambda m: kind(m) == "DDATA" and m["payload"]["seq"] == 0,
                      120)  # fmt: skip
        assert check_sequence(host.seen) >= 1

        # Hostile commands first (garbage, a foreign metric), then Tahu's rebirth request.
        host.publish_raw(NODE_TOPIC.format("NCMD"), b"\xff\x00garbage")
        host.publish(NODE_TOPIC.format("NCMD"), command({**REBIRTH, "name": "Node Control/X"}))
        host.publish(f"spBv1.0/{GROUP}/DCMD/{NODE}/{DEVICE}", command(REBIRTH))
        mark = len(host.seen)
        host.publish(NODE_TOPIC.format("NCMD"), command(REBIRTH))
        reborn = host.wait_for("NBIRTH after NCMD", is_nbirth(), 20)
        assert metrics(reborn)["bdSeq"]["value"] == 0  # same connection, same bdSeq
        # Only the real NCMD caused a birth; the hostile ones were survived and logged.
        assert [kind(m) for m in host.seen[mark:]].count("NBIRTH") == 1
        assert [kind(m) for m in host.seen[:mark]].count("NBIRTH") == 1
        assert host.wait_for("DBIRTH", lambda m: kind(m) != "DDATA", 10)["payload"]["seq"] == 1
        host.wait_for("DDATA after rebirth", lambda m: kind(m) == "DDATA", 20)
        assert "undecodable NCMD" in agent_log.read_text()
        assert agent.poll() is None

        # Broker restart on the same port: a new connection, a new bdSeq, births from seq 0.
        broker.stop()
        broker.start()
        after = host.wait_for("NBIRTH after the restart", is_nbirth(lambda b: b != 0), 60)
        bd_seq = metrics(after)["bdSeq"]["value"]
        host.wait_for("DBIRTH", lambda m: kind(m) == "DBIRTH", 10)
        host.wait_for("DDATA", lambda m: kind(m) == "DDATA", 20)

        # The agent dies without a word: the broker publishes its will, the NDEATH with the
        # bdSeq of the NBIRTH it belongs to.
        agent.kill()
        agent.wait(10)
        death = host.wait_for("NDEATH", lambda m: kind(m) == "NDEATH", 20)
        assert death["topic"] == NODE_TOPIC.format("NDEATH")
        assert metrics(death)["bdSeq"] == {**metrics(death)["bdSeq"], "type": "Int64",
                                           "value": bd_seq}  # fmt: skip

        # A new run of the agent takes up the persisted bdSeq: the next one, not 0 again.
        agent = start_agent(cfg, agent_log)
        again = host.wait_for("NBIRTH after the agent restart", is_nbirth(lambda b: b != bd_seq),
                              60)  # fmt: skip
        assert metrics(again)["bdSeq"]["value"] == (bd_seq + 1) % 256
        host.wait_for("DDATA", lambda m: kind(m) == "DDATA", 30)
        assert check_sequence(host.seen) >= 1
    finally:
        stop(agent)
        sim.stop()
        host.close()
        json_sub.close()


FAULT_AT = 400.0  # simulated seconds of normal operation (20 s of wall time at 20x)


def test_alert_reaches_both_views_and_a_clean_stop_says_ndeath(tmp_path, trained_bundle, broker):
    """An alert goes out on the JSON topic (through the outbox) and as the device's alert state
    in a DDATA, with the same id; SIGTERM publishes the NDEATH itself (a clean disconnect does
    not fire the will)."""
    if (missing := _decoder_missing()) is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    sim = start_modbus_sim(
        PROFILE, seed=SEED, scenario="bearing_wear", at=FAULT_AT, speed=SPEED,
        log=tmp_path / "sim.log",
    )  # fmt: skip
    cfg = sparkplug_config(tmp_path, sim.port, broker.port, trained_bundle.directory)
    host = TahuHost(broker.port, tmp_path / "decoder.log")
    json_sub = Subscriber(broker.port)
    agent = start_agent(cfg, tmp_path / "agent.log")
    try:
        nbirth = host.wait_for("NBIRTH", is_nbirth(), 60)
        onset = sim.wall_time_of(FAULT_AT)
        raised = json_sub.wait_for(
            lambda m: "/alerts/" in m.topic and m.body["event"] == "raised",
            timeout=onset - time.time() + 90,
        )
        active = host.wait_for(
            "DDATA with the alert",
            lambda m: kind(m) == "DDATA" and "Alert/Active" in metrics(m),
            30,
        )
        state = {k: v["value"] for k, v in metrics(active).items()}
        assert state["Alert/Active"] is True
        assert state["Alert/Id"] == raised.body["alert_id"]
        assert state["Alert/Severity"] == raised.body["severity"]
        assert metrics(active)["Alert/Active"]["timestamp"] == pytest.approx(
            datetime.fromisoformat(str(raised.body["ts"])).timestamp() * 1000, abs=1
        )

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=10) == 0
        death = host.wait_for("NDEATH", lambda m: kind(m) == "NDEATH", 10)
        assert metrics(death)["bdSeq"]["value"] == metrics(nbirth)["bdSeq"]["value"]
        check_sequence(host.seen)  # asserts the seq rules (wrapping or not)
    finally:
        stop(agent)
        sim.stop()
        host.close()
        json_sub.close()
