"""`edge-agent bench peers`: the agent beside a peer gateway, ThingsBoard IoT Gateway, polling the
same simulated Modbus pumps into the same Mosquitto.

Per device count (1, 10, 50 by default) the bench starts one broker and `--sims` Modbus simulator
processes of the seed-1 pump (8 signals at 1 Hz), then runs the two gateways one after the other,
interleaved A/B/A/B (`--rounds` pairs), each in its own process against the same simulators:

- the agent (`edge-agent run`), as `bench footprint` configures it: one Modbus TCP source per
  device, a bundle scoring every asset, score telemetry every 10 s;
- ThingsBoard IoT Gateway (`--peer thingsboard`, pinned below), installed by the bench into its
  own virtualenv under the work directory (once; reused while its pins are unchanged), with its
  shipped tb_gateway.json and logs.json changed only where a bench must: broker host and port, an
  access token, remote configuration, remote shell and statistics off, one Modbus connector
  whose slaves are the same devices with the same 8 registers (1000 ms poll period).

The peer's own update check (an HTTPS request to its vendor at start and hourly) is disabled by
the launcher: the bench talks to loopback only. The peer also expects the ThingsBoard server to
answer its `getSessionLimits` RPC before it publishes; the bench answers it as the server would,
with no rate limits, and a broker ACL keeps the peer from receiving its own request (Mosquitto
echoes it to the peer's `v1/devices/me/rpc/request/+` subscription, which a ThingsBoard server
does not).

Per run, after `--warmup` seconds: CPU (utime + stime from /proc over `--measure` seconds, share
of one core), RSS and peak RSS (VmRSS, VmHWM) at the end, Modbus requests per poll (counted by
the simulators: requests served during the measurement / (devices × polls)), and messages and
values delivered per second at one subscriber (a peer value is one entry of a telemetry
`values` object; an agent value is one anomaly score: the agent publishes scores and alerts, not
the raw signals). `--peer none` runs the agent side alone (the smoke test's quick path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    PUMP_PROFILE,
    cpu_sample,
    cpu_share,
    machine,
    print_table,
    rss_mb,
    train_pump_bundle,
    write_json,
)
from bench.footprint import Case, agent_config
from edge_agent.inference.bundle import Bundle
from simulators.broker import Mosquitto
from simulators.process import SimProcess, start_modbus_sim

# The peer and the libraries its Modbus connector would otherwise pip-install at run time (it
# installs pymodbus 3.9.2 itself when another version is found), pinned.
PEER_PINS = (
    "thingsboard-gateway==3.8.5",
    "pymodbus==3.9.2",
    "pyserial==3.5",
    "pyserial-asyncio==0.6",
)
PEER_TOKEN = "bench-peer"  # the peer's access token = its MQTT user name
# The pump profile's 8 signals as ThingsBoard Modbus keys: (name, type, registers, address);
# float32 ABCD = big-endian bytes and words; the temperatures are int16 tenths.
PEER_KEYS = [
    ("motor_current", "32float", 2, 0), ("motor_voltage", "32float", 2, 2),
    ("vibration_de", "32float", 2, 4), ("vibration_nde", "32float", 2, 6),
    ("motor_temperature", "16int", 1, 8), ("fluid_temperature", "16int", 1, 9),
    ("discharge_pressure", "32float", 2, 10), ("flow_rate", "32float", 2, 12),
]  # fmt: skip
LAUNCHER = '''"""Start ThingsBoard IoT Gateway with its update check disabled (loopback only)."""
import sys
from thingsboard_gateway.tb_utility import tb_updater
tb_updater.TBUpdater.check_for_new_version = lambda self: None
from thingsboard_gateway.gateway.tb_gateway_service import TBGatewayService
TBGatewayService(sys.argv[1])
'''
# Anonymous clients (the agent, the subscriber, the session responder) may do anything; the peer
# may not read RPC requests, which only its server would receive.
ACL = f"""topic readwrite #

