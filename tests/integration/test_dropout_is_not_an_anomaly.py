"""Issue 19: data quality is not an anomaly. A pump whose drive-end vibration sensor drops out for
a few seconds in every minute (a loose connector) produces data-quality events and no anomaly
alert: windows never span a dropout, and the level-shift stage judges the stretch after a gap
against its own reference, not against the level before the dropout."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from edge_agent.csvdata import read_table
from edge_agent.profiles import load_profile
from edge_agent.replay import replay
from edge_agent.replay_cli import pipeline_for
from simulators.process import start_modbus_sim
from simulators.pump import PumpSimulator
from simulators.record import record
from simulators.scenarios import SCENARIOS
from tests.conftest import PERIOD, PROFILE, SEED, SPEED, Received, Subscriber, agent_config
from tests.integration.test_end_to_end import epoch, validate

pytestmark = pytest.mark.integration

ONSET = 100.0  # simulated s (5 s of wall time at 20x)
CYCLE = 60.0  # simulated s: the sensor drops out for 5 s in every minute
BASE = "edge/test-site/gw-1"


def test_dropouts_on_a_live_modbus_pump_are_data_quality_events_not_alerts(
    tmp_path, trained_bundle, mosquitto
):
    sim = start_modbus_sim(
        PROFILE, seed=SEED, scenario="dropout", at=ONSET, speed=SPEED, log=tmp_path / "sim.log"
    )
    sub = Subscriber(mosquitto.port)
    cfg_path = agent_config(
        tmp_path / "agent.yaml", sim_port=sim.port, broker_port=mosquitto.port,
        bundle=trained_bundle.directory,
    )  # fmt: skip
    cfg = yaml.safe_load(cfg_path.read_text())
    # The score of the latest window every 0.25 s: shows how far in data time the agent got.
    cfg["upstream"]["telemetry"] = {"enabled": True, "interval_s": 0.25}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(cfg_path)],
        stdout=(tmp_path / "agent.log").open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        sub.wait_for(lambda m: m.topic == f"{BASE}/status", timeout=30)
        onset = sim.wall_time_of(ONSET)

        def is_quality(m: Received, state: str) -> bool:
            return (
                m.topic == f"{BASE}/events"
                and m.body.get("type") == "data_quality"
                and m.body.get("severity") == state
            )

        first = sub.wait_for(lambda m: is_quality(m, "warning"), timeout=onset - time.time() + 30)
        assert "vibration_de" in str(first.body), first.body
        sub.wait_for(lambda m: is_quality(m, "info"), timeout=30)  # good again
        # Four more dropout cycles scored through: a window's telemetry from data after them.
        done = onset + 5 * CYCLE / SPEED
        sub.wait_for(
            lambda m: "/telemetry/" in m.topic and epoch(str(m.body["ts"])) >= done,
            timeout=done - time.time() + 30,
        )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0  # graceful: the outbox is flushed
        sub.wait_for(lambda m: m.topic == f"{BASE}/status", timeout=10)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        sim.stop()
        sub.close()
    for m in sub.all:
        validate(m.body)
    alerts = [m.body for m in sub.all if "/alerts/" in m.topic]
    assert alerts == []


def test_an_hour_of_dropouts_replayed_raises_no_anomaly_alert(tmp_path, trained_bundle):
    """The same scenario over 4000 samples (an hour of simulated operation, 66 dropouts) through
    the agent's pipeline: only data-quality episodes. The NaN cells are bad readings, as the
    Modbus source reports a NaN register."""
    profile = load_profile(PROFILE)
    sim = PumpSimulator(SEED, scenario=SCENARIOS["dropout"]("dropout", at=ONSET))
    path = record(profile, tmp_path / "dropout.csv", 4000, PERIOD, seed=SEED, speed=SPEED, sim=sim)
    table = read_table(path)
    table = dataclasses.replace(table, bad=table.bad | ~np.isfinite(table.values))
    rows = list(replay(pipeline_for(trained_bundle), table))
    quality = sum(r.bad_data_raised for r in rows)
    assert quality >= 60  # one episode per dropout
    assert [e for r in rows for e in r.events] == []
    # The data between dropouts is scored: 300 samples before the onset, then per minute 60 - 5
    # (dropout) - 31 (until a window is full) = 24 windows, 1500 or so in all.
    assert sum(np.isfinite(r.score) for r in rows) > 1500
