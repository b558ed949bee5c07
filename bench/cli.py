"""`edge-agent bench …`: the benchmarks' command line, added to `edge-agent` as a plugin.

The gateway's package does not import its tooling: `edge_agent.cli` finds this module through
the `edge_agent.commands` entry point of the tools distribution (tools/pyproject.toml), so a
gateway installed without the tools has no benchmark code and `edge-agent bench` says how to get
it. Everything heavy is imported inside the handlers: this module is loaded on every
`edge-agent` call where the tools are installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.perf_cli import add_perf_parsers, run_perf


def cmd_bench_quality(args: argparse.Namespace) -> int:
    from bench.quality import QualityConfig
    from bench.quality import main as bench_quality

    if args.mode == "forecast":
        from bench.forecast import ForecastBenchConfig
        from bench.forecast import main as bench_forecast
        from edge_agent.forecast.stage import ForecastParams

        fc = ForecastBenchConfig(
            seeds=args.seeds,
            first_seed=args.first_seed,
            normal_hours=args.normal_hours,
            params=ForecastParams(horizon_s=args.horizon_s),
        )
        json_out = Path(args.json if args.json != "bench-quality.json" else "bench-forecast.json")
        bundle = Path(args.bundle) if args.bundle else None
        return bench_forecast(fc, json_out, bundle, args.cpu_assets)
    if args.mode == "energy":
        from bench.energy import EnergyBenchConfig
        from bench.energy import main as bench_energy

        ecfg = EnergyBenchConfig(seeds=args.seeds, drift_hours=args.drift_hours)
        json_out = Path(args.json if args.json != "bench-quality.json" else "bench-energy.json")
        return bench_energy(ecfg, json_out, jobs=args.jobs)

    if args.mode == "asset-days":
        from bench.asset_days import FAULTS, AssetDaysConfig
        from bench.asset_days import main as bench_asset_days

        days = AssetDaysConfig(
            train_hours=args.train_hours if args.train_hours is not None else 24.0,
            stretches=args.stretches,
            stretch_hours=args.stretch_hours,
            scenarios=tuple(args.scenarios.split(",")) if args.scenarios else FAULTS,
            fault_starts=args.fault_starts,
            jobs=args.jobs,
            bundle=args.bundle,
        )
        return bench_asset_days(days, *_mode_paths(args, "asset-days"))
    if args.mode == "plant":
        from bench.plant import PlantConfig
        from bench.plant import main as bench_plant

        plant = PlantConfig(
            pump_runs=args.pump_runs,
            compressor_runs=args.compressor_runs,
            jobs=args.jobs,
            first_seed=args.first_seed,
        )
        return bench_plant(plant, *_mode_paths(args, "plant"))

    cfg = QualityConfig(
        seeds=args.seeds,
        train_hours=args.train_hours if args.train_hours is not None else 6.0,
        drift_hours=args.drift_hours,
        teacher_steps=args.teacher_steps,
        student_steps=args.student_steps,
        jobs=args.jobs,
        scenarios=args.scenarios.split(",") if args.scenarios else [],
    )
    return bench_quality(cfg, Path(args.workdir), Path(args.json))


def cmd_bench_upstream(args: argparse.Namespace) -> int:
    from bench.upstream import main as bench_upstream

    return bench_upstream(
        Path(args.json),
        Path(args.workdir) if args.workdir else None,
        real_outage=args.real_outage,
        backlog=args.backlog,
        gen_rate=args.gen_rate,
    )


def _mode_paths(args: argparse.Namespace, mode: str) -> tuple[Path, Path]:
    """A quality mode's own work directory and JSON file unless others were given."""
    workdir = args.workdir if args.workdir != "bench-quality" else f"bench-{mode}"
    json_out = args.json if args.json != "bench-quality.json" else f"bench-{mode}.json"
    return Path(workdir), Path(json_out)


def _quiet(value: str | None) -> float | str | None:
    return value if value in (None, "bundle") else float(value)


