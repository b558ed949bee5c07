"""`edge-agent bench quality`: detection quality on every simulator scenario over many seeds.

Per seed (one simulated pump unit: its own characteristics, noise and ambient phase):
1. record `train_hours` of normal operation at 1 Hz and train a bundle on it (teacher, distilled
   student, int8), exactly as `edge-agent train` does; also bundles from its first hour and its
   first `little_minutes` only, and one from those minutes with `--levels off` (shape only);
2. record test streams of the same unit that *follow* the training stretch: for each fault
   scenario `normal_s` of normal operation then the fault for `fault_s`; and `drift_hours` of
   normal operation only (ambient cycle, load changes: false alarms);
3. replay each stream through the agent's pipeline with three detectors on identical windows:
   the int8 student (what the gateway runs), the fp32 student, and the teacher (for the smaller
   bundles the int8 student only);
4. score: sample-level precision/recall/F1 and false alarm rate, detection delay, false alarms
   per hour of normal operation, and for gradual faults the lead time over the PLC's fixed limit
   alarms (`simulators/plc_limits.py`).
Nothing is tuned on these results: thresholds come from each unit's own held-out normal data.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.alerts.policy import AlertPolicy, PolicyParams
from edge_agent.csvdata import Table, read_table
from edge_agent.evaluation import evaluate, is_fault
from edge_agent.inference.bundle import Bundle
from edge_agent.inference.detector import Detector
from edge_agent.replay import replay_batched
from edge_agent.replay_cli import pipeline_for
from edge_agent.types import FloatArray

F64 = npt.NDArray[np.float64]

PROFILE = "acme_pump_plc_fw1"
SIGNALS = [
    "motor_current", "motor_voltage", "vibration_de", "vibration_nde",
    "motor_temperature", "fluid_temperature", "discharge_pressure", "flow_rate",
]  # fmt: skip
GRADUAL = {"bearing_wear", "sensor_drift", "impeller_wear"}
# Not model questions: NaN readings and a silent device are data-quality events, and the stream
# never windows over them (tested in the protocol and stream tests instead).
NOT_FOR_THE_MODEL = {"dropout", "offline"}


@dataclass
class QualityConfig:
    seeds: int = 10
    train_hours: float = 6.0
    little_minutes: float = 10.0
    normal_s: float = 1800.0
    fault_s: float = 3600.0
    drift_hours: float = 6.0
    teacher_steps: int = 600
    student_steps: int = 1500
    jobs: int = 2
    scenarios: list[str] = field(default_factory=list)


def _record(path: Path, seed: int, scenario: str | None, at: float, warmup: float, n: int) -> Path:
    from edge_agent.profiles import load_profile, packaged_profile_dirs
    from simulators.pump import PumpSimulator
    from simulators.record import record
    from simulators.scenarios import make_scenario

    profile = load_profile(next(d / f"{PROFILE}.yaml" for d in packaged_profile_dirs()))
    sim = PumpSimulator(seed, make_scenario(scenario, at))
    # tick = period/2: the physics is step-size invariant, and 2 steps a sample keep it fast.
    return record(profile, path, n, 1.0, seed=seed, speed=1.0, tick=0.5, sim=sim, warmup=warmup)


def _limit_trip(table_x: F64, ts: F64, onset: float) -> float | None:
    from simulators.plc_limits import PUMP_LIMITS

    tripped = np.zeros(len(ts), dtype=bool)
    for i, name in enumerate(SIGNALS):
        lo, hi = PUMP_LIMITS.get(name, (None, None))
        if lo is not None:
            tripped |= table_x[:, i] < lo
        if hi is not None:
            tripped |= table_x[:, i] > hi
    hits = np.flatnonzero(tripped & (ts >= onset))
    return float(ts[hits[0]]) if hits.size else None


def _teacher_scorer(art: dict[str, Any]) -> Any:
    from edge_agent.training.teacher import teacher_scores

    def score(windows: FloatArray) -> tuple[FloatArray, FloatArray]:
        s, rec = teacher_scores(art["teacher"], windows, art["teacher_weights"], art["levels"])
        shape = windows - windows.mean(axis=1, keepdims=True)
        err = ((rec - shape) ** 2).mean(axis=1) * art["teacher_weights"]
        return s, err.astype(np.float32)

    return score


def _evaluate_stream(
    bundle: Bundle, art: dict[str, Any], path: Path, onset: float | None, compare: bool = True
) -> dict[str, dict[str, float]]:
    table = read_table(path)
    labels = table.text.get("label", ["normal"] * len(table.ts))
    out: dict[str, dict[str, float]] = {}
    m = bundle.manifest
    variants: dict[str, Any] = {"int8": None}
    if compare:
        variants["fp32"] = Detector(bundle.directory / "model.fp32.onnx").score
    if compare and "teacher" in art:
        variants["teacher"] = _teacher_scorer(art)
    x = table.select(SIGNALS)
    trip = _limit_trip(x, table.ts, onset) if onset is not None else None
    for name, score in variants.items():
        pipeline = pipeline_for(bundle, "bench")
        policy = None
        if name == "teacher":
            policy = AlertPolicy(
                "bench",
                PolicyParams(art["teacher_raise"], art["teacher_clear"]),
                pipeline.policy.signals,
                m.model_version,
            )
        r = replay_batched(pipeline, table, score, policy)
        fault = is_fault(labels)
        # Labels are per CSV row; the grid has one sample per row at 1 Hz.
        fault_grid = fault[np.searchsorted(table.ts, r.ts)]
        # What reaches the plant is an alert or a data-quality event (a stuck transmitter is
        # reported as bad data, not scored): both count as flagged, on normal data as well.
        flagged = r.alert_active | r.invalid
        starts = np.flatnonzero(r.invalid & ~np.concatenate([[False], r.invalid[:-1]]))
        raised = sorted([e.ts for e in r.events if e.event.value == "raised"] + list(r.ts[starts]))
        q = evaluate(r.ts, flagged, fault_grid, raised).as_dict()
        normal_hours = float(np.sum(~fault_grid)) / 3600.0
        q["false_alarms_per_hour"] = q["false_alarms"] / normal_hours if normal_hours else 0.0
        if onset is not None:
            first = next((t for t in raised if t >= onset), None)
            q["limit_trip_after_onset_s"] = trip - onset if trip is not None else math.nan
            q["alert_after_onset_s"] = first - onset if first is not None else math.nan
            end = float(table.ts[-1])
            if first is None:
                q["lead_time_s"] = math.nan
            else:
                q["lead_time_s"] = (trip if trip is not None else end) - first
                q["limit_tripped"] = float(trip is not None)
        out[name] = q
    return out


def _run_seed(cfg: QualityConfig, workdir: Path, seed: int) -> list[dict[str, Any]]:
    from edge_agent.training.train import TrainOptions, train_bundle
    from simulators.scenarios import SCENARIOS

    scenarios = cfg.scenarios or sorted(set(SCENARIOS) - NOT_FOR_THE_MODEL)
    train_s = cfg.train_hours * 3600
    results: list[dict[str, Any]] = []
    d = workdir / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    normal = _record(d / "normal.csv", seed, None, 0, 0, int(train_s))
    drift = _record(d / "drift.csv", seed, None, 0, train_s, int(cfg.drift_hours * 3600))
    streams: dict[str, tuple[Path, float | None]] = {"normal_drift": (drift, None)}
    for sc in scenarios:
        n = int(cfg.normal_s + cfg.fault_s)
        p = _record(d / f"{sc}.csv", seed, sc, train_s + cfg.normal_s, train_s, n)
        # CSV timestamps start at a fixed epoch; the onset in data time is offset like them.
        streams[sc] = (p, read_table(p).ts[0] + cfg.normal_s)
    little = int(cfg.little_minutes * 60)
    sizes = [("full", None, True), ("little", little, True), ("little-shape", little, False)]
    if train_s > 3600:
        sizes.insert(1, ("1h", 3600, True))
    for size, rows, levels in sizes:
        table = read_table(normal)
        if rows is not None:
            table = Table.of(table.ts[:rows], table.columns, table.values[:rows])
        art: dict[str, Any] = {}
        opts = TrainOptions(
            progress=False, teacher_steps=cfg.teacher_steps, max_steps=cfg.student_steps,
            seed=seed, judge_levels=levels, keep_fp32=True,
        )  # fmt: skip
        bundle = train_bundle(
            [table], SIGNALS, d / f"bundle-{size}", opts, name=f"seed{seed}", artifacts=art
        )
        for stream, (path, onset) in streams.items():
            q_by_variant = _evaluate_stream(bundle, art, path, onset, compare=size == "full")
            for variant, q in q_by_variant.items():
                results.append(
                    {"seed": seed, "data": size, "stream": stream, "variant": variant, **q}
                )
    return results


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core instead of threads fighting over both


def run_quality(cfg: QualityConfig, workdir: Path, log: Any = print) -> dict[str, Any]:
    import multiprocessing as mp

    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(cfg.jobs, initializer=_worker_init) as pool:
        pending = [pool.apply_async(_run_seed, (cfg, workdir, seed)) for seed in range(cfg.seeds)]
        for seed, res in enumerate(pending):
            results.extend(res.get())
            log(f"seed {seed} done after {time.monotonic() - t0:.0f} s")
            # Partial results survive an interrupted run (a full run takes tens of minutes).
            (workdir / "partial.json").write_text(json.dumps(results, default=float))
    return {"config": cfg.__dict__, "results": results, "summary": summarize(results)}


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(r["data"], r["stream"], r["variant"]) for r in results})
    for data, stream, variant in keys:
        rs = [
            r for r in results if (r["data"], r["stream"], r["variant"]) == (data, stream, variant)
        ]

        def mean(k: str, rs: list[dict[str, Any]] = rs) -> float:
            v = [r[k] for r in rs if k in r and not math.isnan(r[k])]
            return float(np.mean(v)) if v else math.nan

        row: dict[str, Any] = {
            "data": data, "stream": stream, "variant": variant, "seeds": len(rs),
            "f1": mean("f1"), "false_alarm_rate": mean("false_alarm_rate"),
            "false_alarms_per_hour": mean("false_alarms_per_hour"),
            "detected": f"{sum(r['episodes_detected'] for r in rs)}/"
            f"{sum(r['episodes'] for r in rs)}",
            "delay_s": mean("alert_after_onset_s"),
        }  # fmt: skip
        if stream in GRADUAL:
            leads = [r.get("lead_time_s", math.nan) for r in rs]
            row["lead_time_s"] = mean("lead_time_s")
            row["ahead_of_limit"] = f"{sum(1 for v in leads if v > 0)}/{len(leads)}"
        rows.append(row)
    return rows


def table_text(summary: list[dict[str, Any]]) -> str:
    head = (
        "| data | stream | model | seeds | F1 | false alarm rate | false alarms/h | detected "
        "| delay s | lead over limit s | ahead |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in summary:
        # F1 means nothing on a stream without faults (no positives); its figures are the alarms.
        f1 = "—" if r["stream"] == "normal_drift" else f"{r['f1']:.3f}"
        lines.append(
            f"| {r['data']} | {r['stream']} | {r['variant']} | {r['seeds']} | {f1} | "
            f"{r['false_alarm_rate']:.4f} | {r['false_alarms_per_hour']:.2f} | {r['detected']} | "
            f"{r['delay_s']:.0f} | {r.get('lead_time_s', math.nan):.0f} | "
            f"{r.get('ahead_of_limit', '')} |"
        )
    return "\n".join(lines)


def main(cfg: QualityConfig, workdir: Path, json_out: Path | None) -> int:
    result = run_quality(cfg, workdir)
    print(table_text(result["summary"]))
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=1, default=float))
        print(f"→ {json_out}")
    return 0
