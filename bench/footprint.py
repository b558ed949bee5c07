"""`edge-agent bench footprint`: resident memory and CPU share of a running agent.

The agent runs as `edge-agent run` in its own process, as deployed, against Modbus TCP simulator
processes (one TCP connection and one Modbus source per asset, spread over `--sims` simulator
processes that all serve the seed-1 pump) and a real Mosquitto, every asset 8 signals at 1 Hz.
After `warmup` seconds (long enough for the first windows and the ONNX sessions' first runs), CPU
is utime + stime of the agent's process from /proc/<pid>/stat over `measure` seconds of wall time,
as a share of one core; memory is VmRSS (and the peak, VmHWM) from /proc/<pid>/status at the end,
and where it lies (per mapped library, heap, anonymous mappings) from /proc/<pid>/smaps.

Cases: `idle` (one asset whose PLC does not answer: the agent's fixed cost of event loop, broker
connection and reconnect timers), 1, 10 and 100 Modbus assets, and `all-protocols` (10 Modbus
assets plus one OPC UA and one MQTT-in asset, so asyncua and the MQTT source are loaded too).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    PUMP_PROFILE,
    PUMP_SIGNALS,
    ROOT,
    cpu_sample,
    cpu_share,
    machine,
    print_table,
    rss_by_mapping_mb,
    rss_mb,
    train_pump_bundle,
    write_json,
)
from edge_agent.inference.bundle import Bundle
from simulators.broker import Mosquitto, free_port
from simulators.process import SimProcess, start_modbus_sim, start_sim


class TelemetryWatch:
    """Paho subscriber that records which assets published score telemetry."""

    def __init__(self, port: int) -> None:
        self.assets: set[str] = set()
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-footprint")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            "edge/bench/gw-footprint/telemetry/#", qos=0
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.assets.add(msg.topic.rsplit("/", 1)[-1])

    def take(self) -> set[str]:
        with self._lock:
            seen, self.assets = self.assets, set()
        return seen

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


FW = ROOT / "firmware_configs"


@dataclass(frozen=True)
class Case:
    name: str
    modbus_assets: int
    other_protocols: bool = False
    idle: bool = False


CASES = {
    "idle": Case("idle", 1, idle=True),
    "modbus-1": Case("modbus-1", 1),
    "modbus-10": Case("modbus-10", 10),
    "modbus-100": Case("modbus-100", 100),
    "all-protocols": Case("all-protocols", 10, other_protocols=True),
}


def agent_config(
    path: Path,
    case: Case,
    bundle: Path,
    period: float,
    modbus_ports: list[int],
    broker_port: int,
    opcua_endpoint: str | None,
) -> Path:
    backoff = {"initial_s": 1.0, "max_s": 30.0}
    sources: list[dict[str, object]] = []
    assets: list[dict[str, object]] = []

    def asset(name: str, source: str) -> dict[str, object]:
        return {"name": name, "sample_period_s": period, "bundle": str(bundle),
                "signals": [{"name": s, "source": source} for s in PUMP_SIGNALS]}  # fmt: skip

    for i in range(case.modbus_assets):
        port = free_port() if case.idle else modbus_ports[i % len(modbus_ports)]
        sources.append(
            {"type": "modbus_tcp", "name": f"plc{i}", "host": "127.0.0.1", "port": port,
             "profile": "acme_pump_plc_fw1", "poll_interval_s": period, "timeout_s": 0.5,
             "backoff": backoff}
        )  # fmt: skip
        assets.append(asset(f"pump-{i}", f"plc{i}"))
    if case.other_protocols:
        assert opcua_endpoint is not None
        sources.append(
            {"type": "opcua", "name": "ua", "endpoint": opcua_endpoint,
             "profile": "acme_pump_opcua", "poll_interval_s": period, "backoff": backoff}
        )  # fmt: skip
        sources.append(
            {"type": "mqtt", "name": "hub", "port": broker_port,
             "profile": "acme_sensor_gateway_mqtt", "backoff": backoff}
        )  # fmt: skip
        assets += [asset("pump-opcua", "ua"), asset("pump-mqtt", "hub")]
    cfg = {
        "identity": {"site": "bench", "gateway": "gw-footprint"},
        "sources": sources,
        "assets": assets,
        "upstream": {
            "mqtt": {"host": "127.0.0.1", "port": broker_port, "backoff": backoff},
            "outbox": {"dir": str(path.parent / "state")},
            # Score telemetry every 10 s per asset: the proof that every asset's windows are
            # scored while measured (and a realistic upstream load).
            "telemetry": {"enabled": True, "interval_s": 10.0},
        },
        # A measurement, not a deployment: the bench's own unsigned bundles are accepted.
        "bundles": {"allow_unsigned": True},
        "logging": {"level": "INFO"},
        "observability": {"metrics": {"port": 0}},  # a free port, never a fixed one
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def start_sims(
    case: Case, n_sims: int, period: float, broker_port: int, log: Path
) -> list[SimProcess]:
    # One simulated second per sample, as the bundle was trained.
    sims: list[SimProcess] = []
    try:
        if not case.idle:
            for _ in range(min(n_sims, case.modbus_assets)):
                sims.append(
                    start_modbus_sim(PUMP_PROFILE, seed=1, port=0, speed=1.0 / period, log=log)
                )
        if case.other_protocols:
            sims.append(start_sim("opcua", ["--profile", str(FW / "acme_pump_opcua.yaml"),
                                            "--port", "0", "--seed", "1"], speed=1.0 / period,
                                  log=log))  # fmt: skip
            sims.append(start_sim("mqtt", ["--profile", str(FW / "acme_sensor_gateway_mqtt.yaml"),
                                           "--broker-port", str(broker_port), "--seed", "1",
                                           "--period", str(period)], speed=1.0 / period,
                                  log=log))  # fmt: skip
    except Exception:
        for s in sims:
            s.stop()
        raise
    return sims


def measure_case(
    case: Case, workdir: Path, bundle: Path, n_sims: int, warmup: float, measure: float
) -> dict[str, Any]:
    period = Bundle.load(bundle).manifest.sample_period_s
    d = workdir / case.name
    d.mkdir(parents=True, exist_ok=True)
    log = d / "sims.log"
    with Mosquitto(d / "broker") as broker:
        sims = start_sims(case, n_sims, period, broker.port, log)
        modbus = [s.port for s in sims if s.address.count(":") == 1 and s.port]
        opcua = next((s.address for s in sims if s.address.startswith("opc.tcp")), None)
        cfg = agent_config(d / "agent.yaml", case, bundle, period, modbus, broker.port, opcua)
        agent_log = d / "agent.log"
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(cfg)],
            stdout=agent_log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        watch = TelemetryWatch(broker.port)
        try:
            started = time.monotonic()
            time.sleep(warmup)
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited during warm-up: see {agent_log}")
            watch.take()
            a = cpu_sample(agent.pid)
            time.sleep(measure)
            b = cpu_sample(agent.pid)
            mem = rss_mb(agent.pid)
            mappings = rss_by_mapping_mb(agent.pid)
            scored = len(watch.take())
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited while measured: see {agent_log}")
            startup_cpu = a.cpu_s
            uptime = time.monotonic() - started
        finally:
            watch.close()
            agent.terminate()
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(5)
            for s in sims:
                s.stop()
    text = agent_log.read_text(errors="replace")
    return {
        "case": case.name,
        "assets": case.modbus_assets + (2 if case.other_protocols else 0),
        "signals": 8 * (case.modbus_assets + (2 if case.other_protocols else 0)),
        "sample_period_s": period,
        "simulator_processes": len(sims),
        "cpu_share_of_one_core": round(cpu_share(a, b), 4),
        "cpu_seconds_before_measuring": round(startup_cpu, 2),
        "measured_s": round(b.at - a.at, 1),
        "agent_uptime_s": round(uptime, 1),
        "rss_mb": mem.get("VmRSS"),
        "peak_rss_mb": mem.get("VmHWM"),
        "rss_anon_mb": mem.get("RssAnon"),
        "rss_file_mb": mem.get("RssFile"),
        # Where the RSS lies at the end: shared libraries by file, [heap], [anon].
        "rss_by_mapping_mb": mappings,
        "assets_with_telemetry_while_measured": scored,
        "tracebacks_in_log": text.count("Traceback"),
    }


def run(
    workdir: Path,
    bundle: Path | None,
    cases: list[str],
    n_sims: int,
    warmup: float,
    measure: float,
) -> dict[str, Any]:
    # 1 Hz, as deployed; the teacher does not matter here.
    bundle = bundle or train_pump_bundle(workdir / "bundle-1", 1.0, speed=1.0, teacher_steps=0)
    results = []
    for name in cases:
        results.append(measure_case(CASES[name], workdir, bundle, n_sims, warmup, measure))
        print(f"  {name}: {results[-1]}", flush=True)
    return {"machine": machine(), "warmup_s": warmup, "cases": results}


def verdicts(c: dict[str, Any]) -> str:
    share, rss = c["cpu_share_of_one_core"], c["rss_mb"] or 0.0
    if c["case"] == "idle":
        return f"CPU < 1 %: {'met' if share < 0.01 else 'missed'}"
    if c["case"] == "modbus-100":
        return f"CPU < 10 %: {'met' if share < 0.10 else 'missed'}; " + (
            f"RSS < 80 MB: {'met' if rss < 80 else 'missed'}"
        )
    if c["case"] == "all-protocols":
        return f"RSS < 120 MB: {'met' if rss < 120 else 'missed'}"
    return f"RSS < 80 MB: {'met' if rss < 80 else 'missed'}"


def main(
    out: Path,
    workdir: Path | None,
    bundle: Path | None,
    cases: list[str],
    n_sims: int,
    warmup: float,
    measure: float,
) -> int:
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        wd = workdir or Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        result = run(wd, bundle, cases, n_sims, warmup, measure)
    header = ["case", "assets", "period s", "CPU % of one core", "RSS MB", "peak RSS MB",
              "measured s", "target"]  # fmt: skip
    rows = [
        [c["case"], str(c["assets"]), f"{c['sample_period_s']:g}",
         f"{100 * c['cpu_share_of_one_core']:.2f}", str(c["rss_mb"]), str(c["peak_rss_mb"]),
         str(c["measured_s"]), verdicts(c)]
        for c in result["cases"]
    ]  # fmt: skip
    print_table(f"agent footprint, 8 signals per asset (warm-up {warmup:g} s)", header, rows)
    write_json(out, result)
    return 0 if all(c["tracebacks_in_log"] == 0 for c in result["cases"]) else 1
