"""Time-to-limit forecast end to end (issue 14): a simulated pump PLC (real pymodbus server)
whose drive-end bearing wears towards the 4.5 mm/s alarm over hours, run 200× faster than real
time → edge-agent (subprocess) → real Mosquitto → subscriber. The `predicted` alert must arrive,
valid against the alert schema, well before the PLC's own limit alarm, which the test watches
itself by reading the PLC's register with an independent Modbus client."""

from __future__ import annotations

import struct
import time
from datetime import datetime

import jsonschema
import pytest
import yaml
from pymodbus.client import ModbusTcpClient

from edge_agent.alerts.messages import load_schema
from simulators.process import start_modbus_sim
from tests.conftest import PROFILE, SEED, Subscriber, agent_config
from tests.integration.test_end_to_end import start_agent, stop

pytestmark = pytest.mark.integration

SPEED = 200.0  # one simulated hour in 18 s
ONSET = 600.0  # simulated seconds
ALARM = 4.5  # mm/s: the PLC's vibration alarm (ISO 10816-3 zone C/D)
VALIDATOR = jsonschema.Draft202012Validator(
    load_schema("alert"), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def vibration_de(client: ModbusTcpClient) -> float:
    """Holding registers 4-5, float32 high word first (the profile's ABCD), read without the
    agent's codec."""
    rr = client.read_holding_registers(4, count=2, device_id=1)
    assert not rr.isError(), rr
    value: float = struct.unpack(">f", struct.pack(">HH", *rr.registers))[0]
    return value


def test_bearing_wear_over_hours_is_predicted_before_the_plc_alarm(
    tmp_path, trained_bundle, mosquitto
):
    sim = start_modbus_sim(
        PROFILE, seed=SEED, scenario="bearing_wear_hours", at=ONSET, speed=SPEED,
        log=tmp_path / "sim.log",
    )  # fmt: skip
    sub = Subscriber(mosquitto.port)
    cfg = agent_config(
        tmp_path / "agent.yaml", sim_port=sim.port, broker_port=mosquitto.port,
        bundle=trained_bundle.directory,
    )  # fmt: skip
    # The forecast's times are data (wall) times: scaled by the simulator's speed, they are the
    # defaults' 90-minute horizon, 2-minute levels and 3-hour history of the plant.
    data = yaml.safe_load(cfg.read_text())
    data["assets"][0]["forecast"] = {
        "horizon_s": 5400 / SPEED, "bucket_s": 120 / SPEED, "history_s": 10800 / SPEED,
        "min_history_s": 1800 / SPEED, "update_interval_s": 600 / SPEED,
    }  # fmt: skip
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    agent = start_agent(cfg, tmp_path / "agent.log")
    client = ModbusTcpClient("127.0.0.1", port=sim.port)
    try:
        assert client.connect()
        predicted = sub.wait_for(
            lambda m: (
                "/alerts/" in m.topic
                and m.body.get("kind") == "predicted"
                and m.body["event"] == "raised"
            ),
            # The crossing comes about 2.5 simulated hours after the onset: 45 s here.
            timeout=sim.wall_time_of(ONSET + 5 * 3600) - time.time(),
        )
        raised_at = time.time()
        # Watch the PLC's value until it reaches its alarm (bounded: the ramp ends at 4 h).
        deadline = sim.wall_time_of(ONSET + 4.5 * 3600)
        alarm_at = None
        while time.time() < deadline:
            if vibration_de(client) >= ALARM:
                alarm_at = time.time()
                break
            time.sleep(0.02)
        assert alarm_at is not None, "the PLC's vibration never reached its alarm"
    finally:
        client.close()
        stop(agent)
        sim.stop()
        sub.close()
    VALIDATOR.validate(predicted.body)
    forecast = predicted.body["forecast"]
    assert isinstance(forecast, dict)
    assert forecast["signal"] == "vibration_de" and forecast["limit"] == ALARM
    assert forecast["unit"] == "mm/s" and forecast["limit_kind"] == "alarm"
    assert "vibration_de reaches 4.5 mm/s" in str(predicted.body["message"])
    # The alert's data time is before the PLC's alarm by at least 30 simulated minutes.
    ts = datetime.fromisoformat(str(predicted.body["ts"])).timestamp()
    assert raised_at <= alarm_at
    lead_sim_min = (alarm_at - ts) * SPEED / 60
    assert lead_sim_min >= 30, f"predicted only {lead_sim_min:.0f} simulated min ahead"
    for m in sub.all:
        if "/alerts/" in m.topic:
            VALIDATOR.validate(m.body)
