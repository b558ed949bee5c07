"""`edge-agent bench soak`: the agent as a plant runs it, over hours of simulated time, with the
things that go wrong in a plant happening to it (issues 12 and 19). Not a timed test.

Set-up: `--pumps` Modbus TCP pump simulators (the seed-1 pump the bench bundle is trained on, each
its own process, serving from the end of the training stretch on; normal pumps serve successive
stretches of the unit's life, so none of them repeats another or the training data), a scenario
per pump cycling through normal, cavitation, dropout, valve closure, stuck sensor and bearing wear
(`--scenarios`; faults begin at a third of the run); one MQTT sensor gateway
simulator feeding one more asset; a real Mosquitto keeping sessions; the agent as `edge-agent
run` in its own process, score telemetry on. Everything runs `--speed` times faster than real
time (20×: ten wall minutes are 3.3 simulated hours).

What happens to it: junk on the MQTT sensor topics every few seconds (not JSON, a 5,000-digit
number, a timestamp in 2100, a wrong type); the broker stopped for `--outage` seconds at 40 % of
the run; the agent SIGKILLed and restarted at 70 %.

Reported:
- alerts logged by the agent (its log, every process) vs received by a subscriber (de-duplicated
  on alert id and event): lost = logged − received (target 0);
- the agent's resident memory: growth per simulated day of each process, over the second half
  of its samples (after its warm-up);
- the longest stretch (simulated seconds) any asset went without a scored window, from its score
  telemetry, outside the restart;
- per pump, as issue 19 counts them: `raised` alerts before the fault (false alerts, per
  asset-hour on the normal pumps), alerts per fault episode, raise/clear cycles, time from the
  fault's onset to the first `raised`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    PUMP_PROFILE,
    PUMP_SIGNALS,
    ROOT,
    machine,
    print_table,
    rss_mb,
    train_pump_bundle,
    write_json,
)
from simulators.broker import Mosquitto, free_port
from simulators.process import SimProcess, start_modbus_sim, start_sim

SITE, GATEWAY = "soak", "gw-soak"
SCENARIOS = ("none", "cavitation", "dropout", "valve_closure", "stuck_sensor", "bearing_wear")
# Bad data by design: their alerts are data-quality matters, not machine faults (issue 19).
DATA_FAULTS = frozenset({"dropout", "stuck_sensor"})
MQTT_TOPIC = "plant/soak/pump-mqtt/telemetry"
JUNK: tuple[bytes, ...] = (
    b"not json {",
    b'{"ts": "2026-01-01T00:00:00Z", "motor": {"current_a": ' + b"9" * 5000 + b"}}",
    b'{"ts": "2100-01-01T00:00:00Z", "motor": {"current_a": 41.0}}',
    b'{"ts": true, "motor": {"current_a": "many"}}',
)
_ALERT_LOG = re.compile(r"alert (raised|updated|cleared) ([0-9a-f-]{36})")


@dataclass(frozen=True)
class SoakConfig:
    minutes: float = 10.0
    pumps: int = 6
    speed: float = 20.0
    outage_s: float = 20.0
    junk_every_s: float = 5.0
    sample_every_s: float = 10.0  # RSS samples
    # Every asset's `alert_quiet_period_s` (issue 19 episodes): seconds, "bundle"; None: the
    # agent's default (the bundle's).
    quiet_period: float | str | None = None
    # Simulated hours of the seed-1 pump the bench's bundle is trained on; the pumps then serve
    # from the end of that stretch on, so nothing they serve was in the training data.
    # A day: a bundle trained on a few hours raises on operating points they did not show.
    train_hours: float = 24.0
    scenarios: tuple[str, ...] = ()  # cycled over the pumps (empty: all of SCENARIOS)
    # The agent records each asset's input (`run --record-dir WORKDIR/record`): a false alert
    # can then be replayed offline through the same bundle (`edge-agent replay`) and taken apart.
    record: bool = False


@dataclass
class Watch:
    """Paho subscriber with a persistent session: alerts, events and telemetry as they arrive."""

    port: int
    alerts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    alert_order: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    telemetry: dict[str, list[float]] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-soak-sub", clean_session=False
        )
        base = f"edge/{SITE}/{GATEWAY}"
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(f"{base}/alerts/#", 1), (f"{base}/events", 1), (f"{base}/telemetry/#", 0)]
        )
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self.lock:
            if "/alerts/" in msg.topic:
                key = (body["alert_id"], body["event"])
                if key not in self.alerts or body["event"] == "updated":
                    self.alert_order.append((time.time(), body))
                self.alerts.setdefault(key, body)
            elif "/telemetry/" in msg.topic:
                ts = datetime.fromisoformat(body["ts"].replace("Z", "+00:00")).timestamp()
                self.telemetry.setdefault(body["asset"], []).append(ts)
            else:
                self.events[body["type"]] = self.events.get(body["type"], 0) + 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def agent_config(
    path: Path, bundle: Path, period: float, ports: list[int], broker: int,
    quiet_period: float | str | None = None,
) -> Path:  # fmt: skip
    backoff = {"initial_s": 0.2, "max_s": 2.0}

    def asset(name: str, source: str) -> dict[str, object]:
        a: dict[str, object] = {
            "name": name, "sample_period_s": period, "bundle": str(bundle),
            "signals": [{"name": s, "source": source} for s in PUMP_SIGNALS],
        }  # fmt: skip
        if quiet_period is not None:
            a["alert_quiet_period_s"] = quiet_period
        return a

    sources: list[dict[str, object]] = [
        {"type": "modbus_tcp", "name": f"plc{i}", "host": "127.0.0.1", "port": port,
         "profile": "acme_pump_plc_fw1", "poll_interval_s": period, "timeout_s": 0.5,
         "backoff": backoff}
        for i, port in enumerate(ports)
    ]  # fmt: skip
    sources.append(
        {"type": "mqtt", "name": "hub", "port": broker, "profile": "acme_sensor_gateway_mqtt",
         "backoff": backoff}
    )  # fmt: skip
    assets = [asset(f"pump-{i}", f"plc{i}") for i in range(len(ports))]
    assets.append(asset("pump-mqtt", "hub"))
    cfg = {
        "identity": {"site": SITE, "gateway": GATEWAY},
        "sources": sources,
        "assets": assets,
        "upstream": {
            "mqtt": {"host": "127.0.0.1", "port": broker, "backoff": backoff},
            "outbox": {"dir": str(path.parent / "state")},
            # Ten samples of data time: proof that each asset goes on scoring.
            "telemetry": {"enabled": True, "interval_s": max(0.1, 10 * period)},
        },
        "bundles": {"allow_unsigned": True},  # the bench's own bundle: a measurement
        "logging": {"level": "INFO"},
        "observability": {"metrics": {"port": 0}},  # any free port: never a fixed one
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _start_agent(config: Path, log: Path, record: Path | None) -> subprocess.Popen[bytes]:
    # faulthandler: a SIGABRT (sent when a stop overruns) writes every thread's stack to the log.
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)]
        + (["--record-dir", str(record)] if record is not None else []),
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )  # fmt: skip


STOP_LIMIT_S = 30.0  # systemd's default TimeoutStopSec is 90 s; a clean stop takes a few


def _stop(proc: subprocess.Popen[bytes]) -> float | None:
    """SIGTERM, as systemd stops the service: seconds until it exited, or None when it did not
    within `STOP_LIMIT_S` (then its stacks go to the log and it is killed)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # flushes the outbox before it exits
    try:
        proc.wait(STOP_LIMIT_S)
        return round(time.monotonic() - t0, 2)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        return None


