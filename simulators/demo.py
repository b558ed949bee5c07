"""`edge-agent demo`: the whole product on one machine, no hardware.

1. record normal operation of a simulated pump skid and train an int8 bundle on it;
2. start Mosquitto on a free port and the pump simulator as a real Modbus TCP server (20x time);
3. run the agent against both, with a fault injected after a normal stretch;
4. print every message a subscriber receives from the broker; stop after the alert (or timeout).

`--forecast` (issue 14): the drive-end bearing wears over hours instead, the simulator runs 200x
real time (a simulated hour in 18 s), and the demo also watches the PLC's vibration register
itself: it shows the `predicted` alert ("vibration_de reaches 4.5 mm/s ... in about N min") and
then the moment the PLC's own 4.5 mm/s alarm would fire, with the lead in simulated minutes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiomqtt
import yaml

from edge_agent.agent import Agent, build_pipelines
from edge_agent.config import load_config
from edge_agent.inference.bundle import key_id, load_private_key, sign_bundle, write_key_pair
from edge_agent.inference.detector import DetectorPool
from edge_agent.profiles import load_profile, packaged_profile_dirs

PROFILE = "acme_pump_plc_fw1"
SPEED = 20.0  # simulated seconds per wall second
PERIOD = 1.0 / SPEED  # one sample per simulated second
SEED = 1
SIGNALS = [
    "motor_current", "motor_voltage", "vibration_de", "vibration_nde",
    "motor_temperature", "fluid_temperature", "discharge_pressure", "flow_rate",
]  # fmt: skip


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _profile_path() -> Path:
    for d in packaged_profile_dirs():
        if (d / f"{PROFILE}.yaml").is_file():
            return d / f"{PROFILE}.yaml"
    raise FileNotFoundError(f"{PROFILE}.yaml not found in {packaged_profile_dirs()}")


def train_demo_bundle(workdir: Path, profile_path: Path) -> Path:
    from edge_agent.csvdata import read_table
    from edge_agent.training.train import TrainOptions, train_bundle
    from simulators.record import record

    csv_path = workdir / "normal.csv"
    _say(f"recording 12000 samples of normal operation (3.3 simulated hours) to {csv_path}")
    record(load_profile(profile_path), csv_path, 12000, PERIOD, seed=SEED, speed=SPEED)
    _say(
        "training: PatchTST teacher, distilled conv-autoencoder student, ONNX, static int8 "
        "(about a minute)"
    )
    profile = load_profile(profile_path)
    units = [profile.point(s).unit for s in SIGNALS]
    bundle = train_bundle(
        [read_table(csv_path)],
        SIGNALS,
        workdir / "bundle",
        TrainOptions(progress=False, teacher_steps=200),
        units=units,
        name="pump-1",
    )
    m = bundle.manifest
    _say(
        f"bundle {m.model_version}: threshold {m.threshold.raise_:.3g}, int8/fp32 decision "
        f"agreement {m.agreement['int8_vs_fp32_decision_agreement']:.3f}"
    )
    return bundle.directory


def sign_demo_bundle(workdir: Path, bundle: Path) -> Path:
    """Sign the bundle with a key made for the demo (as `edge-agent keys` and `edge-agent sign`
    do); returns the public key the agent's config trusts."""
    keys = workdir / "keys"
    key_path, pub_path = keys / "demo-signing.key", keys / "demo-signing.pub"
    if not key_path.exists():
        key_path, pub_path = write_key_pair(keys, "demo-signing")
    key = load_private_key(key_path)
    sign_bundle(bundle, key)
    _say(f"bundle signed with the demo key {key_id(key.public_key())} ({key_path})")
    return pub_path


FORECAST_SPEED = 200.0  # --forecast: simulated seconds per wall second
PLC_ALARM = 4.5  # mm/s: the PLC's vibration alarm (simulators/plc_limits.py)


def forecast_settings(speed: float) -> dict[str, float]:
    """The forecast defaults (a 90-minute horizon, 2-minute levels, 3 hours of history) in the
    agent's data time, which runs `speed` times faster than the plant's here."""
    return {
        "horizon_s": 5400 / speed, "bucket_s": 120 / speed, "history_s": 10800 / speed,
        "min_history_s": 1800 / speed, "update_interval_s": 600 / speed,
    }  # fmt: skip


def write_config(
    workdir: Path,
    sim_port: int,
    broker_port: int,
    bundle: Path,
    trusted_key: Path,
    forecast: dict[str, float] | None = None,
) -> Path:
    cfg = {
        "identity": {"site": "demo-site", "gateway": "gw-demo"},
        "sources": [
            {
                "type": "modbus_tcp", "name": "pump_plc", "host": "127.0.0.1", "port": sim_port,
                "profile": PROFILE, "poll_interval_s": PERIOD, "timeout_s": 0.5,
            }
        ],
        "assets": [
            {
                "name": "pump-1", "sample_period_s": PERIOD, "bundle": str(bundle),
                "signals": [{"name": s, "source": "pump_plc"} for s in SIGNALS],
            }
        ],
        "upstream": {
            "mqtt": {"host": "127.0.0.1", "port": broker_port, "topic_prefix": "edge"},
            "outbox": {"dir": str(workdir.resolve() / "state")},
        },
        "bundles": {"trusted_keys": [str(trusted_key)]},
    }  # fmt: skip
    if forecast is not None:
        cfg["assets"][0]["forecast"] = forecast  # type: ignore[index]
    path = workdir / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _sim_minutes(seconds: float | None, speed: float) -> str:
    return "beyond the look-ahead" if seconds is None else f"{seconds * speed / 60:.0f} min"


