"""(b) The real agent (subprocess) raises an alert while the broker is down, is SIGKILLed, and
restarted: the alert it had queued is delivered once the broker is back. Nothing is lost.

Pump simulator (real pymodbus server, cavitation injected early) → edge-agent → SQLite outbox →
real Mosquitto (persistence on, so the consumer's session survives the outage) → consumer."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from simulators.broker import Mosquitto, free_port
from simulators.process import start_modbus_sim
from tests.conftest import PROFILE, SEED, SPEED, agent_config
from tests.reliability.helpers import DedupSubscriber, persistence, validate

pytestmark = pytest.mark.integration
FAULT_AT = 60.0  # simulated seconds (3 s of wall time at 20x)


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_for(what: str, check: Callable[[], object], timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {timeout} s")


def queued_alert_ids(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        try:
            rows = con.execute(
                "SELECT payload FROM outbox WHERE topic LIKE '%/alerts/%'"
            ).fetchall()
        except sqlite3.OperationalError:  # the file exists, its table not yet: nothing queued
            return []
    return [json.loads(p)["alert_id"] for (p,) in rows]


def test_alert_queued_before_sigkill_is_delivered_after_restart(tmp_path, trained_bundle):
    port = free_port()
    workdir = tmp_path / "broker"
    broker = Mosquitto(workdir, port=port, extra_config=persistence(workdir))
    broker.start()
    sub = DedupSubscriber(port)  # its persistent session is kept by the broker over the outage
    broker.stop()

    sim = start_modbus_sim(
        PROFILE, seed=SEED, scenario="cavitation", at=FAULT_AT, speed=SPEED,
        log=tmp_path / "sim.log",
    )  # fmt: skip
    cfg = agent_config(
        tmp_path / "agent.yaml", sim_port=sim.port, broker_port=port,
        bundle=trained_bundle.directory,
    )  # fmt: skip
    db = tmp_path / "state" / "outbox.db"
    log = tmp_path / "agent.log"
    first = start_agent(cfg, log)
    second = None
    try:
        ids = wait_for("an alert queued in the outbox", lambda: queued_alert_ids(db), 60)
        assert isinstance(ids, list)
        before_kill = ids[0]
        first.kill()  # SIGKILL: no clean shutdown, nothing flushed on the way out
        first.wait(10)

        second = start_agent(cfg, log)
        wait_for("restart", lambda: "outbox holds" in log.read_text(), 30)
        assert before_kill in queued_alert_ids(db)

        broker.start()
        sub.wait_until(lambda s: any(b["alert_id"] == before_kill for b in s.unique_alerts()), 30)
        wait_for("the outbox to empty", lambda: not queued_alert_ids(db), 15)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        sim.stop()
        sub.close()
        broker.stop()
    raised = [b for b in sub.unique_alerts() if b["alert_id"] == before_kill]
    assert [b["event"] for b in raised] == ["raised"]
    for _, body in sub.received:
        validate(body)
    events = {b["type"] for t, b in sub.received if t.endswith("/events")}
    assert {"model_loaded", "source_online"} <= events
    assert "Traceback" not in log.read_text()


def test_an_open_alert_continues_across_sigkills_and_clears_once_its_fault_is_gone(
    tmp_path, trained_bundle
):
    """Issue 12, item 4: SIGKILL while an alert is open, restart with the fault still there (the
    alert continues under its id, no second one), SIGKILL again, restart with the fault gone (the
    same id is cleared, saying so). Real simulator, agent processes and Mosquitto."""
    import yaml

    port = free_port()
    broker = Mosquitto(tmp_path / "broker", port=port)
    broker.start()
    sub = DedupSubscriber(port, client_id="held-open")
    sim = start_modbus_sim(
        PROFILE, seed=SEED, scenario="cavitation", at=FAULT_AT, speed=SPEED,
        log=tmp_path / "sim.log",
    )  # fmt: skip
    cfg = agent_config(
        tmp_path / "agent.yaml", sim_port=sim.port, broker_port=port,
        bundle=trained_bundle.directory,
    )  # fmt: skip
    data = yaml.safe_load(cfg.read_text())
    # Telemetry tells the test how many windows an agent has scored (synchronisation, no sleeps).
    data["upstream"]["telemetry"] = {"enabled": True, "interval_s": 0.1}
    cfg.write_text(yaml.safe_dump(data))
    log = tmp_path / "agent.log"

    def telemetry() -> int:
        return sum(1 for t, _ in list(sub.received) if "/telemetry/" in t)

    def alerts(event: str) -> list[dict]:
        return [b for b in sub.unique_alerts() if b["event"] == event]

    procs: list[subprocess.Popen[bytes]] = []
    normal = None
    try:
        procs.append(start_agent(cfg, log))
        raised = wait_for("the fault raised", lambda: alerts("raised"), 90)
        assert isinstance(raised, list)
        alert_id = raised[0]["alert_id"]
        procs[-1].kill()
        procs[-1].wait(10)

        # The fault goes on: the restarted agent scores many windows and raises nothing new.
        seen = telemetry()
        procs.append(start_agent(cfg, log))
        wait_for("windows scored after the restart", lambda: telemetry() >= seen + 40, 90)
        procs[-1].kill()
        procs[-1].wait(10)

        # The pump is repaired while the agent is down: the held alert clears under its id.
        sim.stop()
        normal = start_modbus_sim(PROFILE, seed=SEED, speed=SPEED, log=tmp_path / "sim2.log")
        data["sources"][0]["port"] = normal.port
        cfg.write_text(yaml.safe_dump(data))
        procs.append(start_agent(cfg, log))
        wait_for(
            "the held alert cleared",
            lambda: any(b["alert_id"] == alert_id for b in alerts("cleared")),
            90,
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        sim.stop()
        if normal is not None:
            normal.stop()
        sub.close()
        broker.stop()
    assert [b["alert_id"] for b in alerts("raised")] == [alert_id]  # one fault, one alert
    (cleared,) = [b for b in alerts("cleared") if b["alert_id"] == alert_id]
    assert "held open across an agent restart" in cleared["message"]
    for _, body in sub.received:
        validate(body)
    assert "Traceback" not in log.read_text()