user {PEER_TOKEN}
topic readwrite v1/gateway/#
topic readwrite v1/devices/me/telemetry
topic readwrite v1/devices/me/attributes
topic readwrite v1/devices/me/attributes/#
topic write v1/devices/me/rpc/request/#
topic readwrite v1/devices/me/rpc/response/#
"""
SESSION_LIMITS = {
    "rateLimits": {"messages": "0:0,", "telemetryMessages": "0:0,", "telemetryDataPoints": "0:0,"},
    "maxInflightMessages": 1000,
    "maxPayloadSize": 65536,
}


def ensure_peer(venv: Path, timeout: float = 900.0) -> Path:
    """The peer's virtualenv with PEER_PINS installed (from the package index); reused when its
    stamp names the same pins. Returns its python."""
    python = venv / "bin" / "python"
    stamp = venv / "bench-pins.txt"
    pins = "\n".join(PEER_PINS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == pins:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *PEER_PINS],
        check=True, timeout=timeout,
    )  # fmt: skip
    stamp.write_text(pins)
    return python


def peer_package_dir(python: Path) -> Path:
    code = "import os, thingsboard_gateway as t; print(os.path.dirname(t.__file__))"
    out = subprocess.run(
        [str(python), "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    return Path(out.stdout.strip())


def peer_config(d: Path, package: Path, broker_port: int, ports: list[int], period: float) -> Path:
    """tb_gateway.json, logs.json and modbus.json for `len(ports)` devices in `d`."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(exist_ok=True)  # the shipped logs.json writes ./logs/*.log
    (d / "logs.json").write_text((package / "config" / "logs.json").read_text())
    gw = json.loads((package / "config" / "tb_gateway.json").read_text())
    tb = gw["thingsboard"]
    tb.update(host="127.0.0.1", port=broker_port, remoteShell=False, remoteConfiguration=False)
    tb["security"] = {"type": "accessToken", "accessToken": PEER_TOKEN}
    tb["statistics"] = {**tb.get("statistics", {}), "enable": False, "enableCustom": False}
    gw["storage"]["data_folder_path"] = gw["storage"]["data_file_path"] = str(d / "data") + "/"
    gw["connectors"] = [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}]
    keys = [
        {"tag": name, "type": kind, "functionCode": 3, "objectsCount": count, "address": address,
         **({"divider": 10} if kind == "16int" else {})}
        for name, kind, count, address in PEER_KEYS
    ]  # fmt: skip
    slaves = [
        {"host": "127.0.0.1", "port": port, "type": "tcp", "method": "socket", "unitId": 1,
         "deviceName": f"pump-{i}", "deviceType": "pump", "timeout": 0.5, "byteOrder": "BIG",
         "wordOrder": "BIG", "retries": 0, "pollPeriod": round(period * 1000),
         "connectAttemptTimeMs": 1000, "connectAttemptCount": 5, "waitAfterFailedAttemptsMs": 1000,
         "attributes": [], "timeseries": keys, "attributeUpdates": [], "rpc": []}
        for i, port in enumerate(ports)
    ]  # fmt: skip
    (d / "modbus.json").write_text(json.dumps({"master": {"slaves": slaves}}, indent=1))
    (d / "tb_gateway.json").write_text(json.dumps(gw, indent=1))
    (d / "launch_peer.py").write_text(LAUNCHER)
    return d / "tb_gateway.json"


@dataclass
class Delivered:
    """What one subscriber saw, by gateway: messages and values."""

    messages: dict[str, int] = field(default_factory=lambda: {"agent": 0, "peer": 0})
    values: dict[str, int] = field(default_factory=lambda: {"agent": 0, "peer": 0})


class Subscriber:
    """One paho client on `#`: counts what each gateway delivers and answers the peer's
    `getSessionLimits` RPC as its server would."""

    def __init__(self, port: int) -> None:
        self._lock = threading.Lock()
        self.seen = Delivered()
        self.sessions_answered = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-peers")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("#", qos=0)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        topic, payload = msg.topic, bytes(msg.payload)  # paho 2.2 may hand a bytearray
        if topic.startswith("v1/devices/me/rpc/request/"):
            self._answer(topic, payload)
            return
        who, values = "", 0
        if topic == "v1/gateway/telemetry":
            who, values = "peer", peer_values(payload)
        elif topic.startswith("edge/bench/") and "/telemetry/" in topic:
            who, values = "agent", 1  # one anomaly score per message
        elif topic.startswith("edge/bench/") and "/alerts/" in topic:
            who = "agent"
        if who:
            with self._lock:
                self.seen.messages[who] += 1
                self.seen.values[who] += values

    def _answer(self, topic: str, payload: bytes) -> None:
        try:
            method = json.loads(payload).get("method")
        except (ValueError, AttributeError):
            return
        if method == "getSessionLimits":
            request_id = topic.rsplit("/", 1)[-1]
            self.client.publish(
                f"v1/devices/me/rpc/response/{request_id}", json.dumps(SESSION_LIMITS), qos=1
            )
            self.sessions_answered += 1

    def take(self) -> Delivered:
        with self._lock:
            seen, self.seen = self.seen, Delivered()
        return seen

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def peer_values(payload: bytes) -> int:
    """Values in a gateway telemetry message: {device: [{ts, values: {...}}] or {...}}."""
    try:
        data = json.loads(payload)
    except ValueError:
        return 0
    n = 0
    for entries in data.values() if isinstance(data, dict) else ():
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict):
                values = entry.get("values", entry)
                n += len(values) if isinstance(values, dict) else 0
    return n