def cmd_bench_soak(args: argparse.Namespace) -> int:
    from bench.soak import SCENARIOS, SoakConfig
    from bench.soak import main as bench_soak

    scenarios = tuple(s for s in (args.scenarios or "").split(",") if s)
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        print(f"bench soak: unknown scenario(s) {', '.join(unknown)}; have {', '.join(SCENARIOS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    cfg = SoakConfig(
        minutes=args.minutes, pumps=args.pumps, speed=args.speed, outage_s=args.outage,
        junk_every_s=args.junk_every, quiet_period=_quiet(args.quiet_period),
        train_hours=args.train_hours, scenarios=scenarios, record=args.record,
    )  # fmt: skip
    bundle = Path(args.bundle) if args.bundle else None
    return bench_soak(cfg, Path(args.workdir), Path(args.json), bundle)


def cmd_bench_fleet(args: argparse.Namespace) -> int:
    from bench.fleet import main as bench_fleet

    counts = [int(x) for x in args.agents.split(",")]
    return bench_fleet(counts, Path(args.json), Path(args.workdir) if args.workdir else None)


def cmd_bench_peers(args: argparse.Namespace) -> int:
    from bench.peers import main as bench_peers

    return bench_peers(
        Path(args.json), Path(args.workdir), Path(args.bundle) if args.bundle else None,
        [int(x) for x in args.devices.split(",")], args.peer, args.sims, args.rounds,
        args.warmup, args.measure,
    )  # fmt: skip


