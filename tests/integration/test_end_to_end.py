"""Simulated pump PLC (real pymodbus server) → edge-agent (subprocess) → real Mosquitto →
subscriber. Every received message is validated against its published JSON Schema."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest

from edge_agent.alerts.messages import SCHEMA_NAMES, load_schema
from simulators.broker import Mosquitto, free_port
from simulators.process import start_modbus_sim
from tests.conftest import PROFILE, SEED, SPEED, Subscriber, agent_config

pytestmark = pytest.mark.integration

FAULT_AT = 400.0  # simulated seconds of normal operation first (20 s of wall time at 20x)
VALIDATORS = {
    name: jsonschema.Draft202012Validator(
        load_schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for name in SCHEMA_NAMES
}


def validate(body: dict[str, object]) -> None:
    kind = str(body["schema"]).split("/")[1]
    VALIDATORS[kind].validate(body)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_bearing_wear_raises_one_alert_after_a_quiet_normal_stretch(
    tmp_path, trained_bundle, mosquitto
):
    sim = start_modbus_sim(
        PROFILE, seed=SEED, scenario="bearing_wear", at=FAULT_AT, speed=SPEED,
        log=tmp_path / "sim.log",
    )  # fmt: skip
    sub = Subscriber(mosquitto.port)
    cfg = agent_config(
        tmp_path / "agent.yaml", sim_port=sim.port, broker_port=mosquitto.port,
        bundle=trained_bundle.directory,
    )  # fmt: skip
    agent = start_agent(cfg, tmp_path / "agent.log")
    try:
        online = sub.wait_for(lambda m: m.topic.endswith("/status"), timeout=30)
        assert online.body["state"] == "online"
        assert online.topic == "edge/test-site/gw-1/status"
        assert online.body["models"] == {"pump-1": trained_bundle.manifest.model_version}

        onset = sim.wall_time_of(FAULT_AT)
        raised = sub.wait_for(
            lambda m: "/alerts/" in m.topic and m.body["event"] == "raised",
            timeout=onset - time.time() + 90,
        )
        assert raised.topic == "edge/test-site/gw-1/alerts/pump-1"
        assert raised.body["asset"] == "pump-1"
        # Nothing during the normal stretch: the first alert is about data after the onset.
        assert epoch(str(raised.body["ts"])) >= onset
        contributions = raised.body["contributions"]
        assert isinstance(contributions, list) and contributions
        # The explanation names signals that bearing wear really moves (vibration, friction heat,
        # current), not only bystanders.
        signals = {c["signal"] for c in contributions}
        moved = {"vibration_de", "vibration_nde", "motor_temperature", "motor_current"}
        assert signals & moved, raised.body["message"]

        # SIGTERM: offline status published, process gone within 5 s.
        t0 = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 5
        offline = sub.wait_for(lambda m: m.topic.endswith("/status"), timeout=5)
        assert offline.body["state"] == "offline"
    finally:
        stop(agent)
        sim.stop()
        sub.close()
    for m in sub.all:
        validate(m.body)
    alerts = [m for m in sub.all if "/alerts/" in m.topic]
    assert [m.body["event"] for m in alerts][:1] == ["raised"]
    assert all(epoch(str(m.body["ts"])) >= onset for m in alerts)


def test_agent_polls_without_broker_and_connects_when_it_appears(tmp_path, trained_bundle):
    sim = start_modbus_sim(PROFILE, seed=SEED, speed=SPEED, log=tmp_path / "sim.log")
    port = free_port()
    cfg = agent_config(
        tmp_path / "agent.yaml", sim_port=sim.port, broker_port=port,
        bundle=trained_bundle.directory,
    )  # fmt: skip
    log = tmp_path / "agent.log"
    agent = start_agent(cfg, log)
    try:
        deadline = time.monotonic() + 30
        while "unavailable" not in log.read_text() and time.monotonic() < deadline:
            assert agent.poll() is None, log.read_text()
            time.sleep(0.1)
        assert "unavailable" in log.read_text()
        assert agent.poll() is None
        with Mosquitto(tmp_path / "broker", port=port) as broker:
            sub = Subscriber(broker.port)
            try:
                m = sub.wait_for(lambda m: m.topic.endswith("/status"), timeout=30)
                assert m.body["state"] == "online"
                validate(m.body)
            finally:
                sub.close()
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(timeout=5) == 0
    finally:
        stop(agent)
        sim.stop()
    text = log.read_text()
    assert "Traceback" not in text
    # Rate-limited: one warning for the outage, not one per retry.
    assert text.count("unavailable") <= 2


def test_last_will_announces_offline_when_the_agent_dies(tmp_path, trained_bundle, mosquitto):
    sim = start_modbus_sim(PROFILE, seed=SEED, speed=SPEED, log=tmp_path / "sim.log")
    cfg = agent_config(
        tmp_path / "agent.yaml", sim_port=sim.port, broker_port=mosquitto.port,
        bundle=trained_bundle.directory, keepalive_s=5,
    )  # fmt: skip
    sub = Subscriber(mosquitto.port)
    agent = start_agent(cfg, tmp_path / "agent.log")
    try:
        assert sub.wait_for(lambda m: m.topic.endswith("/status"), 30).body["state"] == "online"
        agent.kill()  # no clean disconnect: the broker must publish the will
        agent.wait(5)
        will = sub.wait_for(lambda m: m.topic.endswith("/status"), timeout=15)
        assert will.body["state"] == "offline"
        validate(will.body)
    finally:
        stop(agent)
        sim.stop()
        sub.close()
