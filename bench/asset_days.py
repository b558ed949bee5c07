"""`edge-agent bench quality --mode asset-days`: one bundle trained on a day of a pump, replayed
offline over many independent stretches of the same unit's later life (false alerts per
asset-hour, issue 19) and over its faults (delay from onset to the first flagged sample).

`bench soak` measures the same false-alert rate live (Modbus, broker, restarts), at 20× and
about ten asset-days an hour of wall time. Here the unit's life is recorded the way the soak's
simulators serve it (the same physics step, one sample per simulated second, each stretch run up
to its start and then drawing its own chance: `simulators/machine.run_up`) and put through
`edge-agent replay`'s pipeline, so twenty asset-days take minutes and a change of the detector
or its calibration can be judged on hundreds of asset-hours before a soak confirms it live.

- normal: `stretches` stretches of `stretch_hours` each, one after the other from the end of
  the training day on; the `raised` alerts in them, pooled per asset-hour (with the Poisson
  95 % upper bound), and those on the training data itself;
- faults: each scenario on `fault_starts` of those stretch starts, the fault an hour in; the
  simulated seconds from onset to the first sample whose alert condition holds (None: missed),
  and `raised` alerts before the onset.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import PUMP_PROFILE, PUMP_SIGNALS, machine, print_table, write_json

# The faults the model is for (the data faults are data-quality events; `bench soak` has them).
FAULTS = (
    "cavitation", "valve_closure", "bearing_wear", "rotor_imbalance", "suction_restriction",
    "cooling_loss", "misalignment", "sensor_drift", "impeller_wear",
)  # fmt: skip
SEED = 1
FAULT_AFTER_S = 3600.0  # the fault begins this long into its stretch
FAULT_STRETCH_S = 3 * 3600.0
STEPS_PER_SAMPLE = 5  # the physics step of `edge-sim modbus` at 20× (0.2 simulated s)


@dataclass(frozen=True)
class AssetDaysConfig:
    train_hours: float = 24.0
    stretches: int = 32
    stretch_hours: float = 15.0
    scenarios: tuple[str, ...] = FAULTS
    fault_starts: int = 3
    jobs: int = 2
    bundle: str | None = None  # trained at one sample per simulated second (default: trained here)


def _record(out: Path, period: float, start_s: float, samples: int, scenario: str | None) -> Path:
    """`samples` seconds of the seed's pump from `start_s` (simulated), one sample per simulated
    second at `period` wall seconds, as `edge-sim modbus --start` serves it."""
    from edge_agent.profiles import load_profile
    from simulators.machine import run_up
    from simulators.pump import PumpSimulator
    from simulators.record import record
    from simulators.scenarios import make_scenario

    fault = make_scenario(scenario, start_s + FAULT_AFTER_S) if scenario else None
    sim = PumpSimulator(SEED, fault)
    run_up(sim, SEED, start_s)
    speed = 1.0 / period
    return record(
        load_profile(PUMP_PROFILE), out, samples, period, seed=SEED, speed=speed,
        tick=period / STEPS_PER_SAMPLE, sim=sim,
    )  # fmt: skip


def _replay(bundle_dir: Path, csv_path: Path) -> tuple[list[float], list[int], list[bool]]:
    """(timestamps of `raised` alerts, row of each, condition flag per row) through the agent's
    own pipeline (`edge-agent replay`)."""
    from edge_agent.csvdata import read_table
    from edge_agent.inference.bundle import Bundle
    from edge_agent.replay import replay
    from edge_agent.replay_cli import pipeline_for

    pipeline = pipeline_for(Bundle.load(bundle_dir))
    raised_ts: list[float] = []
    raised_rows: list[int] = []
    active: list[bool] = []
    for i, row in enumerate(replay(pipeline, read_table(csv_path))):
        active.append(row.alert_active)
        for e in row.events:
            if e.event.value == "raised":
                raised_ts.append(e.ts)
                raised_rows.append(i)
    return raised_ts, raised_rows, active


def _task(kind: str, bundle_dir: str, workdir: str, period: float, start_s: float,
          samples: int, scenario: str | None) -> dict[str, Any]:  # fmt: skip
    name = f"{scenario or 'normal'}-{start_s:.0f}"
    csv_path = _record(Path(workdir) / f"{name}.csv", period, start_s, samples, scenario)
    _, rows, active = _replay(Path(bundle_dir), csv_path)
    csv_path.unlink()  # hundreds of MB over a full run; the stretch is a pure function of its start
    out: dict[str, Any] = {"kind": kind, "start_s": start_s, "hours": samples / 3600.0}
    if scenario is None:
        out["raised_at_s"] = [start_s + r for r in rows]
        return out
    onset = round(FAULT_AFTER_S)
    first = next((i for i in range(onset, len(active)) if active[i]), None)
    out.update(
        scenario=scenario,
        delay_s=None if first is None else first - onset,
        raised_before_onset=sum(1 for r in rows if r < onset),
    )
    return out


def _bundle(cfg: AssetDaysConfig, workdir: Path) -> tuple[Path, float, int]:
    """(bundle, its sample period, training-day raises): the given bundle, or one trained with
    `edge-agent train`'s defaults on the first `train_hours` of the unit."""
    from edge_agent.csvdata import read_table
    from edge_agent.inference.bundle import Bundle

    samples = round(cfg.train_hours * 3600)
    if cfg.bundle is not None:
        bundle_dir = Path(cfg.bundle)
        period = Bundle.load(bundle_dir).manifest.sample_period_s
        normal = _record(workdir / "training-day.csv", period, 0.0, samples, None)
    else:
        from edge_agent.profiles import load_profile
        from edge_agent.training.train import TrainOptions, train_bundle

        period = 1.0
        normal = _record(workdir / "training-day.csv", period, 0.0, samples, None)
        bundle_dir = workdir / "bundle"
        profile = load_profile(PUMP_PROFILE)
        train_bundle(
            [read_table(normal)], PUMP_SIGNALS, bundle_dir, TrainOptions(progress=False),
            units=[profile.point(s).unit for s in PUMP_SIGNALS], name="pump-1",
        )  # fmt: skip
    _, rows, _ = _replay(bundle_dir, normal)
    return bundle_dir, period, len(rows)


