"""`edge-agent bench modbus`: requests per poll cycle and registers per second of the agent's
Modbus TCP source against the simulator (a real pymodbus server in its own process, loopback).

The source's own `poll_once` runs back to back (no poll interval) for at most `cycles` cycles or
`max_seconds`: the figure is the ceiling of one source on one connection, with the simulator's
response time included. Cases: the 8 pump signals and every numeric point of the profile, each
with merged reads (the default: one request spans neighbouring registers up to `max_gap`) and
with `merge_reads: false` (one request per point, for devices that reject spanning reads).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PUMP_PROFILE, PUMP_SIGNALS, machine, print_table, write_json
from edge_agent.profiles import load_profile
from edge_agent.sources.modbus.config import ModbusTcpConfig
from edge_agent.sources.modbus.tcp import ModbusTcpSource
from simulators.process import start_modbus_sim


async def measure(
    port: int, points: list[str], merge: bool, cycles: int, max_seconds: float
) -> dict[str, Any]:
    cfg = ModbusTcpConfig.model_validate(
        {"type": "modbus_tcp", "name": "bench", "host": "127.0.0.1", "port": port,
         "profile": "acme_pump_plc_fw1", "merge_reads": merge, "timeout_s": 2.0}
    )  # fmt: skip
    source = ModbusTcpSource(cfg, load_profile(PUMP_PROFILE), points)
    async with source:
        await source.poll_once(time.time())  # connect and read the identity once, untimed
        requests0, polls0 = source.stats.requests, source.stats.polls
        deadline = time.perf_counter() + max_seconds
        t0 = time.perf_counter()
        bad = 0
        for _ in range(cycles):
            batch = await source.poll_once(time.time())
            bad += sum(1 for r in batch.readings if r.quality != 0)
            if time.perf_counter() > deadline:
                break
        elapsed = time.perf_counter() - t0
    polls = source.stats.polls - polls0
    requests = source.stats.requests - requests0
    registers_per_poll = sum(b.count for b in source.blocks)
    return {
        "points": len(points),
        "merge_reads": merge,
        "requests_per_poll": round(requests / polls, 2),
        "registers_per_poll": registers_per_poll,
        "polls": polls,
        "seconds": round(elapsed, 3),
        "polls_per_s": round(polls / elapsed, 1),
        "ms_per_poll": round(elapsed / polls * 1000, 3),
        "requests_per_s": round(requests / elapsed, 1),
        "registers_per_s": round(registers_per_poll * polls / elapsed),
        "values_per_s": round(len(points) * polls / elapsed),
        "bad_readings": bad,
    }


def run(cycles: int, max_seconds: float, log: Path) -> dict[str, Any]:
    profile = load_profile(PUMP_PROFILE)
    every = [p.name for p in profile.points if p.is_numeric]
    sim = start_modbus_sim(PUMP_PROFILE, seed=1, port=0, log=log)
    try:
        cases = [
            asyncio.run(measure(sim.port, pts, merge, cycles, max_seconds))
            for pts in (PUMP_SIGNALS, every)
            for merge in (True, False)
        ]
    finally:
        sim.stop()
    return {"machine": machine(), "cases": cases}


def main(out: Path, cycles: int, max_seconds: float) -> int:
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        result = run(cycles, max_seconds, Path(tmp) / "sim.log")
    print_table(
        "Modbus TCP source against the simulator, loopback, polls back to back",
        ["points", "merged", "requests/poll", "registers/poll", "ms/poll", "polls/s",
         "registers/s", "values/s"],
        [
            [str(c["points"]), "yes" if c["merge_reads"] else "no", str(c["requests_per_poll"]),
             str(c["registers_per_poll"]), str(c["ms_per_poll"]), str(c["polls_per_s"]),
             f"{c['registers_per_s']:,}", f"{c['values_per_s']:,}"]
            for c in result["cases"]
        ],
    )  # fmt: skip
    write_json(out, result)
    return 0 if all(c["bad_readings"] == 0 for c in result["cases"]) else 1
