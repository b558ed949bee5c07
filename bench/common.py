"""Helpers shared by the performance benchmarks: a bundle trained from simulator data, process
figures from /proc, percentiles and the printed table."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PUMP_PROFILE = ROOT / "firmware_configs" / "acme_pump_plc_fw1.yaml"
PUMP_SIGNALS = [
    "motor_current", "motor_voltage", "vibration_de", "vibration_nde",
    "motor_temperature", "fluid_temperature", "discharge_pressure", "flow_rate",
]  # fmt: skip


def train_pump_bundle(
    out: Path,
    period: float,
    speed: float,
    samples: int = 12000,
    teacher_steps: int = 150,
    artifacts: dict[str, Any] | None = None,
) -> Path:
    """A real int8 bundle of the seed-1 pump (as the test suite trains it), sampled every `period`
    wall seconds of a simulator running at `speed`. Reused when `out` already holds one and no
    artifacts (the torch teacher) are wanted."""
    from edge_agent.inference.bundle import MANIFEST

    if (out / MANIFEST).exists() and artifacts is None:
        return out
    from edge_agent.csvdata import read_table
    from edge_agent.profiles import load_profile
    from edge_agent.training.train import TrainOptions, train_bundle
    from simulators.record import record

    out.parent.mkdir(parents=True, exist_ok=True)
    profile = load_profile(PUMP_PROFILE)
    # The physics step is a fixed share of the sample period, so every period costs the same.
    csv_path = record(
        profile, out.parent / f"normal-{period:g}.csv", samples, period, seed=1, speed=speed,
        tick=period / 5,
    )  # fmt: skip
    units = [profile.point(s).unit for s in PUMP_SIGNALS]
    train_bundle(
        [read_table(csv_path)],
        PUMP_SIGNALS,
        out,
        # With the fp32 twin: `bench detector` compares int8 with it.
        TrainOptions(
            progress=False, teacher_steps=teacher_steps, distill_windows=2048, keep_fp32=True
        ),
        units=units,
        name="pump-1",
        artifacts=artifacts,
    )
    return out


@dataclass(frozen=True)
class CpuSample:
    """utime + stime of a process (seconds) at a monotonic instant."""

    cpu_s: float
    at: float


def cpu_sample(pid: int) -> CpuSample:
    # Fields 14 and 15 of /proc/<pid>/stat, counted after the parenthesized command name, which
    # may itself contain spaces.
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return CpuSample(ticks / os.sysconf("SC_CLK_TCK"), time.monotonic())


def cpu_share(a: CpuSample, b: CpuSample) -> float:
    """Share of one core used between two samples (0.05 = 5 % of one core)."""
    return (b.cpu_s - a.cpu_s) / (b.at - a.at)


def rss_mb(pid: int) -> dict[str, float]:
    """Resident and peak resident memory (MiB) from /proc/<pid>/status."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def rss_by_mapping_mb(pid: int, top: int = 12) -> dict[str, float]:
    """Where a process's resident memory lies (MiB), from /proc/<pid>/smaps: per mapped file
    (its base name: a shared library's touched code and data), `[heap]`, and `[anon]` for the
    anonymous mappings (Python's object arenas, the libraries' own allocations); the `top`
    largest, the rest summed as `(other)`."""
    by: dict[str, int] = {}
    where = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if not parts[0].endswith(":"):  # a mapping's header: range perms offset dev inode [path]
            where = parts[5].rsplit("/", 1)[-1] if len(parts) > 5 else "[anon]"
        elif parts[0] == "Rss:":
            by[where] = by.get(where, 0) + int(parts[1])
    ranked = sorted(by.items(), key=lambda kv: -kv[1])
    out = {name: round(kb / 1024, 1) for name, kb in ranked[:top]}
    out["(other)"] = round(sum(kb for _, kb in ranked[top:]) / 1024, 1)
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with few runs p99 is the worst one)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def machine() -> dict[str, Any]:
    """The conditions a figure was measured under."""
    cpu = "unknown"
    with_open = Path("/proc/cpuinfo")
    if with_open.exists():
        for line in with_open.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(title)
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {path}")
