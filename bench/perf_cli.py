"""Command line of the performance benchmarks: `edge-agent bench stream|detector|e2e|footprint|
modbus|all`, added by `bench/cli.py`. The benchmark modules are imported only when their
sub-command runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

Handler = Callable[[argparse.Namespace], int]
# The cases of `bench footprint` (its module is not imported until the sub-command runs).
CASE_NAMES = ("idle", "modbus-1", "modbus-10", "modbus-100", "all-protocols")


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def add_perf_parsers(bench: Any, handler: Handler) -> None:
    """Add the sub-commands to the `bench` sub-parsers; each writes bench-<name>.json."""
    p = bench.add_parser("stream", help="values/s through assembler + windows + scaler")
    p.add_argument("--values", type=int, default=2_000_000, help="signal values per case")
    p.add_argument("--assets", default="1,10,100", help="comma-separated asset counts")
    p.add_argument("--max-seconds", type=float, default=30.0, help="bound per case")
    p.add_argument("--json", default="bench-stream.json")
    p.set_defaults(func=handler, perf="stream")

    p = bench.add_parser(
        "detector", help="µs/window for int8 and fp32 students and the teacher; sizes"
    )
    p.add_argument("--calls", type=int, default=2000, help="calls per case (teacher: 1/20)")
    p.add_argument("--batches", default="10,100", help="batched sizes (windows of N assets)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="bound per case")
    p.add_argument("--workdir", help="keep the bench bundle and teacher here (reused)")
    p.add_argument("--bundle", help="time this bundle (no teacher unless --workdir has one)")
    p.add_argument(
        "--untrained-teacher",
        action="store_true",
        help="with --bundle and no saved teacher: time the teacher architecture untrained",
    )
    p.add_argument(
        "--before",
        action="store_true",
        help="also time the graphs shipped before issue 16 (ConvTranspose, QDQ int8), built "
        "from the workdir's torch student",
    )
    p.add_argument(
        "--untrained-student",
        action="store_true",
        help="with --bundle and no saved student: build --before (and a missing fp32 twin) "
        "from the student architecture untrained",
    )
    p.add_argument(
        "--cold-calls",
        type=int,
        default=20,
        help="calls at batch 1 and the largest batch, each after --idle-s of sleep, as an agent "
        "calls at its sample rate (0: none)",
    )
    p.add_argument("--idle-s", type=float, default=0.2, help="sleep before each cold call")
    p.add_argument("--json", default="bench-detector.json")
    p.set_defaults(func=handler, perf="detector")

    p = bench.add_parser("e2e", help="fault onset → alert at a subscriber, p50/p99 over runs")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument(
        "--scenario", default="cavitation",
        choices=["cavitation", "rotor_imbalance", "vibration_step"],
    )  # fmt: skip
    p.add_argument(
        "--period", type=float, default=0.05,
        help="sample period of the bench bundle, s (1: real time, no acceleration)",
    )  # fmt: skip
    p.add_argument("--at", type=float, default=300.0, help="onset, simulated seconds")
    p.add_argument("--bundle", help="bundle to use (default: train one at 0.05 s, 20x)")
    p.add_argument("--workdir", help="keep runs and the bench bundle here (reused)")
    p.add_argument("--json", default="bench-e2e.json")
    p.set_defaults(func=handler, perf="e2e")

    p = bench.add_parser("footprint", help="RSS and CPU share of a running agent")
    p.add_argument("--cases", default=",".join(CASE_NAMES), help="comma-separated")
    p.add_argument("--sims", type=int, default=4, help="Modbus simulator processes to share")
    p.add_argument("--warmup", type=float, default=45.0, help="seconds before measuring")
    p.add_argument("--measure", type=float, default=60.0, help="seconds measured")
    p.add_argument("--bundle", help="bundle to use (default: train one at 1 s)")
    p.add_argument("--workdir", help="keep runs and the bench bundle here (reused)")
    p.add_argument("--json", default="bench-footprint.json")
    p.set_defaults(func=handler, perf="footprint")

    p = bench.add_parser("modbus", help="requests per poll and registers/s against the simulator")
    p.add_argument("--cycles", type=int, default=2000, help="polls per case")
    p.add_argument("--max-seconds", type=float, default=10.0, help="bound per case")
    p.add_argument("--json", default="bench-modbus.json")
    p.set_defaults(func=handler, perf="modbus")

    p = bench.add_parser("all", help="stream, detector, modbus, e2e, footprint with defaults")
    p.add_argument("--workdir", default="bench-perf", help="bundles are trained once, here")
    p.add_argument("--out", default=".", help="directory for the bench-*.json files")
    p.set_defaults(func=handler, perf="all")


def run_perf(args: argparse.Namespace) -> int:
    name: str = args.perf
    if name == "stream":
        from bench.stream import main as stream

        assets = [int(a) for a in args.assets.split(",")]
        return stream(Path(args.json), args.values, args.max_seconds, assets)
    if name == "detector":
        from bench.detector import main as detector

        batches = [int(b) for b in args.batches.split(",")]
        return detector(
            Path(args.json), _path(args.workdir), _path(args.bundle), args.calls,
            args.max_seconds, batches, args.untrained_teacher, args.before, args.untrained_student,
            args.cold_calls, args.idle_s,
        )  # fmt: skip
    if name == "e2e":
        from bench.e2e import main as e2e

        return e2e(
            Path(args.json), _path(args.workdir), _path(args.bundle), args.runs, args.scenario,
            args.at, args.period,
        )  # fmt: skip
    if name == "footprint":
        from bench.footprint import main as footprint

        return footprint(
            Path(args.json), _path(args.workdir), _path(args.bundle), args.cases.split(","),
            args.sims, args.warmup, args.measure,
        )  # fmt: skip
    if name == "modbus":
        from bench.modbus import main as modbus

        return modbus(Path(args.json), args.cycles, args.max_seconds)
    return run_all(Path(args.workdir), Path(args.out))


def run_all(workdir: Path, out: Path) -> int:
    """Every benchmark with its defaults, sharing one work directory (bundles trained once)."""
    from bench import detector, e2e, footprint, modbus, stream

    out.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    rcs = [
        stream.main(out / "bench-stream.json", 2_000_000, 30.0, [1, 10, 100]),
        detector.main(
            out / "bench-detector.json", workdir, None, 2000, 20.0, [10, 100], before=True
        ),
        modbus.main(out / "bench-modbus.json", 2000, 10.0),
        e2e.main(out / "bench-e2e.json", workdir, None, 10, "cavitation", 300.0),
        footprint.main(
            out / "bench-footprint.json", workdir, None, list(CASE_NAMES), 4, 45.0, 60.0
        ),
    ]
    return max(rcs)
