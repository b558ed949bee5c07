"""`edge-agent bench stream`: signal values per second through the pure stream stages
(assembler → stuck-sensor check → windows → scaler) when sources deliver batches, for 1, 10
and 100 assets.

Each asset has 8 signals from its own source; every source delivers one batch of 8 readings per
grid instant, as a Modbus poll cycle does. The batches are built before the clock starts (they are
the sources' work, not the stages'); the timed loop is exactly what `AssetPipeline.push` does with
them up to the detector: assembler samples (with the stuck-sensor check), the window ring buffer,
and the scaler on each window that is due. One process, one thread: the figure is for one core.
Values per second of wall time and of the process's CPU time are both reported: on a shared
machine the process waits for a core, which wall time counts and CPU time does not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, print_table, write_json
from edge_agent.stream.assembler import Assembler
from edge_agent.stream.normalize import Scaler
from edge_agent.stream.windows import WindowBuffer
from edge_agent.types import Batch, Reading

SIGNALS = 8
WINDOW, HOP = 32, 4
PERIOD = 1.0


@dataclass
class StreamResult:
    assets: int
    values: int
    samples: int
    windows: int
    seconds: float
    cpu_seconds: float

    @property
    def values_per_s(self) -> float:
        return self.values / self.seconds

    @property
    def values_per_cpu_s(self) -> float:
        return self.values / max(self.cpu_seconds, 1e-9)


def make_batches(assets: int, instants: int, seed: int = 0) -> list[list[Batch]]:
    """instants × assets batches of 8 random readings each, on a 1 s grid."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(instants, assets, SIGNALS)).tolist()
    points = [f"p{j}" for j in range(SIGNALS)]
    return [
        [
            Batch(f"src{a}", 1_767_225_600.0 + k * PERIOD,
                  tuple(Reading(p, v) for p, v in zip(points, row[a], strict=True)))
            for a in range(assets)
        ]
        for k, row in enumerate(values)
    ]  # fmt: skip


def run_stages(assets: int, batches: list[list[Batch]], max_seconds: float) -> StreamResult:
    stages = [
        (
            Assembler(
                {(f"src{a}", f"p{j}"): j for j in range(SIGNALS)},
                PERIOD,
                3 * PERIOD,
                stuck_after=[WINDOW] * SIGNALS,
            ),
            WindowBuffer(WINDOW, HOP, SIGNALS),
        )
        for a in range(assets)
    ]
    scaler = Scaler([0.0] * SIGNALS, [1.0] * SIGNALS)
    samples = windows = values = 0
    deadline = time.perf_counter() + max_seconds
    t0, cpu0 = time.perf_counter(), time.process_time()
    for row in batches:
        for (assembler, buffer), batch in zip(stages, row, strict=True):
            values += len(batch.readings)
            for sample in assembler.push(batch):
                samples += 1
                window = buffer.push(sample)
                if window is not None:
                    windows += 1
                    scaler.apply(window)
        if time.perf_counter() > deadline:
            break
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return StreamResult(assets, values, samples, windows, seconds, cpu)


def run(values_per_case: int, max_seconds: float, asset_counts: list[int]) -> dict[str, Any]:
    results = []
    for n in asset_counts:
        instants = max(WINDOW + HOP, values_per_case // (n * SIGNALS))
        batches = make_batches(n, instants)
        run_stages(n, batches[: min(len(batches), WINDOW + 2 * HOP)], max_seconds)  # warm-up
        r = run_stages(n, batches, max_seconds)
        results.append(
            {
                "assets": n,
                "signals_per_asset": SIGNALS,
                "values": r.values,
                "samples": r.samples,
                "windows": r.windows,
                "seconds": round(r.seconds, 4),
                "values_per_s": round(r.values_per_s),
                "cpu_seconds": round(r.cpu_seconds, 4),
                "values_per_cpu_s": round(r.values_per_cpu_s),
                "us_per_batch": round(r.seconds / (r.values / SIGNALS) * 1e6, 2),
            }
        )
    return {
        "machine": machine(),
        "window": WINDOW,
        "hop": HOP,
        "target_values_per_s": 1_000_000,
        "cases": results,
    }


def main(out: Path, values: int, max_seconds: float, assets: list[int]) -> int:
    result = run(values, max_seconds, assets)
    print_table(
        "stream stages: assembler → windows → scaler, one core, sources deliver 8-value batches",
        ["assets", "values", "seconds", "values/s", "values/CPU-s", "µs/batch", "≥ 1,000,000/s"],
        [
            [str(c["assets"]), str(c["values"]), f"{c['seconds']:.3f}", f"{c['values_per_s']:,}",
             f"{c['values_per_cpu_s']:,}", f"{c['us_per_batch']}",
             "met" if c["values_per_s"] >= 1_000_000 else "missed"]
            for c in result["cases"]
        ],
    )  # fmt: skip
    write_json(out, result)
    return 0
