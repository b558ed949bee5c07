"""`edge-agent bench quality --mode energy`: the energy stage against the simulator's truth, and
`efficiency` alerts on impeller wear against those on normal operation, over seeds.

Per seed (one simulated pump unit):
1. `train_hours` of normal operation: the efficiency model is fitted on it exactly as
   `edge-agent train` does with the profile's energy points in the data
   (`training/efficiency.py`), from what a client reading the PLC through the profile sees
   (float32 registers, sensor noise);
2. `drift_hours` of normal operation that follow (ambient cycle, set-point changes, voltage
   wander): energy against the truth, and efficiency alerts there are false ones;
3. the same unit from the end of training with impeller wear starting `normal_s` later and
   running `wear_hours`: energy against the truth, the first `efficiency` alert against the
   times the *clean* drive-end vibration (no sensor noise) first reaches 2.8 mm/s (ISO 10816-3
   zone B/C for a 15-300 kW machine on a rigid foundation, this pump's class) and 4.5 mm/s
   (the PLC's alarm, `simulators/plc_limits.py`).
Every sample goes through the agent's own energy stage (`energy/stage.py`: its assembler,
meter and judge) as batches of the Modbus profile's points. Truth: the simulator's electrical
input (`PumpSimulator.electrical_power_kw`) integrated over every physics step of each reported
interval, the step being piecewise constant.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.config import AssetConfig, SignalConfig
from edge_agent.csvdata import Table
from edge_agent.energy.meter import EnergySignals, resolve
from edge_agent.energy.spec import AssetEnergyConfig
from edge_agent.energy.stage import EnergyStage
from edge_agent.profiles import load_profile, packaged_profile_dirs
from edge_agent.sources.modbus.profile import ModbusProfile
from edge_agent.training.efficiency import fit_from_tables
from edge_agent.types import AlertEventKind, Batch, EnergyReport, Reading

PROFILE = "acme_pump_plc_fw1"
SOURCE = "plc"
START_TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z, on a quarter hour
ZONE_BC = 2.8  # mm/s, ISO 10816-3 group 2 (15-300 kW), rigid foundation
PLC_ALARM = 4.5  # mm/s, simulators/plc_limits.py


@dataclass
class EnergyBenchConfig:
    seeds: int = 10
    train_hours: float = 3.0
    drift_hours: float = 6.0
    normal_s: float = 1800.0
    wear_hours: float = 4.5
    interval_s: float = 900.0
    substeps: int = 2  # physics steps per 1 s sample


def _profile() -> ModbusProfile:
    return load_profile(next(d / f"{PROFILE}.yaml" for d in packaged_profile_dirs()))


def _signals(profile: ModbusProfile) -> EnergySignals:
    assert profile.energy is not None
    return resolve(SOURCE, profile.energy, {p.name: p.unit for p in profile.points})


def _asset(interval_s: float) -> AssetConfig:
    return AssetConfig(
        name="pump", sample_period_s=1.0, bundle=Path("unused"),
        signals=[SignalConfig(name="motor_current", source=SOURCE)],
        energy=AssetEnergyConfig(interval_s=interval_s),
    )  # fmt: skip


@dataclass
class _Run:
    reports: list[EnergyReport]
    truth: list[tuple[float, float]]  # (step end time, kWh in the step)
    alerts: list[tuple[str, float]]
    vib: list[tuple[float, float]]  # (time, clean vibration_de)


def _run(
    sim: Any, profile: ModbusProfile, stage: EnergyStage | None, seconds: float, substeps: int,
    points: list[str],
) -> tuple[_Run, list[list[float]], list[float]]:  # fmt: skip
    from simulators.registers import quantize

    run = _Run([], [], [], [])
    rows: list[list[float]] = []
    stamps: list[float] = []
    dt = 1.0 / substeps
    for _ in range(int(seconds)):
        for _ in range(substeps):
            sim.step(dt)
            # The state is constant over a step from its end on: power at the end of each step
            # times the step is the exact integral of the piecewise-constant process.
            run.truth.append((START_TS + sim.state.t, sim.electrical_power_kw() * dt / 3600.0))
        values = quantize(profile, sim.measure())
        ts = START_TS + sim.state.t
        run.vib.append((ts, sim.clean["vibration_de"]))
        if stage is None:
            rows.append([values[p] for p in points])
            stamps.append(ts)
            continue
        batch = Batch(SOURCE, ts, tuple(Reading(p, values[p]) for p in points))
        step = stage.push(batch)
        run.reports.extend(step.reports)
        run.alerts.extend((a.event.value, a.ts) for a in step.alerts)
    return run, rows, stamps


def _energy_errors(run: _Run) -> dict[str, float]:
    """Relative error of each full interval's energy against the truth over the same span, and
    of the whole stream's (summed over those intervals)."""
    t = np.array([x[0] for x in run.truth])
    kwh = np.array([x[1] for x in run.truth])
    errs, meas_sum, true_sum = [], 0.0, 0.0
    for r in run.reports:
        # Sample k stands for (t_k - 0.5, t_k + 0.5]; a step's power holds from its end time
        # for one step: the steps that end inside the span.
        sel = (t >= r.start) & (t < r.end) if r.unmeasured_s < 1.0 else None
        if sel is None:
            continue  # partial interval (start of the stream): not a like-for-like comparison
        truth = float(kwh[sel].sum())
        errs.append((r.energy_kwh - truth) / truth)
        meas_sum += r.energy_kwh
        true_sum += truth
    e = np.abs(np.array(errs))
    return {
        "intervals": len(errs),
        "interval_error_median": float(np.median(e)) if len(e) else math.nan,
        "interval_error_max": float(e.max()) if len(e) else math.nan,
        "total_error": (meas_sum - true_sum) / true_sum if true_sum else math.nan,
    }