def child_pids(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        out += [int(c) for c in children]
    return out


@dataclass(frozen=True)
class Setup:
    """What one device count's runs share."""

    workdir: Path
    broker_port: int
    sims: list[SimProcess]
    ports: list[int]  # the Modbus port of each device
    bundle: Path
    period: float
    peer_python: Path | None
    peer_package: Path | None


def start_gateway(who: str, s: Setup, d: Path) -> subprocess.Popen[bytes]:
    d.mkdir(parents=True, exist_ok=True)
    log = (d / f"{who}.log").open("ab")
    if who == "agent":
        case = Case(f"peers-{len(s.ports)}", len(s.ports))
        cfg = agent_config(d / "agent.yaml", case, s.bundle, s.period, s.ports, s.broker_port, None)
        cmd = [sys.executable, "-m", "edge_agent", "run", "--config", str(cfg)]
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    assert s.peer_python is not None and s.peer_package is not None
    cfg = peer_config(d, s.peer_package, s.broker_port, s.ports, s.period)
    cmd = [str(s.peer_python), str(d / "launch_peer.py"), str(cfg)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # its own packages only
    return subprocess.Popen(cmd, cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT)


def requests_served(sims: list[SimProcess]) -> int:
    return sum(s.requests_served() for s in sims)


def measure_run(
    who: str, s: Setup, sub: Subscriber, run: int, warmup: float, measure: float
) -> dict[str, Any]:
    d = s.workdir / f"{who}-{run}"
    proc = start_gateway(who, s, d)
    try:
        time.sleep(warmup)
        if proc.poll() is not None:
            raise RuntimeError(f"{who} exited during warm-up: see {d / f'{who}.log'}")
        sub.take()
        req0, a = requests_served(s.sims), cpu_sample(proc.pid)
        time.sleep(measure)
        b, req1 = cpu_sample(proc.pid), requests_served(s.sims)
        seen = sub.take()
        mem = rss_mb(proc.pid)
        children = child_pids(proc.pid)
        if proc.poll() is not None:
            raise RuntimeError(f"{who} exited while measured: see {d / f'{who}.log'}")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    seconds = b.at - a.at
    devices = len(s.ports)
    polls = devices * seconds / s.period
    return {
        "gateway": who,
        "devices": devices,
        "run": run,
        "cpu_share_of_one_core": round(cpu_share(a, b), 4),
        "rss_mb": mem.get("VmRSS"),
        "peak_rss_mb": mem.get("VmHWM"),
        "rss_anon_mb": mem.get("RssAnon"),
        "rss_file_mb": mem.get("RssFile"),
        "child_processes": len(children),
        "modbus_requests": req1 - req0,
        "modbus_requests_per_poll": round((req1 - req0) / polls, 2),
        "messages_per_s": round(seen.messages[who] / seconds, 2),
        "values_per_s": round(seen.values[who] / seconds, 2),
        "measured_s": round(seconds, 1),
        "machine": machine(),
    }


def run_devices(
    n: int,
    workdir: Path,
    bundle: Path,
    peer: tuple[Path, Path] | None,
    n_sims: int,
    rounds: int,
    warmup: float,
    measure: float,
) -> list[dict[str, Any]]:
    period = Bundle.load(bundle).manifest.sample_period_s
    d = workdir / f"devices-{n}"
    d.mkdir(parents=True, exist_ok=True)
    acl = d / "acl"
    acl.write_text(ACL)
    results: list[dict[str, Any]] = []
    # Started as root, Mosquitto reads the ACL file after dropping to its own user, which cannot
    # enter a private (0700) work directory such as pytest's: then it keeps the user it has
    # (a loopback-only broker for the length of a bench).
    keep_user = "user root\n" if os.geteuid() == 0 else ""
    with Mosquitto(d / "broker", extra_config=f"acl_file {acl}\n{keep_user}") as broker:
        sims: list[SimProcess] = []
        sub: Subscriber | None = None
        try:
            for _ in range(min(n_sims, n)):
                sims.append(
                    start_modbus_sim(PUMP_PROFILE, seed=1, speed=1.0 / period, log=d / "sims.log")
                )
            ports = [sims[i % len(sims)].port for i in range(n)]
            setup = Setup(d, broker.port, sims, ports, bundle, period,
                          *(peer if peer else (None, None)))  # fmt: skip
            sub = Subscriber(broker.port)
            order = ["agent", "peer"] if peer else ["agent"]
            for r in range(rounds):
                for who in order:  # A/B/A/B: the same order every round
                    results.append(measure_run(who, setup, sub, r, warmup, measure))
                    print(f"  {n} devices, {who} run {r}: {results[-1]}", flush=True)
        finally:
            if sub is not None:
                sub.close()
            for sim in sims:
                sim.stop()
    return results


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (devices, gateway): the median of its runs for each figure, and the max peak RSS."""
    keys = sorted({(r["devices"], r["gateway"]) for r in runs}, key=lambda k: (k[0], k[1]))
    out = []
    for devices, who in keys:
        rs = [r for r in runs if r["devices"] == devices and r["gateway"] == who]

        def med(name: str, rs: list[dict[str, Any]] = rs) -> float:
            values = sorted(float(r[name]) for r in rs)
            mid = len(values) // 2
            return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

        out.append({
            "devices": devices, "gateway": who, "runs": len(rs),
            "cpu_share_of_one_core": med("cpu_share_of_one_core"), "rss_mb": med("rss_mb"),
            "peak_rss_mb": max(float(r["peak_rss_mb"]) for r in rs),
            "modbus_requests_per_poll": med("modbus_requests_per_poll"),
            "messages_per_s": med("messages_per_s"), "values_per_s": med("values_per_s"),
        })  # fmt: skip
    return out


def verdicts(summary: list[dict[str, Any]]) -> dict[str, str]:
    """The issue's targets, per device count where the peer ran."""
    out: dict[str, str] = {}
    for row in summary:
        if row["gateway"] != "agent":
            continue
        n = row["devices"]
        out[f"rss_below_80_mb_{n}"] = "met" if row["rss_mb"] < 80 else "missed"
        peer = next((p for p in summary if p["devices"] == n and p["gateway"] == "peer"), None)
        if peer is None:
            continue
        out[f"rss_below_peer_{n}"] = "met" if row["rss_mb"] < peer["rss_mb"] else "missed"
        ten_x = row["cpu_share_of_one_core"] * 10 <= peer["cpu_share_of_one_core"]
        out[f"cpu_10x_below_peer_{n}"] = "met" if ten_x else "missed"
    return out


def main(
    out: Path,
    workdir: Path,
    bundle: Path | None,
    devices: list[int],
    peer_name: str,
    n_sims: int,
    rounds: int,
    warmup: float,
    measure: float,
) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    peer: tuple[Path, Path] | None = None
    installed = None
    if peer_name == "thingsboard":
        t0 = time.monotonic()
        python = ensure_peer(workdir / "peer-venv")
        installed = round(time.monotonic() - t0, 1)
        peer = (python, peer_package_dir(python))
    bundle = bundle or train_pump_bundle(workdir / "bundle-1", 1.0, speed=1.0, teacher_steps=0)
    runs: list[dict[str, Any]] = []
    runs_dir = workdir / "runs"
    shutil.rmtree(runs_dir, ignore_errors=True)
    for n in devices:
        runs += run_devices(n, runs_dir, bundle, peer, n_sims, rounds, warmup, measure)
    summary = summarize(runs)
    targets = verdicts(summary)
    result = {
        "machine": machine(), "peer": peer_name, "peer_pins": list(PEER_PINS) if peer else [],
        "peer_install_or_check_s": installed, "warmup_s": warmup, "rounds": rounds,
        "summary": summary, "targets": targets, "runs": runs,
    }  # fmt: skip
    header = ["devices", "gateway", "runs", "CPU % of one core", "RSS MB", "peak RSS MB",
              "Modbus requests/poll", "messages/s", "values/s"]  # fmt: skip
    rows = [
        [str(r["devices"]), r["gateway"], str(r["runs"]), f"{100 * r['cpu_share_of_one_core']:.2f}",
         f"{r['rss_mb']:.1f}", f"{r['peak_rss_mb']:.1f}", f"{r['modbus_requests_per_poll']:g}",
         f"{r['messages_per_s']:g}", f"{r['values_per_s']:g}"]
        for r in summary
    ]  # fmt: skip
    print_table(f"agent vs {peer_name} (medians of runs, warm-up {warmup:g} s)", header, rows)
    for name, verdict in targets.items():
        print(f"  {name}: {verdict}")
    write_json(out, result)
    return 0
