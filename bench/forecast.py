"""`edge-agent bench quality --mode forecast`: time-to-limit forecasts on degradations that run to
a limit over hours (issue 14), and false `predicted` alerts on normal operation.

Per seed (one simulated unit): the simulator runs at simulated speed, offline, one sample a
second; every sample goes through the forecast stage the agent's pipeline runs
(`edge_agent.forecast.stage.ForecastStage`, limits from the device profile). The simulator's
noise-free values give the true time each limit is crossed; the PLC's alarm is the first
*measured* sample beyond it (what the PLC's fixed limit does). Figures:
- lead of the first `predicted` alert over the PLC's alarm on the same signal;
- time-to-limit error |estimate − truth| / truth from the last forecast made 30, 60 and 120 min
  before the true crossing (and the same against the PLC's alarm);
- how long before the crossing a forecast's 80 % interval first covered the true crossing, and
  the share of the last two hours' intervals that held it (nominal: 80 %);
- on normal operation (no fault, `normal_hours` per seed): `predicted` alerts raised, and the
  share of hours with one open.
Nothing here is tuned per seed: the stage's defaults are the agent's defaults.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_agent.forecast.stage import ForecastParams, ForecastStage
from edge_agent.limits import LimitSpec
from edge_agent.profiles import load_any_profile, packaged_profile_dirs
from edge_agent.types import AlertEventKind

BEFORE_MIN = (30, 60, 120)


class Sim(Protocol):
    clean: dict[str, float]

    def step(self, dt: float) -> None: ...

    def measure(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class Machine:
    profile: str
    signals: tuple[str, ...]
    make: Callable[[int, str | None, float], Sim]


def _pump(seed: int, scenario: str | None, at: float) -> Sim:
    from simulators.pump import PumpSimulator
    from simulators.scenarios import make_scenario

    return PumpSimulator(seed, make_scenario(scenario, at))


def _compressor(seed: int, scenario: str | None, at: float) -> Sim:
    from simulators.compressor import COMPRESSOR_SCENARIOS, CompressorSimulator

    chosen = COMPRESSOR_SCENARIOS[scenario](name=scenario, at=at) if scenario else None
    return CompressorSimulator(seed, chosen)


def _machines() -> dict[str, Machine]:
    from simulators import compressor, pump

    return {
        "pump": Machine("acme_pump_plc_fw1", pump.SIGNALS, _pump),
        "compressor": Machine("acme_compressor_fw1", compressor.SIGNALS, _compressor),
    }


# Gradual faults that run to a limit: (machine, scenario).
FAULTS = {"bearing_wear_hours": "pump", "cooler_fouling_hours": "compressor"}


@dataclass
class ForecastBenchConfig:
    seeds: int = 10
    first_seed: int = 0
    onset_s: float = 3600.0  # normal operation before the fault starts
    max_fault_s: float = 8 * 3600.0
    normal_hours: float = 24.0
    faults: list[str] = field(default_factory=lambda: list(FAULTS))
    params: ForecastParams = field(default_factory=ForecastParams)


def limits_of(machine: Machine) -> dict[str, LimitSpec]:
    path = next(d / f"{machine.profile}.yaml" for d in packaged_profile_dirs())
    return dict(load_any_profile(path).limits)


@dataclass
class Run:
    """One simulated run: per limited signal the true and PLC crossing times, the forecasts
    (fit time, eta, near, far) and the `predicted` events (ts, event)."""

    truth: dict[str, float] = field(default_factory=dict)
    plc: dict[str, float] = field(default_factory=dict)
    fits: dict[str, list[tuple[float, float, float, float]]] = field(default_factory=dict)
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (ts, signal, event)
    samples: int = 0
    stage_seconds: float = 0.0


def simulate(
    machine: Machine,
    seed: int,
    scenario: str | None,
    at: float,
    duration_s: float,
    params: ForecastParams,
    stop_after_crossing_s: float | None = 600.0,
) -> Run:
    limits = limits_of(machine)
    stage = ForecastStage.build("bench", machine.signals, limits, params)
    assert stage is not None
    sim = machine.make(seed, scenario, at)
    run = Run()
    high = {s: spec.high[0] for s, spec in limits.items() if spec.high is not None}
    cols = {s: machine.signals.index(s) for s in high if s in machine.signals}
    dt = params.sample_period_s
    n = int(duration_s / dt)
    t0 = 1_700_000_000.0  # any epoch: the stage only sees differences
    values = np.zeros(len(machine.signals), dtype=np.float32)
    last_fit: float | None = None
    for i in range(n):
        sim.step(dt)
        ts = t0 + (i + 1) * dt
        measured = sim.measure()
        for j, name in enumerate(machine.signals):
            values[j] = measured[name]
        for s in cols:
            if s not in run.truth and sim.clean[s] >= high[s]:
                run.truth[s] = ts
            if s not in run.plc and measured[s] >= high[s]:
                run.plc[s] = ts
        started = time.perf_counter()
        events = stage.push(ts, values, True)
        run.stage_seconds += time.perf_counter() - started
        run.samples += 1
        for e in events:
            assert e.forecast is not None
            run.events.append((e.ts, e.forecast.signal, e.event.value))
        if stage.fitted_at is not None and stage.fitted_at != last_fit:
            last_fit = stage.fitted_at
            for g in stage.targets:
                if g.last is not None and g.sign > 0:
                    fits = run.fits.setdefault(g.signal, [])
                    fits.append((last_fit, g.last.eta, g.last.near, g.last.far))
        if (
            stop_after_crossing_s is not None
            and run.truth
            and ts > min(run.truth.values()) + stop_after_crossing_s
            and run.plc
        ):
            break
    return run


def _fault_figures(run: Run) -> dict[str, Any]:
    """Figures of one fault run on the signal whose limit the fault crosses first."""
    if not run.truth:
        return {"crossed": False}
    signal = min(run.truth, key=lambda s: run.truth[s])
    t_true = run.truth[signal]
    t_plc = run.plc.get(signal)
    raised = [ts for ts, s, ev in run.events if s == signal and ev == AlertEventKind.RAISED.value]
    first_raise = raised[0] if raised else None
    fits = run.fits.get(signal, [])
    out: dict[str, Any] = {
        "crossed": True,
        "signal": signal,
        "true_crossing_s": t_true,
        "plc_alarm_lead_over_truth_s": (t_true - t_plc) if t_plc is not None else None,
        "predicted_lead_over_plc_s": (t_plc - first_raise)
        if (t_plc is not None and first_raise is not None)
        else None,
        "predicted_alerts_before_crossing": sum(1 for r in raised if r < t_true),
    }
    for k in BEFORE_MIN:
        at = t_true - 60.0 * k
        before = [f for f in fits if f[0] <= at]
        if not before:
            out[f"ttl_error_{k}min"] = None
            continue
        fit_ts, eta, _, _ = before[-1]
        truth = t_true - fit_ts
        out[f"ttl_error_{k}min"] = abs(eta - truth) / truth if math.isfinite(eta) else math.inf
    # The same against the PLC's alarm (the first noisy sample over the limit): what the
    # operator sees; on the pump the noise that wear adds brings it 11-27 min before the truth.
    for k in BEFORE_MIN:
        before = [f for f in fits if t_plc is not None and f[0] <= t_plc - 60.0 * k]
        if t_plc is None or not before:
            out[f"ttl_error_plc_{k}min"] = None
            continue
        fit_ts, eta, _, _ = before[-1]
        truth = t_plc - fit_ts
        out[f"ttl_error_plc_{k}min"] = abs(eta - truth) / truth if math.isfinite(eta) else math.inf
    covered = [f[0] for f in fits if f[0] < t_true and f[2] <= t_true - f[0] <= f[3]]
    out["first_covered_before_s"] = (t_true - covered[0]) if covered else None
    # Of the forecasts in the last two hours before the crossing, how many intervals held it.
    late = [f for f in fits if t_true - 7200 <= f[0] < t_true]
    out["coverage_last_2h"] = (
        sum(1 for f in late if f[2] <= t_true - f[0] <= f[3]) / len(late) if late else None
    )
    return out


def _normal_figures(run: Run, hours: float, bucket_s: float) -> dict[str, Any]:
    raised = [ts for ts, _, ev in run.events if ev == AlertEventKind.RAISED.value]
    return {"hours": hours, "predicted_raised": len(raised)}


def _median(xs: list[float]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def summarize(
    fault_runs: dict[str, list[dict[str, Any]]], normal: list[dict[str, Any]]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for fault, rows in fault_runs.items():
        crossed = [r for r in rows if r["crossed"]]
        leads = [r["predicted_lead_over_plc_s"] for r in crossed]
        s: dict[str, Any] = {
            "runs": len(rows),
            "crossed": len(crossed),
            "predicted_lead_over_plc_min": {
                "min": min((x for x in leads if x is not None), default=None),
                "median": _median(leads),
                "missing": sum(1 for x in leads if x is None),
            },
            "first_covered_before_crossing_min": _median(
                [r["first_covered_before_s"] for r in crossed]
            ),
            "coverage_last_2h": _median([r["coverage_last_2h"] for r in crossed]),
        }
        for k in BEFORE_MIN:
            s[f"median_abs_ttl_error_{k}min"] = _median([r[f"ttl_error_{k}min"] for r in crossed])
            s[f"median_abs_ttl_error_plc_{k}min"] = _median(
                [r[f"ttl_error_plc_{k}min"] for r in crossed]
            )
        lead_min = s["predicted_lead_over_plc_min"]
        for key in ("min", "median"):
            if lead_min[key] is not None:
                lead_min[key] = lead_min[key] / 60.0
        if s["first_covered_before_crossing_min"] is not None:
            s["first_covered_before_crossing_min"] /= 60.0
        summary[fault] = s
    hours = sum(r["hours"] for r in normal)
    raised = sum(r["predicted_raised"] for r in normal)
    summary["normal"] = {
        "hours": hours,
        "predicted_raised": raised,
        "per_24h": raised / hours * 24 if hours else None,
    }
    return summary


def _strict(x: Any) -> Any:
    """Strict JSON: an infinite error (no crossing forecast within the look-ahead) is null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_strict(v) for v in x]
    return x