def _first(vib: list[tuple[float, float]], limit: float, after: float) -> float | None:
    return next((t for t, v in vib if t >= after and v >= limit), None)


def run_seed(cfg: EnergyBenchConfig, seed: int) -> dict[str, Any]:
    from simulators.pump import PumpSimulator
    from simulators.scenarios import ImpellerWear

    profile = _profile()
    signals = _signals(profile)
    points = list(signals.points)
    train_s = cfg.train_hours * 3600
    sim = PumpSimulator(seed)
    _, rows, stamps = _run(sim, profile, None, train_s, cfg.substeps, points)
    table = Table.of(np.array(stamps), points, np.array(rows, dtype=np.float64))
    spec = fit_from_tables([table], signals, 1.0)
    assert spec is not None, "no efficiency model"
    out: dict[str, Any] = {"seed": seed, "tolerance": spec.tolerance, "blocks": spec.blocks}

    drift = EnergyStage(_asset(cfg.interval_s), signals, spec, "bench")
    normal, _, _ = _run(sim, profile, drift, cfg.drift_hours * 3600, cfg.substeps, points)
    out["normal"] = _energy_errors(normal)
    out["normal"]["false_alerts"] = sum(1 for k, _ in normal.alerts if k == "raised")
    out["normal"]["hours"] = cfg.drift_hours

    onset = train_s + cfg.normal_s
    worn = PumpSimulator(seed, ImpellerWear(name="impeller_wear", at=onset))
    while worn.state.t < train_s - 1e-9:
        worn.step(min(60.0, train_s - worn.state.t))
    stage = EnergyStage(_asset(cfg.interval_s), signals, spec, "bench")
    wear, _, _ = _run(
        worn, profile, stage, cfg.normal_s + cfg.wear_hours * 3600, cfg.substeps, points
    )
    out["wear"] = _energy_errors(wear)
    onset_ts = START_TS + onset
    raised = [t for k, t in wear.alerts if k == AlertEventKind.RAISED.value]
    first = next((t for t in raised if t >= onset_ts), None)
    out["wear"].update(
        early_alerts=sum(1 for t in raised if t < onset_ts),
        alert_after_onset_s=first - onset_ts if first is not None else None,
        zone_bc_after_onset_s=_rel(_first(wear.vib, ZONE_BC, onset_ts), onset_ts),
        plc_alarm_after_onset_s=_rel(_first(wear.vib, PLC_ALARM, onset_ts), onset_ts),
        efficiency_lost_at_alert=(
            worn.scenario.loss * min(1.0, (first - onset_ts) / worn.scenario.ramp)
            if first is not None and isinstance(worn.scenario, ImpellerWear)
            else None
        ),
    )
    return out


def _rel(t: float | None, onset: float) -> float | None:
    return t - onset if t is not None else None


