"""`edge-agent bench fleet`: time for N real agent processes to converge to a new bundle over one
local Mosquitto, and the bytes that moved (issue 15 item 4).

Per count: a fresh broker (`$SYS` every second for its byte counters), one simulated pump PLC
that every agent polls (once a second: the agents' own cost is what is measured, not the
PLC's), N agents with fleet commands on, each with its own config, bundle folder and state. The
operator side is `edge_agent.fleet.operator` as `edge-agent fleet deploy` runs it, without a
canary: time to converge runs from the first publish to the last `model_loaded`. Bytes: what the
operator published (command and chunks) and what the broker sent in that time by its `$SYS`
counter (everything: the fan-out to N gateways, their answers and statuses, protocol overhead).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from bench.common import PUMP_PROFILE, PUMP_SIGNALS, machine, print_table, train_pump_bundle
from edge_agent.fleet.archive import pack_bundle
from edge_agent.fleet.commands import Target
from edge_agent.fleet.operator import BrokerOptions, Operator, build_deploy
from edge_agent.inference.bundle import (
    Bundle,
    load_private_key,
    read_manifest,
    sign_bundle,
    write_key_pair,
    write_manifest,
)
from simulators.broker import Mosquitto
from simulators.process import start_modbus_sim

PERIOD, SPEED = 0.05, 20.0
ONLINE_TIMEOUT_S = 600.0
CONVERGE_TIMEOUT_S = 300.0


def _config(d: Path, name: str, sim_port: int, broker_port: int, v1: Path, pub: Path) -> Path:
    d.mkdir(parents=True)
    bundle = Path(shutil.copytree(v1, d / "bundles" / "pump-1"))
    cfg = {
        "identity": {"site": "bench", "gateway": name},
        "sources": [
            {
                "type": "modbus_tcp", "name": "pump_plc", "host": "127.0.0.1", "port": sim_port,
                "profile": "acme_pump_plc_fw1", "poll_interval_s": 1.0, "timeout_s": 2.0,
            }
        ],
        "assets": [
            {
                "name": "pump-1", "sample_period_s": PERIOD, "max_age_s": 3.0,
                "bundle": str(bundle),
                "signals": [{"name": s, "source": "pump_plc"} for s in PUMP_SIGNALS],
            }
        ],
        "upstream": {
            "mqtt": {"host": "127.0.0.1", "port": broker_port},
            "outbox": {"dir": str(d / "state")},
        },
        "bundles": {"trusted_keys": [str(pub)]},
        "fleet": {"enabled": True},
        "logging": {"level": "WARNING"},
        "observability": {"metrics": {"port": 0}},
    }  # fmt: skip
    path = d / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class _SysBytes:
    """The broker's `$SYS/broker/bytes/sent` counter, as last published."""

    def __init__(self) -> None:
        self.sent = -1
        self.updated = asyncio.Event()

    async def follow(self, port: int) -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier="bench-fleet-sys") as c:
            await c.subscribe("$SYS/broker/bytes/sent")
            async for msg in c.messages:
                with contextlib.suppress(ValueError):
                    self.sent = int(
                        str(msg.payload.decode() if isinstance(msg.payload, bytes) else msg.payload)
                    )
                    self.updated.set()

    async def next_value(self) -> int:
        self.updated.clear()
        await asyncio.wait_for(self.updated.wait(), 5.0)
        return self.sent


async def _deploy(port: int, n: int, v2: Path, key: Path) -> dict[str, Any]:
    op = Operator(BrokerOptions(port=port), load_private_key(key))
    sysbytes = _SysBytes()
    follower = asyncio.create_task(sysbytes.follow(port))
    try:
        async with op.connected():
            started = time.monotonic()
            while True:
                found = [g for g in await op.discover("bench", "*") if g.online]
                if len(found) >= n:
                    break
                if time.monotonic() - started > ONLINE_TIMEOUT_S:
                    raise TimeoutError(f"only {len(found)} of {n} agents online")
                await asyncio.sleep(1.0)
            online_s = time.monotonic() - started
            before = await sysbytes.next_value()
            target = Target(gateways=[g.name for g in found])
            cmd, msgs = build_deploy(
                pack_bundle(v2), "pump-1", "bench-v2", target, op.roots(found), op.key,
                time.time(), 3600,
            )  # fmt: skip
            t0 = time.monotonic()
            await op.run_phase(cmd, msgs, found, t0 + CONVERGE_TIMEOUT_S)
            converge_s = time.monotonic() - t0
            after = await sysbytes.next_value()
        ok = sum(g.ok and g.models.get("pump-1") == "bench-v2" for g in found)
        return {
            "agents": n,
            "all_online_s": round(online_s, 1),
            "converged": ok,
            "failed": n - ok,
            "converge_s": round(converge_s, 2),
            "bundle_bytes": len(pack_bundle(v2)),
            "operator_published_bytes": op.bytes_published,
            "broker_sent_bytes": after - before,
        }
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


def run_case(n: int, workdir: Path, v1: Path, v2: Path, key: Path, pub: Path) -> dict[str, Any]:
    case = workdir / f"agents-{n}"
    shutil.rmtree(case, ignore_errors=True)
    broker = Mosquitto(
        case / "broker", extra_config="sys_interval 1\nmax_queued_messages 100000\n"
    ).start()
    sim = start_modbus_sim(PUMP_PROFILE, seed=1, speed=SPEED, log=case / "sim.log")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(n):
            cfg = _config(case / f"gw-{i:03d}", f"gw-{i:03d}", sim.port, broker.port, v1, pub)
            log = (cfg.parent / "agent.log").open("ab")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "edge_agent", "run", "--config", str(cfg)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        return asyncio.run(_deploy(broker.port, n, v2, key))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        sim.stop()
        broker.stop()


def main(counts: list[int], out: Path, workdir: Path | None) -> int:
    with tempfile.TemporaryDirectory(prefix="edge-bench-fleet-") as tmp:
        wd = workdir or Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        v1 = train_pump_bundle(wd / "bundle", PERIOD, SPEED)
        keys = wd / "keys"
        if not (keys / "fleet.key").exists():
            write_key_pair(keys, "fleet")
        key, pub = keys / "fleet.key", keys / "fleet.pub"
        sign_bundle(v1, load_private_key(key))
        v2 = wd / "bundle-v2"
        shutil.rmtree(v2, ignore_errors=True)
        shutil.copytree(v1, v2)
        m = read_manifest(v2)
        m["model_version"] = "bench-v2"
        write_manifest(v2, m)
        sign_bundle(v2, load_private_key(key))
        Bundle.load(v2)
        cases = []
        for n in counts:
            print(f"fleet of {n} agents ...", flush=True)
            cases.append(run_case(n, wd, v1, v2, key, pub))
            print(json.dumps(cases[-1]), flush=True)
    result = {"machine": machine(), "cases": cases}
    print_table(
        "fleet deploy (no canary), one local Mosquitto",
        ["agents", "online after", "converged", "time to converge", "operator sent", "broker sent"],
        [
            [
                str(c["agents"]), f"{c['all_online_s']} s", f"{c['converged']}/{c['agents']}",
                f"{c['converge_s']} s", f"{c['operator_published_bytes']:,} B",
                f"{c['broker_sent_bytes']:,} B",
            ]
            for c in cases
        ],
    )  # fmt: skip
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")
    return 0 if all(c["failed"] == 0 for c in cases) else 1
