"""Simulated pump PLC (real pymodbus server, impeller wear) → edge-agent (subprocess) → real
Mosquitto → subscriber: `energy/1` interval reports and an `efficiency` alert, each message
validated against its JSON Schema as received."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from edge_agent.csvdata import read_table
from edge_agent.energy.stage import energy_signals
from edge_agent.inference.bundle import read_manifest, write_manifest
from edge_agent.profiles import load_any_profile
from edge_agent.training.efficiency import fit_from_tables
from simulators.process import start_modbus_sim
from tests.conftest import PERIOD, PROFILE, SEED, Subscriber, agent_config, sign
from tests.integration.test_end_to_end import epoch, start_agent, stop, validate

pytestmark = pytest.mark.integration

SIM_SPEED = 200.0  # 10 simulated seconds per sample: hours of wear in a minute
ONSET = 2000.0  # simulated seconds (10 s of wall time) of normal operation first
INTERVAL = 2.0  # energy interval, wall seconds (40 samples)


def efficiency_bundle(trained_bundle, tmp_path: Path, asset) -> Path:
    """The session's bundle with an efficiency model fitted on the same normal recording, as
    `edge-agent train --config` does when the data has the profile's energy points; re-signed."""
    d = tmp_path / "bundle"
    shutil.copytree(trained_bundle.directory, d)
    (d / "manifest.sig").unlink(missing_ok=True)
    table = read_table(trained_bundle.directory.parent / "normal.csv")
    signals = energy_signals(asset, {"pump_plc": load_any_profile(PROFILE)})
    assert not isinstance(signals, str)
    spec = fit_from_tables([table], signals, PERIOD, window_s=INTERVAL)
    assert spec is not None
    manifest = read_manifest(d)
    manifest["efficiency"] = spec.model_dump()
    write_manifest(d, manifest)
    sign(d)
    return d


def test_energy_reports_and_efficiency_alert_on_impeller_wear(tmp_path, trained_bundle, mosquitto):
    from edge_agent.config import load_config

    sim = start_modbus_sim(
        PROFILE, seed=SEED, scenario="impeller_wear", at=ONSET, speed=SIM_SPEED,
        log=tmp_path / "sim.log",
    )  # fmt: skip
    cfg_path = agent_config(
        tmp_path / "agent.yaml", sim_port=sim.port, broker_port=mosquitto.port,
        bundle=trained_bundle.directory,
    )  # fmt: skip
    data = yaml.safe_load(cfg_path.read_text())
    data["assets"][0]["energy"] = {"interval_s": INTERVAL}
    cfg_path.write_text(yaml.safe_dump(data, sort_keys=False))
    asset = load_config(cfg_path).settings.assets[0]
    data["assets"][0]["bundle"] = str(efficiency_bundle(trained_bundle, tmp_path, asset))
    cfg_path.write_text(yaml.safe_dump(data, sort_keys=False))
    sub = Subscriber(mosquitto.port)
    agent = start_agent(cfg_path, tmp_path / "agent.log")
    try:
        onset = sim.wall_time_of(ONSET)
        raised = sub.wait_for(
            lambda m: "/alerts/" in m.topic and m.body.get("kind") == "efficiency",
            timeout=onset - time.time() + 90,
        )
        energy = [m for m in sub.all if "/energy/" in m.topic]
        for m in sub.all:
            validate(m.body)  # every message as received: energy/1, alert/1, event/1, status/1
        # The efficiency alert is about data after the wear began, and came from the judge.
        assert raised.body["event"] == "raised" and epoch(raised.body["ts"]) > onset
        assert raised.body["score"] > raised.body["threshold"] > 1.0
        assert raised.topic == "edge/test-site/gw-1/alerts/pump-1"
        assert len(energy) >= 3
        for m in energy:
            b = m.body
            assert m.topic == "edge/test-site/gw-1/energy/pump-1" and not m.retained
            assert b["schema"] == "edge-agent/energy/1"
            assert epoch(b["end"]) - epoch(b["start"]) <= INTERVAL + 1e-6
            if b["measured_s"] > 0:
                # Energy = mean power × measured time, kWh per m³ = energy / product.
                assert b["energy_kwh"] == pytest.approx(
                    b["mean_power_kw"] * b["measured_s"] / 3600, rel=1e-3
                )
                assert 10 < b["mean_power_kw"] < 30 and 0.5 < b["mean_power_factor"] < 0.9
                assert b["specific_energy_kwh_per_unit"] == pytest.approx(
                    b["energy_kwh"] / b["product"]["amount"], rel=1e-3
                )
                assert b["product"]["unit"] == "m3" and "efficiency" in b
        # Intervals before the onset measured all through (a poll may miss now and then).
        before = [m.body for m in energy if epoch(m.body["end"]) < onset - 0.5]
        assert any(b["unmeasured_s"] < 3 * PERIOD for b in before), before
        log = (tmp_path / "agent.log").read_text()
        assert "asset pump-1: energy from source pump_plc" in log
    finally:
        stop(agent)
        sim.stop()
        sub.close()