def main(
    cfg: ForecastBenchConfig, json_out: Path, bundle: Path | None = None, cpu_assets: int = 100
) -> int:
    machines = _machines()
    p = cfg.params
    fault_runs: dict[str, list[dict[str, Any]]] = {}
    normal_rows: list[dict[str, Any]] = []
    stage_s = 0.0
    samples = 0
    t_start = time.perf_counter()
    for fault in cfg.faults:
        machine = machines[FAULTS[fault]]
        rows = []
        for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
            run = simulate(machine, seed, fault, cfg.onset_s, cfg.onset_s + cfg.max_fault_s, p)
            stage_s += run.stage_seconds
            samples += run.samples
            row = {"seed": seed, **_fault_figures(run)}
            rows.append(row)
            print(f"{fault} seed {seed}: {json.dumps(row)}", flush=True)
        fault_runs[fault] = rows
    for name in sorted({FAULTS[f] for f in cfg.faults}):
        machine = machines[name]
        for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
            hours = cfg.normal_hours
            run = simulate(machine, 1000 + seed, None, 0.0, hours * 3600, p, None)
            stage_s += run.stage_seconds
            samples += run.samples
            row = {"machine": name, "seed": 1000 + seed, **_normal_figures(run, hours, p.bucket_s)}
            normal_rows.append(row)
            print(f"normal {name} seed {1000 + seed}: {json.dumps(row)}", flush=True)
    summary = summarize(fault_runs, normal_rows)
    if bundle is not None:
        summary["cpu"] = cpu_overhead(bundle, assets=cpu_assets)
    result = {
        "config": {**asdict(cfg), "params": asdict(p)},
        "summary": summary,
        "faults": fault_runs,
        "normal": normal_rows,
        "stage_us_per_sample": stage_s / samples * 1e6 if samples else None,
        "wall_s": time.perf_counter() - t_start,
        "load_average": os.getloadavg(),
    }
    json_out.write_text(json.dumps(_strict(result), indent=1, default=str, allow_nan=False))
    print(json.dumps(summary, indent=1))
    return 0


