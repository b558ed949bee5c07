"""MQTT consumer source: the sensor-gateway simulator publishes to a real Mosquitto."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge_agent.profiles import load_any_profile
from edge_agent.sources.mqtt.config import MqttInConfig
from edge_agent.sources.mqtt.profile import MqttProfile
from edge_agent.sources.mqtt.source import MqttInSource
from edge_agent.types import Batch, Quality
from simulators.broker import Mosquitto
from simulators.process import SimProcess, start_sim
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

PROFILE_PATH = ROOT / "firmware_configs" / "acme_sensor_gateway_mqtt.yaml"
PROFILE = load_any_profile(PROFILE_PATH)
assert isinstance(PROFILE, MqttProfile)
SIGNALS = PROFILE.point_names()


def start_gateway(tmp_path: Path, port: int) -> SimProcess:
    args = ["--profile", str(PROFILE_PATH), "--broker-port", str(port), "--period", "0.1"]
    return start_sim("mqtt", args, log=tmp_path / "sim.log")


def cfg(port: int) -> MqttInConfig:
    return MqttInConfig.model_validate(
        {"type": "mqtt", "name": "hub", "port": port, "profile": "x",
         "backoff": {"initial_s": 0.1, "max_s": 0.5}}
    )  # fmt: skip


async def seen_points(
    source: MqttInSource, want: set[str], limit_s: float = 20, after: float = 0.0
) -> list[Batch]:
    got: set[str] = set()
    batches: list[Batch] = []

    async def run() -> None:
        async for b in source.batches():
            if b.ts <= after:
                continue  # queued before the event the caller waits for
            batches.append(b)
            got.update(r.point for r in b.readings if r.quality is Quality.GOOD)
            if want <= got:
                return

    await asyncio.wait_for(run(), limit_s)
    return batches


def publish_raw(port: int, messages: list[tuple[str, bytes]]) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for topic, payload in messages:
        c.publish(topic, payload, qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


async def test_all_three_payload_kinds_malformed_dropped_and_resubscribed_after_broker_restart(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sim = start_gateway(tmp_path, mosquitto.port)
    source = MqttInSource(cfg(mosquitto.port), PROFILE, SIGNALS)
    try:
        async with source:
            batches = await seen_points(source, set(SIGNALS))
            by_point = {r.point: r for b in batches for r in b.readings}
            assert 30 < by_point["motor_current"].value < 200
            assert by_point["run_hours"].value == 12000
            # JSON timestamps are the device's (ISO / epoch ms), numbers are stamped on arrival.
            assert by_point["motor_current"].source_ts is not None
            assert by_point["vibration_de"].source_ts is not None
            assert by_point["run_hours"].source_ts is None

            await asyncio.wait_for(source.subscribed.wait(), 5)
            # Three malformed payloads, then a marker; one publisher's messages arrive in order.
            raw = "plant/s/pump-1/raw/run_hours"
            await asyncio.to_thread(
                publish_raw, mosquitto.port,
                [("plant/s/pump-1/telemetry", b"{not json"),
                 ("plant/s/pump-1/vibration", b'{"readings": 3}'),
                 (raw, b"NaN-ish"), (raw, b"777")],
            )  # fmt: skip

            async def marker() -> None:
                async for b in source.batches():
                    if any(r.point == "run_hours" and r.value == 777 for r in b.readings):
                        return

            await asyncio.wait_for(marker(), 10)
            assert source.stats.malformed == 3

            mosquitto.stop()
            restarted = time.time()
            mosquitto.start()
            await seen_points(source, set(SIGNALS), limit_s=30, after=restarted)
            assert source.stats.connects == 2
    finally:
        sim.stop()


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="mosquitto-clients missing")
def test_stock_client_mosquitto_sub_reads_the_gateway(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = start_gateway(tmp_path, mosquitto.port)
    try:
        out = subprocess.run(
            ["mosquitto_sub", "-p", str(mosquitto.port), "-t", "plant/+/+/telemetry", "-C", "1",
             "-W", "20"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert '"current_a"' in out.stdout
    finally:
        sim.stop()