def cmd_bench_memory(args: argparse.Namespace) -> int:
    from bench.memory import main as bench_memory

    bundle = Path(args.bundle) if args.bundle else None
    return bench_memory(Path(args.json), Path(args.workdir), bundle)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bench` and its sub-commands to `edge-agent`'s parser."""
    p = sub.add_parser("bench", help="measure figures on this machine (tools)")
    bench = p.add_subparsers(dest="bench", required=True)
    p = bench.add_parser(
        "upstream", help="outbox write cost, alerts lost across a broker outage, drain rate"
    )
    p.add_argument("--json", default="bench-upstream.json", help="where to write the figures")
    p.add_argument("--workdir", help="keep broker and outbox files here (default: temporary)")
    p.add_argument(
        "--real-outage",
        action="store_true",
        help="keep the broker down a real 10 minutes (default: same alerts, compressed)",
    )
    p.add_argument("--backlog", type=int, default=10_000, help="queued alerts for the drain rate")
    p.add_argument("--gen-rate", type=float, default=100.0, help="alerts/s when compressed")
    p.set_defaults(func=cmd_bench_upstream)
    p = bench.add_parser(
        "fleet", help="time for N agent processes to converge to a new bundle, bytes moved"
    )
    p.add_argument("--agents", default="20,50,100", help="comma-separated fleet sizes")
    p.add_argument("--json", default="bench-fleet.json", help="where to write the figures")
    p.add_argument("--workdir", help="keep the bundle, broker and agent files here (reused)")
    p.set_defaults(func=cmd_bench_fleet)
    p = bench.add_parser(
        "quality", help="detection quality per simulator scenario over seeds (extra: train)"
    )
    p.add_argument(
        "--mode",
        choices=["scenario", "plant", "forecast", "energy", "asset-days"],
        default="scenario",
        help="scenario: long clean recordings per fault scenario; plant: many short runs "
        "trained on minutes each, exported as historians do, subtle faults, baselines beside; "
        "forecast: time-to-limit forecasts on degradations over hours and on normal hours; "
        "energy: energy against the simulator's true power, efficiency alerts on impeller wear "
        "against false ones on normal operation (--seeds, --drift-hours, --jobs); asset-days: "
        "a bundle trained on a day of a pump, replayed offline over independent stretches of "
        "its later life (false alerts per asset-hour) and its faults (delay from onset); "
        "--train-hours (default 24 here), --stretches, --stretch-hours, --fault-starts, "
        "--scenarios, --bundle, --jobs",
    )
    p.add_argument("--stretches", type=int, default=32, help="asset-days mode: normal stretches")
    p.add_argument(
        "--stretch-hours", type=float, default=15.0, help="asset-days mode: hours per stretch"
    )
    p.add_argument(
        "--fault-starts", type=int, default=3, help="asset-days mode: runs per fault scenario"
    )
    p.add_argument(
        "--normal-hours", type=float, default=24.0, help="forecast mode: normal hours per seed"
    )
    p.add_argument(
        "--horizon-s", type=float, default=5400.0, help="forecast mode: the predicted horizon"
    )
    p.add_argument(
        "--bundle",
        help="forecast mode: also time asset pipelines of this bundle with and without "
        "forecasts (the CPU the forecast adds); asset-days mode: the bundle to judge, trained "
        "on the seed-1 pump's first --train-hours at one sample per simulated second",
    )
    p.add_argument(
        "--cpu-assets",
        type=int,
        default=100,
        help="forecast mode with --bundle: how many asset pipelines of each kind",
    )
    p.add_argument("--pump-runs", type=int, default=24, help="plant mode: pump runs")
    p.add_argument("--compressor-runs", type=int, default=8, help="plant mode: compressor runs")
    p.add_argument("--first-seed", type=int, default=0, help="plant and forecast modes: first seed")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument(
        "--train-hours", type=float, help="normal data to train on (default 6; asset-days: 24)"
    )
    p.add_argument("--drift-hours", type=float, default=6.0, help="normal data after training")
    p.add_argument("--teacher-steps", type=int, default=600)
    p.add_argument("--student-steps", type=int, default=1500)
    p.add_argument("--jobs", type=int, default=2, help="seeds trained in parallel (processes)")
    p.add_argument("--scenarios", help="comma-separated (default: all)")
    p.add_argument("--workdir", default="bench-quality")
    p.add_argument("--json", default="bench-quality.json")
    p.set_defaults(func=cmd_bench_quality)
    p = bench.add_parser(
        "soak", help="hours of simulated plant: outage, SIGKILL, junk; alerts lost, RSS growth"
    )
    p.add_argument("--minutes", type=float, default=10.0, help="wall minutes (× speed simulated)")
    p.add_argument("--pumps", type=int, default=6, help="Modbus pumps, scenarios cycled")
    p.add_argument("--speed", type=float, default=20.0, help="simulated seconds per wall second")
    p.add_argument("--outage", type=float, default=20.0, help="broker down this many seconds")
    p.add_argument("--junk-every", type=float, default=5.0, help="seconds between junk rounds")
    p.add_argument("--bundle", help="bundle trained at one sample per simulated second")
    p.add_argument(
        "--train-hours", type=float, default=24.0,
        help="simulated hours of the pump the bench's bundle is trained on (the pumps serve "
        "from the end of them on; with --bundle: how many that bundle was trained on)",
    )  # fmt: skip
    p.add_argument(
        "--scenarios", help="comma-separated pump scenarios, cycled (default: all; 'none': normal)"
    )
    p.add_argument(
        "--quiet-period",
        help="every asset's alert_quiet_period_s (episodes): seconds (0: off) or 'bundle' "
        "(default: the agent's default, the bundle's)",
    )
    p.add_argument(
        "--record", action="store_true",
        help="the agent records each asset's input in WORKDIR/record (replay a false alert)",
    )  # fmt: skip
    p.add_argument("--workdir", default="bench-soak")
    p.add_argument("--json", default="bench-soak.json")
    p.set_defaults(func=cmd_bench_soak)
    p = bench.add_parser(
        "peers", help="the agent beside ThingsBoard IoT Gateway on the same Modbus pumps: RSS, CPU"
    )
    p.add_argument("--devices", default="1,10,50", help="comma-separated device counts")
    p.add_argument(
        "--peer", choices=["thingsboard", "none"], default="thingsboard",
        help="the peer gateway (installed into WORKDIR/peer-venv); none: the agent alone",
    )  # fmt: skip
    p.add_argument("--rounds", type=int, default=2, help="A/B pairs per device count")
    p.add_argument("--sims", type=int, default=4, help="Modbus simulator processes to share")
    p.add_argument("--warmup", type=float, default=40.0, help="seconds before measuring")
    p.add_argument("--measure", type=float, default=30.0, help="seconds measured per run")
    p.add_argument("--bundle", help="bundle at 1 s samples (default: train one in WORKDIR)")
    p.add_argument("--workdir", default="bench-peers", help="peer virtualenv and bundle (reused)")
    p.add_argument("--json", default="bench-peers.json")
    p.set_defaults(func=cmd_bench_peers)
    p = bench.add_parser("memory", help="resident memory step by step: imports, session, scoring")
    p.add_argument("--bundle", help="bundle whose model is loaded (default: train one in WORKDIR)")
    p.add_argument("--workdir", default="bench-peers", help="where a default bundle is trained")
    p.add_argument("--json", default="bench-memory.json")
    p.set_defaults(func=cmd_bench_memory)
    add_perf_parsers(bench, run_perf)
