"""`edge-agent bench upstream`: figures for the upstream path, measured on this machine with a
real Mosquitto and the real SQLite outbox.

1. Outbox write cost: microseconds per `put` of a realistic ~1.3 KB alert, for
   `synchronous=normal` (survives a crash of the agent) and `full` (survives a power loss).
2. Alerts lost across an outage: the broker is stopped, alerts are generated while it is down,
   then it is started again; a consumer with a persistent session counts unique
   (alert_id, event). Compressed by default: the alerts a 10-minute outage would bring at
   `--outage-rate` alerts/s are generated at `--gen-rate` alerts/s; `--real-outage` keeps the
   broker down for the full `--outage-s` seconds instead.
3. Drain rate: a backlog of `--backlog` queued alerts published after connecting (messages/s,
   counting until the consumer has them all).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.alerts.messages import alert_payload, encode
from edge_agent.config import IdentityConfig, MqttConfig
from edge_agent.config import OutboxConfig as OutboxConfig
from edge_agent.config_base import BackoffConfig
from edge_agent.types import AlertEvent, AlertEventKind, Contribution
from edge_agent.upstream.mqtt import MqttPublisher
from edge_agent.upstream.outbox import Kind, Limits, Message, Outbox
from simulators.broker import Mosquitto, free_port

SITE, GATEWAY = "bench-site", "gw-bench"


@dataclass
class Options:
    workdir: Path
    write_samples: int = 5000
    outage_s: float = 600.0
    outage_rate: float = 1.0  # alerts per second during the outage (a very bad day)
    gen_rate: float = 100.0  # alerts per second when compressed
    real_outage: bool = False
    backlog: int = 10_000


def sample_alert(i: int, asset: str = "pump-1") -> dict[str, Any]:
    kind = (AlertEventKind.RAISED, AlertEventKind.UPDATED, AlertEventKind.CLEARED)[i % 3]
    event = AlertEvent(
        alert_id=str(uuid.uuid4()),
        event=kind,
        asset=asset,
        ts=time.time(),
        score=3.2,
        threshold=0.55,
        severity="critical",
        kind="anomaly",
        message=f"{asset}: anomaly {kind.value} (critical), score 3.2 is 5.8x the threshold "
        "0.55; top signals: vibration_de 7.1 mm/s (normal 1.9–3.1); motor_current 44.2 A "
        "(normal 38.7–40.9); flow_rate 31.0 m3/h (normal 35.2–41.0)",
        contributions=tuple(
            Contribution(f"signal_{k}", 0.125, 40.0 + k, 38.0, 41.0) for k in range(8)
        ),
        model_version="pump-1-20261124T050420Z-fe824c17",
    )
    return alert_payload(event, SITE, GATEWAY)


def measure_writes(workdir: Path, n: int, synchronous: str) -> dict[str, float]:
    box = Outbox(workdir / f"writes-{synchronous}", Limits(synchronous=synchronous))
    box.open()
    payload = encode(sample_alert(0))
    times = []
    for i in range(n):
        msg = Message(f"edge/{SITE}/{GATEWAY}/alerts/pump-{i % 4}", payload, 1, Kind.ALERT)
        t0 = time.perf_counter()
        box.put(msg)
        times.append((time.perf_counter() - t0) * 1e6)
    box.close()
    times.sort()
    return {
        "mean_us": round(statistics.fmean(times), 1),
        "p50_us": round(times[len(times) // 2], 1),
        "p99_us": round(times[int(len(times) * 0.99)], 1),
        "payload_bytes": len(payload),
    }


class Consumer:
    """Counts unique (alert_id, event) through a persistent MQTT 5 session."""

    def __init__(self, port: int) -> None:
        self.unique: set[tuple[str, str]] = set()
        self.total = 0
        self.last_at = 0.0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-consumer", protocol=mqtt.MQTTv5
        )
        # paho's hint says int, but it sleeps on the float: sub-second retries after the restart.
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            f"edge/{SITE}/{GATEWAY}/alerts/#", qos=1
        )
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("bench consumer could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self._lock:
            self.total += 1
            self.unique.add((body["alert_id"], body["event"]))
            self.last_at = time.monotonic()

    def count(self) -> int:
        with self._lock:
            return len(self.unique)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _broker_config(workdir: Path) -> str:
    d = workdir / "persist"
    d.mkdir(parents=True, exist_ok=True)
    # Started as root, mosquitto would switch user and could not write the persistence file.
    user = "user root\n" if os.geteuid() == 0 else ""
    return f"persistence true\npersistence_location {d}/\n{user}"


async def _wait(predicate: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def _run_publisher(port: int, state: Path) -> tuple[MqttPublisher, asyncio.Task[None]]:
    cfg = MqttConfig(host="127.0.0.1", port=port, backoff=BackoffConfig(initial_s=0.2, max_s=2.0))
    pub = MqttPublisher(
        cfg, IdentityConfig(site=SITE, gateway=GATEWAY), "bench", {}, outbox=OutboxConfig(dir=state)
    )
    return pub, asyncio.create_task(pub.run())


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def measure_outage(opts: Options) -> dict[str, Any]:
    n = int(opts.outage_s * opts.outage_rate)
    rate = opts.outage_rate if opts.real_outage else opts.gen_rate
    workdir = opts.workdir / "outage"
    broker = Mosquitto(workdir / "broker", port=free_port(), extra_config=_broker_config(workdir))
    broker.start()
    consumer = Consumer(broker.port)
    pub, task = await _run_publisher(broker.port, workdir / "state")
    try:
        if not await _wait(pub.connected.is_set, 10):
            raise RuntimeError("publisher did not connect")
        await asyncio.to_thread(broker.stop)
        await _wait(lambda: not pub.connected.is_set(), 10)
        t0 = time.monotonic()
        for i in range(n):
            # Absolute schedule: i / rate seconds after the outage began.
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            pub.submit_alert(f"pump-{i % 4 + 1}", sample_alert(i, f"pump-{i % 4 + 1}"))
        outage = time.monotonic() - t0
        queued = pub.outbox.stats.queued
        await asyncio.to_thread(broker.start)
        restarted = time.monotonic()
        await _wait(lambda: consumer.count() >= n, 120)
        delivered_after = consumer.last_at - restarted
    finally:
        await _stop(task)
        consumer.close()
        broker.stop()
    return {
        "alerts_generated": n,
        "alerts_received_unique": consumer.count(),
        "alerts_lost": n - consumer.count(),
        "redeliveries": consumer.total - consumer.count(),
        "queued_at_end_of_outage": queued,
        "outage_wall_s": round(outage, 2),
        "compressed": not opts.real_outage,
        "all_delivered_s_after_broker_restart": round(delivered_after, 2),
    }


async def measure_drain(opts: Options) -> dict[str, Any]:
    workdir = opts.workdir / "drain"
    port = free_port()
    cfg = MqttConfig(host="127.0.0.1", port=port, backoff=BackoffConfig(initial_s=0.1, max_s=0.2))
    pub = MqttPublisher(
        cfg,
        IdentityConfig(site=SITE, gateway=GATEWAY),
        "bench",
        {},
        outbox=OutboxConfig(dir=workdir),
    )
    for i in range(opts.backlog):
        pub.submit_alert(f"pump-{i % 4 + 1}", sample_alert(i, f"pump-{i % 4 + 1}"))
    with Mosquitto(workdir / "broker", port=port) as broker:
        consumer = Consumer(broker.port)
        task = asyncio.create_task(pub.run())
        try:
            await _wait(pub.connected.is_set, 10)
            t0 = time.monotonic()
            done = await _wait(lambda: consumer.count() >= opts.backlog, 300)
            elapsed = time.monotonic() - t0
        finally:
            await _stop(task)
            consumer.close()
    return {
        "backlog": opts.backlog,
        "drained": done,
        "seconds": round(elapsed, 2),
        "messages_per_s": round(opts.backlog / elapsed, 0),
    }


def run(opts: Options) -> dict[str, Any]:
    opts.workdir.mkdir(parents=True, exist_ok=True)
    return {
        "options": {k: str(v) for k, v in asdict(opts).items()},
        "write_cost": {
            s: measure_writes(opts.workdir, opts.write_samples, s) for s in ("normal", "full")
        },
        "outage": asyncio.run(measure_outage(opts)),
        "drain": asyncio.run(measure_drain(opts)),
    }


def table(r: dict[str, Any]) -> str:
    w, o, d = r["write_cost"], r["outage"], r["drain"]
    how = (
        f"compressed: {o['alerts_generated']} alerts of a {r['options']['outage_s']} s outage "
        f"generated in {o['outage_wall_s']} s"
        if o["compressed"]
        else f"real {o['outage_wall_s']} s outage"
    )
    rows = [
        ("outbox write, synchronous=normal", f"{w['normal']['mean_us']} µs mean, "
         f"{w['normal']['p99_us']} µs p99 ({w['normal']['payload_bytes']} B alert)"),
        ("outbox write, synchronous=full", f"{w['full']['mean_us']} µs mean, "
         f"{w['full']['p99_us']} µs p99"),
        ("alerts lost across outage", f"{o['alerts_lost']} of {o['alerts_generated']} ({how})"),
        ("redeliveries (de-duplicated)", str(o["redeliveries"])),
        ("all delivered after restart", f"{o['all_delivered_s_after_broker_restart']} s"),
        ("drain rate after reconnect", f"{d['messages_per_s']:.0f} msg/s "
         f"({d['backlog']} alerts in {d['seconds']} s)"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def main(out: Path, workdir: Path | None, real_outage: bool, backlog: int, gen_rate: float) -> int:
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        opts = Options(
            workdir=workdir or Path(tmp),
            real_outage=real_outage,
            backlog=backlog,
            gen_rate=gen_rate,
        )
        result = run(opts)
    print(table(result))
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")
    return 0 if result["outage"]["alerts_lost"] == 0 and result["drain"]["drained"] else 1