def _junk(port: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-soak-junk")
    try:
        client.connect("127.0.0.1", port)
        client.loop_start()
        for payload in JUNK:
            client.publish(MQTT_TOPIC, payload, qos=1).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()
    except (OSError, RuntimeError, ValueError):
        pass  # the broker is down (the outage): junk waits for the next round


def _growth_per_day(samples: list[tuple[float, float]], speed: float) -> float | None:
    """MB per simulated day of one process, over the second half of its RSS samples: the first
    minutes fill the allocator's arenas, SQLite's page cache and the ONNX sessions (warm-up, a
    few MB once); a leak is the slope that remains. None with fewer than four samples."""
    half = samples[len(samples) // 2 :]
    if len(samples) < 4 or half[-1][0] <= half[0][0]:
        return None
    sim_days = (half[-1][0] - half[0][0]) * speed / 86_400
    return (half[-1][1] - half[0][1]) / sim_days


def run(cfg: SoakConfig, workdir: Path, bundle: Path | None = None) -> dict[str, Any]:
    """`bundle`: trained on the seed-1 pump at one sample per simulated second (default: the
    bench's own, trained once into `workdir`)."""
    period = 1.0 / cfg.speed  # one simulated second per sample
    samples = round(cfg.train_hours * 3600)
    if bundle is None:
        bundle = train_pump_bundle(
            workdir / f"bundle-{period:g}-{samples}", period=period, speed=cfg.speed,
            samples=samples,
        )  # fmt: skip
    wall = cfg.minutes * 60
    # The pumps serve from the end of the training stretch (`samples` simulated seconds) on.
    fault_at = samples + wall / 3 * cfg.speed  # simulated seconds
    persist = workdir / "broker" / "persist"
    persist.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(
        workdir / "broker", port=free_port(),
        extra_config=f"persistence true\npersistence_location {persist}/\n"
        + ("user root\n" if os.geteuid() == 0 else ""),
    )  # fmt: skip
    broker.start()
    watch = Watch(broker.port)
    watch.start()
    cycle = cfg.scenarios or SCENARIOS
    scenarios = [cycle[i % len(cycle)] for i in range(cfg.pumps)]
    sims: list[SimProcess] = []
    procs: list[subprocess.Popen[bytes]] = []
    rss: list[list[tuple[float, float]]] = []
    log = workdir / "agent.log"
    log.write_text("")
    record = workdir / "record" if cfg.record else None
    restart: tuple[float, float] | None = None
    outage: tuple[float, float] | None = None
    started_at = time.time()
    try:
        run_s = wall * cfg.speed  # simulated seconds each pump serves
        normal = 0
        for scenario in scenarios:
            # Normal pumps serve successive stretches of the unit's life (the first from the end
            # of training, the next from where that one ends, ...): n of them are n distinct
            # stretches of normal operation, not n copies of one. Faulty pumps start where
            # training ended, their fault a third of the run later.
            start_at = samples + (normal * run_s if scenario == "none" else 0.0)
            normal += scenario == "none"
            sims.append(
                start_modbus_sim(PUMP_PROFILE, seed=1, scenario=scenario, at=fault_at,
                                 speed=cfg.speed, log=workdir / "sims.log", start_at=start_at,
                                 timeout=60.0 + start_at / 20_000)
            )  # fmt: skip
        sims.append(
            start_sim("mqtt", ["--profile", str(ROOT / "firmware_configs" /
                                                "acme_sensor_gateway_mqtt.yaml"),
                               "--broker-port", str(broker.port), "--seed", "1",
                               "--period", str(period), "--asset", "pump-mqtt"],
                      speed=cfg.speed, log=workdir / "sims.log")
        )  # fmt: skip
        config = agent_config(
            workdir / "agent.yaml",
            bundle,
            period,
            [s.port for s in sims[:-1]],
            broker.port,
            cfg.quiet_period,
        )
        started, started_at = time.monotonic(), time.time()
        procs.append(_start_agent(config, log, record))
        rss.append([])
        outage_done = killed = False
        next_junk = next_sample = started + 30.0  # after the warm-up
        while (now := time.monotonic()) - started < wall:
            elapsed = now - started
            if procs[-1].poll() is not None:
                tail = "\n".join(log.read_text().splitlines()[-5:])
                raise RuntimeError(f"the agent exited with {procs[-1].returncode}:\n{tail}")
            if not outage_done and elapsed >= 0.4 * wall:
                down = time.time() - started_at
                broker.stop()
                time.sleep(cfg.outage_s)
                broker.start()
                outage = (round(down, 1), round(time.time() - started_at, 1))
                outage_done = True
                continue
            if not killed and elapsed >= 0.7 * wall:
                procs[-1].send_signal(signal.SIGKILL)
                procs[-1].wait(10)
                down = time.time()
                procs.append(_start_agent(config, log, record))
                restart = (down, time.time())
                rss.append([])
                next_sample = now + 30.0
                killed = True
            if now >= next_junk:
                _junk(broker.port)
                next_junk = now + cfg.junk_every_s
            if now >= next_sample and procs[-1].poll() is None:
                rss[-1].append((now, rss_mb(procs[-1].pid)["VmRSS"]))
                next_sample = now + cfg.sample_every_s
            time.sleep(0.5)
        stop_s = _stop(procs[-1])
        time.sleep(2.0)  # the subscriber's last messages
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for s in sims:
            s.stop()
        watch.close()
        broker.stop()
    r = summarize(cfg, scenarios, sims, watch, log, rss, restart, fault_at, started_at, outage)
    r["stop_s"] = stop_s  # None: SIGTERM did not stop the agent within STOP_LIMIT_S
    return r


def summarize(
    cfg: SoakConfig,
    scenarios: list[str],
    sims: list[SimProcess],
    watch: Watch,
    log: Path,
    rss: list[list[tuple[float, float]]],
    restart: tuple[float, float] | None,
    fault_at: float,
    started_at: float,
    outage: tuple[float, float] | None,
) -> dict[str, Any]:
    logged = {(m.group(2), m.group(1)) for m in _ALERT_LOG.finditer(log.read_text())}
    received = set(watch.alerts)
    lost_keys = {k for k in logged - received if k[1] != "updated"}
    sim_hours = cfg.minutes * 60 * cfg.speed / 3600
    pumps: list[dict[str, Any]] = []
    for i, scenario in enumerate(scenarios):
        asset = f"pump-{i}"
        onset = sims[i].wall_time_of(fault_at)
        mine = [(at, b) for at, b in watch.alert_order if b["asset"] == asset]
        raised = [(at, b) for at, b in mine if b["event"] == "raised"]
        before = [b for at, b in raised if scenario == "none" or at < onset]
        after = [(at, b) for at, b in raised if scenario != "none" and at >= onset]
        pumps.append({
            "asset": asset,
            "scenario": scenario,
            "raised_before_fault": len(before),
            "alerts_in_fault": len(after),
            "raise_clear_cycles": sum(1 for _, b in mine if b["event"] == "cleared"),
            "first_raise_s": round((after[0][0] - onset) * cfg.speed, 1) if after else None,
        })  # fmt: skip
    normal_hours = sum(
        sim_hours if p["scenario"] == "none" else sim_hours / 3 for p in pumps
    )  # the stretch before each fault is normal too
    gaps: dict[str, float | None] = {}
    gap_at: dict[str, float] = {}
    for asset in [p["asset"] for p in pumps] + ["pump-mqtt"]:
        ts = sorted(watch.telemetry.get(asset, []))
        if not ts:
            gaps[asset] = None  # never scored: a failure of the run, not a gap
            continue
        worst, where = 0.0, ts[0]
        for a, b in itertools.pairwise(ts):
            if restart is not None and a <= restart[1] and b >= restart[0]:
                continue  # the restart itself: nothing can score while no agent runs
            if asset == "pump-mqtt" and outage is not None:
                down, up = started_at + outage[0], started_at + outage[1]
                if a <= up and b >= down:
                    continue  # its readings come through the broker that is down
            if b - a > worst:
                worst, where = b - a, a
        gaps[asset] = round(worst * cfg.speed, 1)  # simulated seconds
        gap_at[asset] = round(where - started_at, 1)  # wall seconds into the run
    growth = [_growth_per_day(r, cfg.speed) for r in rss]
    return {
        "config": asdict(cfg),
        "machine": machine(),
        "simulated_hours": round(sim_hours, 2),
        "alerts_logged": len(logged),
        "alerts_received": len(received),
        "alerts_lost": sorted(f"{a} {e}" for a, e in lost_keys),
        "rss_mb": [[round(mb, 1) for _, mb in r] for r in rss],
        "rss_growth_mb_per_sim_day": [None if g is None else round(g, 1) for g in growth],
        "longest_unscored_sim_s": gaps,
        "longest_unscored_began_s": gap_at,  # wall seconds into the run
        "outage_s": outage,  # (start, end), wall seconds into the run
        "false_alerts_per_asset_hour": round(
            sum(p["raised_before_fault"] for p in pumps) / normal_hours, 3
        ),
        "pumps": pumps,
        "events": dict(sorted(watch.events.items())),
        # SIGKILL to the first window the new process scored (start-up, window fill).
        "restart_to_first_score_s": _first_after(watch, restart),
    }


def _first_after(watch: Watch, restart: tuple[float, float] | None) -> float | None:
    if restart is None:
        return None
    after = [t for ts in watch.telemetry.values() for t in ts if t > restart[1]]
    return round(min(after) - restart[0], 1) if after else None


def main(cfg: SoakConfig, workdir: Path, out: Path, bundle: Path | None = None) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    r = run(cfg, workdir, bundle)
    print_table(
        f"soak: {r['simulated_hours']} simulated hours, {cfg.pumps} Modbus pumps + 1 MQTT asset, "
        f"broker outage, SIGKILL and restart, junk every {cfg.junk_every_s:g} s",
        ["measure", "value", "target"],
        [
            ["alerts logged / received", f"{r['alerts_logged']} / {r['alerts_received']}", ""],
            ["alerts lost", str(len(r["alerts_lost"])), "0"],
            ["RSS growth MB per simulated day",
             ", ".join("n/a" if g is None else f"{g:g}" for g in r["rss_growth_mb_per_sim_day"]),
             "< 5"],
            ["longest unscored (simulated s)", _worst_gap(r["longest_unscored_sim_s"]), ""],
            ["false alerts per asset-hour", f"{r['false_alerts_per_asset_hour']:g}", "≤ 0.02"],
            ["SIGTERM to exit (s)",
             "did not stop" if r["stop_s"] is None else f"{r['stop_s']:g}",
             f"< {STOP_LIMIT_S:g}"],
        ],
    )  # fmt: skip
    print_table(
        "per pump",
        ["asset", "scenario", "false before", "alerts in fault", "cycles", "first raise (sim s)"],
        [
            [p["asset"], p["scenario"], str(p["raised_before_fault"]), str(p["alerts_in_fault"]),
             str(p["raise_clear_cycles"]),
             "-" if p["first_raise_s"] is None else f"{p['first_raise_s']:g}"]
            for p in r["pumps"]
        ],
    )  # fmt: skip
    write_json(out, r)
    never = [a for a, g in r["longest_unscored_sim_s"].items() if g is None]
    if never:
        print(f"bench soak: never scored: {', '.join(never)}", file=sys.stderr)
    if r["stop_s"] is None:
        print(
            "bench soak: the agent did not stop on SIGTERM (stacks in agent.log)", file=sys.stderr
        )
    return 0 if not r["alerts_lost"] and not never and r["stop_s"] is not None else 1


def _worst_gap(gaps: dict[str, float | None]) -> str:
    known = [g for g in gaps.values() if g is not None]
    worst = f"{max(known):g}" if known else "-"
    never = len(gaps) - len(known)
    return worst + (f" ({never} asset(s) never scored)" if never else "")