def cpu_overhead(
    bundle_dir: Path, samples: int = 3600, seed: int = 7, assets: int = 100
) -> dict[str, Any]:
    """What the forecast stage adds to `assets` asset pipelines, measured in one run: two sets
    of pipelines of the same bundle (one detector session shared, as in the agent), one set with
    forecasts and one without. Each asset is its own simulated pump (seed, seed + 1, ...) whose
    drive-end bearing wears from the start (so the quadratic is fitted too); every step each
    asset's batch goes to its pipeline in both sets, the sets taking turns to go first (so load
    from the machine's other work falls on both alike), and the thread's CPU time of each set's
    pushes is summed.

    The forecast settings are the defaults counted in samples (120 samples a level, 90 levels of
    history), whatever the bundle's sample period, so the fits run as often per sample as on a
    1 Hz plant asset; the first `min_history` worth of samples has no fits and is not counted."""
    from edge_agent.config import AssetConfig, ForecastConfig, SignalConfig
    from edge_agent.inference.bundle import Bundle
    from edge_agent.inference.detector import DetectorPool
    from edge_agent.pipeline import AssetPipeline
    from edge_agent.types import Batch, Reading

    # ONNX Runtime runs the detector on this thread (one intra-op thread, as in the agent).
    bundle = Bundle.load(bundle_dir)
    m = bundle.manifest
    machine = _machines()["pump"]
    period = m.sample_period_s
    limits = limits_of(machine)
    pool = DetectorPool()

    def asset(i: int, forecast: bool) -> AssetConfig:
        return AssetConfig(
            name=f"cpu-{i}",
            sample_period_s=period,
            bundle=bundle_dir,
            signals=[SignalConfig(name=s, source="sim") for s in m.signals],
            limits={s: spec for s, spec in limits.items() if s in m.signals},
            forecast=ForecastConfig(
                enabled=forecast,
                horizon_s=5400 * period,
                bucket_s=120 * period,
                history_s=10800 * period,
                min_history_s=1800 * period,
                update_interval_s=600 * period,
            ),
        )

    with_fc = [AssetPipeline(asset(i, True), bundle, pool) for i in range(assets)]
    without = [AssetPipeline(asset(i, False), bundle, pool) for i in range(assets)]
    assert all(p.forecast is not None for p in with_fc)
    assert all(p.forecast is None for p in without)
    sims = [machine.make(seed + i, "bearing_wear_hours", 0.0) for i in range(assets)]
    warm = 1800
    t_with = t_without = 0.0
    fits = 0
    last_fit = [p.forecast.fitted_at if p.forecast else None for p in with_fc]
    started_all = time.process_time()
    for step in range(warm + samples):
        batches = []
        for sim in sims:
            sim.step(1.0)
            measured = sim.measure()
            readings = tuple(Reading(s, measured[s]) for s in m.signals)
            batches.append(Batch("sim", (step + 1) * period, readings))
        sets = [(with_fc, True), (without, False)]
        if step % 2:
            sets.reverse()  # alternate which set goes first
        for pipelines, is_fc in sets:
            # Thread CPU time, not wall time: a push preempted by the machine's other work
            # is not charged for the wait.
            started = time.thread_time()
            for pipeline, batch in zip(pipelines, batches, strict=True):
                pipeline.push(batch)
            spent = time.thread_time() - started
            if step >= warm:
                if is_fc:
                    t_with += spent
                else:
                    t_without += spent
        for i, p in enumerate(with_fc):
            assert p.forecast is not None
            if p.forecast.fitted_at != last_fit[i]:
                last_fit[i] = p.forecast.fitted_at
                fits += step >= warm
    n = samples * assets
    return {
        "assets": assets,
        "samples_per_asset": samples,
        "fits": fits,
        "cpu_s_with_forecast": t_with,
        "cpu_s_without": t_without,
        "us_per_asset_sample_with_forecast": t_with / n * 1e6,
        "us_per_asset_sample_without": t_without / n * 1e6,
        "added_share": (t_with - t_without) / t_without,
        "process_cpu_s": time.process_time() - started_all,
        "load_average": os.getloadavg(),
    }