def _median(v: list[float]) -> float:
    return float(np.median(v)) if v else math.nan


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    def pool(stream: str, key: str) -> list[float]:
        return [r[stream][key] for r in results if r[stream][key] is not None]

    leads_bc = [
        r["wear"]["zone_bc_after_onset_s"] - r["wear"]["alert_after_onset_s"]
        for r in results
        if r["wear"]["alert_after_onset_s"] is not None
        and r["wear"]["zone_bc_after_onset_s"] is not None
    ]
    leads_plc = [
        r["wear"]["plc_alarm_after_onset_s"] - r["wear"]["alert_after_onset_s"]
        for r in results
        if r["wear"]["alert_after_onset_s"] is not None
        and r["wear"]["plc_alarm_after_onset_s"] is not None
    ]
    hours = sum(r["normal"]["hours"] for r in results)
    intervals = pool("normal", "interval_error_max") + pool("wear", "interval_error_max")
    totals = [abs(v) for v in pool("normal", "total_error") + pool("wear", "total_error")]
    return {
        "seeds": len(results),
        "energy_interval_error_max": max(intervals),
        "energy_interval_error_median": _median(
            pool("normal", "interval_error_median") + pool("wear", "interval_error_median")
        ),
        "energy_stream_error_max": max(totals),
        "intervals": sum(r["normal"]["intervals"] + r["wear"]["intervals"] for r in results),
        "wear_alerted": f"{len(pool('wear', 'alert_after_onset_s'))}/{len(results)}",
        "alert_before_zone_bc": f"{sum(1 for v in leads_bc if v > 0)}/{len(results)}",
        "alert_after_onset_s_median": _median(pool("wear", "alert_after_onset_s")),
        "lead_over_zone_bc_s_min": min(leads_bc) if leads_bc else math.nan,
        "lead_over_zone_bc_s_median": _median(leads_bc),
        "lead_over_plc_alarm_s_min": min(leads_plc) if leads_plc else math.nan,
        "lead_over_plc_alarm_s_median": _median(leads_plc),
        "zone_bc_after_onset_s_median": _median(pool("wear", "zone_bc_after_onset_s")),
        "efficiency_lost_at_alert_median": _median(pool("wear", "efficiency_lost_at_alert")),
        "false_alerts_per_normal_hour": sum(r["normal"]["false_alerts"] for r in results) / hours,
        "normal_hours": hours,
        "early_alerts_before_onset": sum(r["wear"]["early_alerts"] for r in results),
        "tolerance_median": float(np.median([r["tolerance"] for r in results])),
    }  # fmt: skip


def table_text(s: dict[str, Any]) -> str:
    return "\n".join([
        "| figure | value |", "|---|---|",
        f"| seeds | {s['seeds']} |",
        f"| energy intervals compared (15 min, full) | {s['intervals']} |",
        f"| energy error per interval, median / max | {s['energy_interval_error_median']:.3%} / "
        f"{s['energy_interval_error_max']:.3%} |",
        f"| energy error per stream (hours), max | {s['energy_stream_error_max']:.3%} |",
        f"| efficiency tolerance (median over seeds) | {s['tolerance_median']:.2%} |",
        f"| impeller wear runs with an efficiency alert | {s['wear_alerted']} |",
        f"| alert before clean vibration_de reaches zone B/C (2.8 mm/s) | "
        f"{s['alert_before_zone_bc']} |",
        f"| alert after wear onset, median | {s['alert_after_onset_s_median']:.0f} s |",
        f"| efficiency lost at the alert, median | {s['efficiency_lost_at_alert_median']:.1%} |",
        f"| lead over zone B/C, min / median | {s['lead_over_zone_bc_s_min']:.0f} s / "
        f"{s['lead_over_zone_bc_s_median']:.0f} s |",
        f"| lead over the PLC alarm (4.5 mm/s), min / median | "
        f"{s['lead_over_plc_alarm_s_min']:.0f} s / {s['lead_over_plc_alarm_s_median']:.0f} s |",
        f"| clean vibration_de reaches zone B/C after wear onset, median | "
        f"{s['zone_bc_after_onset_s_median']:.0f} s |",
        f"| false efficiency alerts per normal hour | {s['false_alerts_per_normal_hour']:.3f} "
        f"({s['normal_hours']:.0f} h) |",
        f"| alerts before the wear began (normal part of the wear runs) | "
        f"{s['early_alerts_before_onset']} |",
    ])  # fmt: skip


def main(cfg: EnergyBenchConfig, json_out: Path | None, jobs: int = 2) -> int:
    import multiprocessing as mp

    t0 = time.monotonic()
    with mp.get_context("spawn").Pool(jobs) as pool:
        results = pool.starmap(run_seed, [(cfg, s) for s in range(cfg.seeds)])
    summary = summarize(results)
    print(table_text(summary))
    load = os.getloadavg()
    print(f"{time.monotonic() - t0:.0f} s, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if json_out is not None:
        body = {"config": cfg.__dict__, "summary": summary, "results": results,
                "load_average": load, "seconds": time.monotonic() - t0}  # fmt: skip
        json_out.write_text(json.dumps(body, indent=1, default=float))
        print(f"→ {json_out}")
    return 0
