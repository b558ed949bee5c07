"""Write a CSV of simulated operation as a client polling the device through its profile sees it."""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.sources.modbus.profile import ModbusProfile
from simulators.machine import Machine
from simulators.pump import PumpSimulator
from simulators.registers import quantize


def record(
    profile: ModbusProfile,
    out: Path,
    samples: int,
    period: float,
    seed: int = 0,
    speed: float = 1.0,
    tick: float = 0.01,
    start_ts: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z: fixed, so files are reproducible
    sim: Machine | None = None,
    warmup: float = 0.0,
) -> Path:
    """`period` and timestamps are in wall-clock seconds of a server running at `speed`; the
    physics advances `tick * speed` simulated seconds per step, exactly as the server does."""
    sim = sim if sim is not None else PumpSimulator(seed)
    names = [p.name for p in profile.points if p.is_numeric]
    steps_per_sample = max(1, round(period / tick))
    dt = period * speed / steps_per_sample
    # Run the process for `warmup` simulated seconds first, so a later stretch of the same unit
    # can be recorded (e.g. test data that follows the training data).
    while sim.state.t < warmup:
        sim.step(min(dt * steps_per_sample, warmup - sim.state.t))
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        labelled = sim.scenario is not None
        w.writerow(["timestamp", *names, *(["label"] if labelled else [])])
        for i in range(samples):
            for _ in range(steps_per_sample):
                sim.step(dt)
            values = quantize(profile, sim.measure())
            ts = datetime.fromtimestamp(start_ts + warmup / speed + i * period, UTC)
            row: list[str] = [ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")]
            row += [f"{values[n]:.6g}" if math.isfinite(values[n]) else "" for n in names]
            if labelled:
                assert sim.scenario is not None
                row.append(
                    sim.scenario.name if sim.scenario.severity(sim.state.t) > 0 else "normal"
                )
            w.writerow(row)
    return out