async def _watch(port: int, alert_seen: asyncio.Event, speed: float = SPEED) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="demo-subscriber") as client:
        await client.subscribe("edge/#", qos=1)
        async for msg in client.messages:
            body = json.loads(bytes(msg.payload))
            if body.get("kind") == "predicted":
                _say(f"SUBSCRIBER got {msg.topic}: PREDICTED {body['event'].upper()}")
                print(f"    {body['message']}", flush=True)
                f = body["forecast"]
                if speed != SPEED and body["event"] != "cleared":
                    # The agent's clock is the wall clock; say it in the plant's time too.
                    near, far = f["interval_s"]["near"], f["interval_s"]["far"]
                    print(
                        f"    (in simulated time: about {_sim_minutes(f['time_to_limit_s'], speed)}"
                        f", 80 % interval {_sim_minutes(near, speed)} to "
                        f"{_sim_minutes(far, speed)})",
                        flush=True,
                    )
            elif body.get("schema", "").startswith("edge-agent/alert"):
                _say(f"SUBSCRIBER got {msg.topic}: {body['event'].upper()} {body['severity']}")
                print(f"    {body['message']}", flush=True)
                if body["event"] == "raised":
                    alert_seen.set()
            elif body.get("schema", "").startswith("edge-agent/event"):
                _say(f"SUBSCRIBER got {msg.topic}: {body['type']}: {body['message']}")
            else:
                _say(f"SUBSCRIBER got {msg.topic}: {body.get('state')}")


async def _watch_plc(sim_port: int, start: float, speed: float, alarm: asyncio.Event) -> None:
    """Read the PLC's drive-end vibration (holding 4-5, float32 ABCD) until it reaches the PLC's
    alarm, and say when (in simulated time since the simulator started)."""
    import struct

    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=sim_port)
    await client.connect()
    try:
        while True:
            rr = await client.read_holding_registers(4, count=2, device_id=1)
            if not rr.isError():
                value = struct.unpack(">f", struct.pack(">HH", *rr.registers))[0]
                if value >= PLC_ALARM:
                    sim_min = (time.time() - start) * speed / 60
                    _say(
                        f"PLC: vibration_de {value:.2f} mm/s >= {PLC_ALARM} mm/s: the PLC's limit "
                        f"alarm fires now (simulated minute {sim_min:.0f})"
                    )
                    alarm.set()
                    return
            await asyncio.sleep(0.05)
    finally:
        client.close()


async def _run(
    config: Path,
    broker_port: int,
    onset_wall: float,
    deadline_s: float,
    plc: tuple[int, float, float] | None = None,
) -> bool:
    """`plc`: (port, simulator start, speed) to watch the PLC's alarm and stop after it."""
    cfg = load_config(config)
    detectors = DetectorPool()
    agent = Agent(cfg, build_pipelines(cfg, detectors), detectors=detectors)
    alert_seen = asyncio.Event()
    plc_alarm = asyncio.Event()

    async def supervise() -> None:
        try:
            await asyncio.wait_for((plc_alarm if plc else alert_seen).wait(), deadline_s)
            await asyncio.sleep(2.0)  # let a subscriber see what follows the alert
        except TimeoutError:
            _say(f"no alert within {deadline_s:.0f} s")
        agent.stop.set()

    async def countdown() -> None:
        left = onset_wall - time.time()
        if left > 0:
            _say(f"normal operation; the fault starts in {left:.0f} s")
            await asyncio.sleep(left)
        _say("fault injected in the simulator now")

    async with asyncio.TaskGroup() as tg:
        tg.create_task(agent.run())
        speed = plc[2] if plc is not None else SPEED
        watcher = tg.create_task(_watch(broker_port, alert_seen, speed))
        tg.create_task(countdown())
        if plc is not None:
            tg.create_task(_watch_plc(*plc, plc_alarm))
        await supervise()
        await asyncio.sleep(0.5)
        watcher.cancel()
    return alert_seen.is_set()


def run_demo(
    workdir: Path, scenario: str = "cavitation", timeout: float = 150.0, forecast: bool = False
) -> int:
    from simulators.broker import Mosquitto, find_mosquitto
    from simulators.process import start_modbus_sim

    if find_mosquitto() is None:
        print("edge-agent demo needs Mosquitto: apt-get install mosquitto", file=sys.stderr)
        return 1
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    profile_path = _profile_path()
    bundle = train_demo_bundle(workdir, profile_path)
    public_key = sign_demo_bundle(workdir, bundle)
    at = 400.0  # simulated seconds of normal operation before the fault
    speed = SPEED
    if forecast:
        scenario, speed, at = "bearing_wear_hours", FORECAST_SPEED, 1200.0
        _say(
            f"forecast demo: the simulator runs {speed:.0f}x (an hour in {3600 / speed:.0f} s); "
            "the detector's bundle was trained at 20x and may flag the faster dynamics as "
            "anomalies: this run is about the `predicted` alert and the PLC's limit alarm"
        )
    with Mosquitto(workdir / "broker") as broker:
        _say(f"Mosquitto listening on 127.0.0.1:{broker.port}")
        sim = start_modbus_sim(
            profile_path, seed=SEED, scenario=scenario, at=at, speed=speed,
            log=workdir / "simulator.log",
        )  # fmt: skip
        try:
            _say(f"pump simulator (Modbus TCP) on 127.0.0.1:{sim.port}, {scenario} at t={at:.0f} s")
            settings = forecast_settings(speed) if forecast else None
            config = write_config(workdir, sim.port, broker.port, bundle, public_key, settings)
            plc = (sim.port, sim.wall_time_of(0.0), speed) if forecast else None
            ok = asyncio.run(_run(config, broker.port, sim.wall_time_of(at), timeout, plc))
        finally:
            sim.stop()
    _say("done: alert received by the subscriber" if ok else "done: NO alert received")
    return 0 if ok else 1
