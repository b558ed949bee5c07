"""Shared fixtures: a bundle trained on simulated normal data, a private Mosquitto, helpers."""

from __future__ import annotations

import atexit
import functools
import gzip
import json
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from edge_agent.inference.bundle import (
    MANIFEST,
    Bundle,
    load_private_key,
    read_manifest,
    sign_bundle,
    write_key_pair,
)
from edge_agent.profiles import load_profile
from simulators.broker import Mosquitto, find_mosquitto

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "firmware_configs" / "acme_pump_plc_fw1.yaml"
SPEED = 20.0
PERIOD = 1.0 / SPEED
SEED = 1
SIGNALS = [
    "motor_current", "motor_voltage", "vibration_de", "vibration_nde",
    "motor_temperature", "fluid_temperature", "discharge_pressure", "flow_rate",
]  # fmt: skip


@functools.cache
def signing_keys() -> tuple[Path, Path]:
    """The test session's bundle signing key pair (private, public): the trained bundle is signed
    with it and `agent_config` trusts it, as a deployment would."""
    d = Path(tempfile.mkdtemp(prefix="edge-agent-test-keys-"))
    atexit.register(shutil.rmtree, d, True)
    return write_key_pair(d, "test-signing")


def sign(bundle_dir: Path) -> Path:
    """Sign a bundle (e.g. a copy made for a test) with the session's key."""
    sign_bundle(bundle_dir, load_private_key(signing_keys()[0]))
    return bundle_dir


def tamper_threshold(bundle_dir: Path, value: float) -> None:
    """Rewrite the bundle's compressed manifest with another raise threshold and leave the
    signature as it was: what an attacker with write access to the bundle folder would do."""
    m = read_manifest(bundle_dir)
    m["threshold"]["raise"] = value  # type: ignore[index]
    (bundle_dir / MANIFEST).write_bytes(gzip.compress(json.dumps(m).encode()))


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A real int8 bundle: 12000 samples (3.3 simulated hours) of the seed-1 pump, trained once."""
    pytest.importorskip("torch")
    from edge_agent.csvdata import read_table
    from edge_agent.training.train import TrainOptions, train_bundle
    from simulators.record import record

    d = tmp_path_factory.mktemp("bundle")
    profile = load_profile(PROFILE)
    csv_path = record(profile, d / "normal.csv", 12000, PERIOD, seed=SEED, speed=SPEED)
    units = [profile.point(s).unit for s in SIGNALS]
    bundle = train_bundle(
        [read_table(csv_path)],
        SIGNALS,
        d / "bundle",
        TrainOptions(progress=False, teacher_steps=150, distill_windows=2048),
        units=units,
        name="pump-1",
    )
    sign(bundle.directory)
    return bundle


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if find_mosquitto() is None:
        pytest.fail("mosquitto is required for integration tests (apt-get install mosquitto)")
    with Mosquitto(tmp_path / "broker") as broker:
        yield broker


def agent_config(
    path: Path, *, sim_port: int, broker_port: int, bundle: Path, **mqtt_extra: object
) -> Path:
    cfg = {
        "identity": {"site": "test-site", "gateway": "gw-1"},
        "sources": [
            {
                "type": "modbus_tcp", "name": "pump_plc", "host": "127.0.0.1", "port": sim_port,
                "profile": "acme_pump_plc_fw1", "poll_interval_s": PERIOD, "timeout_s": 0.5,
                "backoff": {"initial_s": 0.2, "max_s": 1.0},
            }
        ],
        "assets": [
            {
                "name": "pump-1", "sample_period_s": PERIOD, "bundle": str(bundle),
                "signals": [{"name": s, "source": "pump_plc"} for s in SIGNALS],
            }
        ],
        "upstream": {
            "mqtt": {
                "host": "127.0.0.1", "port": broker_port, "topic_prefix": "edge",
                "backoff": {"initial_s": 0.2, "max_s": 1.0}, **mqtt_extra,
            },
            "outbox": {"dir": str(path.parent / "state")},
        },
        "bundles": {"trusted_keys": [str(signing_keys()[1])]},
        "logging": {"level": "INFO"},
        # Port 0: the agent picks a free one (tests never use fixed ports).
        "observability": {"metrics": {"port": 0}},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@dataclass
class Received:
    topic: str
    body: dict[str, object]
    retained: bool
    at: float


class Subscriber:
    """A plain paho subscriber in its own thread; messages arrive in a queue with arrival time."""

    def __init__(self, port: int, topic: str = "edge/#") -> None:
        self.messages: queue.Queue[Received] = queue.Queue()
        self.all: list[Received] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("subscriber could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(
            Received(msg.topic, json.loads(msg.payload), bool(msg.retain), time.time())
        )

    def wait_for(self, predicate, timeout: float) -> Received:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                m = self.messages.get(timeout=left)
            except queue.Empty:
                break
            self.all.append(m)
            if predicate(m):
                return m
        raise TimeoutError(
            f"no matching message within {timeout} s; got {[x.topic for x in self.all]}"
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