def run(cfg: AssetDaysConfig, workdir: Path, log: Any = print) -> dict[str, Any]:
    import multiprocessing as mp

    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    bundle_dir, period, training_raises = _bundle(cfg, workdir)
    log(f"bundle {bundle_dir} ready after {time.monotonic() - t0:.0f} s")
    day = cfg.train_hours * 3600.0
    stretch = round(cfg.stretch_hours * 3600)
    tasks: list[tuple[Any, ...]] = [
        ("normal", str(bundle_dir), str(workdir), period, day + i * stretch, stretch, None)
        for i in range(cfg.stretches)
    ]
    # Faults start where normal stretches start, spread over the span those cover.
    every = max(1, cfg.stretches // max(1, cfg.fault_starts))
    for scenario in cfg.scenarios:
        tasks += [
            ("fault", str(bundle_dir), str(workdir), period, day + j * every * stretch,
             round(FAULT_STRETCH_S), scenario)
            for j in range(cfg.fault_starts)
        ]  # fmt: skip
    ctx = mp.get_context("spawn")
    with ctx.Pool(cfg.jobs) as pool:
        results = pool.starmap(_task, tasks)
    log(f"{len(tasks)} stretches replayed after {time.monotonic() - t0:.0f} s")
    normal = [r for r in results if r["kind"] == "normal"]
    hours = sum(r["hours"] for r in normal)
    raised = sum(len(r["raised_at_s"]) for r in normal)
    faults: dict[str, list[dict[str, Any]]] = {}
    for r in (r for r in results if r["kind"] == "fault"):
        faults.setdefault(r["scenario"], []).append(r)
    return {
        "config": asdict(cfg),
        "machine": machine(),
        "bundle": str(bundle_dir),
        "seconds": round(time.monotonic() - t0, 1),
        "raised_on_training_day": training_raises,
        "normal_asset_hours": hours,
        "false_alerts": raised,
        "false_alerts_per_asset_hour": raised / hours if hours else None,
        "false_alerts_per_asset_hour_upper95": _poisson_upper(raised) / hours if hours else None,
        "normal": normal,
        "faults": {
            s: {
                "detected": sum(r["delay_s"] is not None for r in rs),
                "runs": len(rs),
                "delays_s": [r["delay_s"] for r in rs],
                "raised_before_onset": sum(r["raised_before_onset"] for r in rs),
            }
            for s, rs in faults.items()
        },
    }


def _poisson_upper(k: int, level: float = 0.95) -> float:
    """One-sided upper confidence bound of a Poisson mean after `k` events (exact, by bisection
    on the Poisson CDF; 3.0 for k = 0, the rule of three)."""
    lo, hi = 0.0, 10.0 + 10.0 * k
    for _ in range(100):
        mid = (lo + hi) / 2
        cdf = sum(math.exp(-mid + i * math.log(mid) - math.lgamma(i + 1)) for i in range(k + 1))
        lo, hi = (mid, hi) if cdf > 1 - level else (lo, mid)
    return hi


def main(cfg: AssetDaysConfig, workdir: Path, out: Path) -> int:
    r = run(cfg, workdir)
    rate, upper = r["false_alerts_per_asset_hour"], r["false_alerts_per_asset_hour_upper95"]
    print_table(
        f"asset-days: {r['normal_asset_hours']:.0f} normal asset-hours offline "
        f"({cfg.stretches} x {cfg.stretch_hours:g} h) after {cfg.train_hours:g} h of training",
        ["measure", "value", "target"],
        [
            ["raised on the training day", str(r["raised_on_training_day"]), "0"],
            ["false alerts", str(r["false_alerts"]), ""],
            ["false alerts per asset-hour", f"{rate:.4f} (95 % up to {upper:.4f})", "≤ 0.02"],
        ],
    )
    rows = [
        [s, f"{f['detected']}/{f['runs']}", ", ".join(str(d) for d in f["delays_s"]),
         str(f["raised_before_onset"])]
        for s, f in r["faults"].items()
    ]  # fmt: skip
    print_table(
        "faults (one hour into a stretch)",
        ["scenario", "detected", "delay from onset (simulated s)", "raised before onset"],
        rows,
    )
    write_json(out, json.loads(json.dumps(r, default=float)))
    return 0
