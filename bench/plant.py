"""`edge-agent bench quality --mode plant`: detection as a plant engineer meets it.

Many short runs (`simulators/plant_runs.py`): a few minutes of healthy operation to train on, then
a quarter of an hour in which the machine keeps warming up, the set point may move and one subtle
fault comes and goes. Each run is written the way historians export (`simulators/historian.py`:
missed rows, jitter, units in the headers), trained on from its training file exactly as
`edge-agent train` does, and the whole export replayed through the agent's pipeline.

Scored per sample on the rows after the training stretch, pooled over all runs (as a plant would
count them): F1, false alarm rate FP / (FP + TN) and missed alarm rate FN / (FN + TP). Beside the
agent's int8 model, on the very same samples: its fp32 twin, an always-alarm detector, and PCA T²+Q
and k-nearest-neighbours on the hop-1 windows (`bench/baselines.py`), fitted on the same training
file. Nothing is tuned on these results; every threshold comes from each run's training data.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.csvdata import Table, read_table
from edge_agent.inference.bundle import MANIFEST, Bundle
from edge_agent.inference.detector import Detector
from edge_agent.replay import batches, replay_batched
from edge_agent.replay_cli import pipeline_for
from edge_agent.stream.windows import WindowBuffer

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

# int8_open: the int8 detector's samples flagged while an alert's episode is open (quiet period
# included) rather than while its condition holds: what a subscriber holds open.
DETECTORS = ("int8", "int8_open", "fp32", "always", "pca_t2q", "knn")


@dataclass
class PlantConfig:
    pump_runs: int = 16
    compressor_runs: int = 8
    jobs: int = 2
    first_seed: int = 0
    # None: the trainer's defaults, as `edge-agent train` uses them.
    teacher_steps: int | None = None
    student_steps: int | None = None


@dataclass(frozen=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, o: Counts) -> Counts:
        return Counts(self.tp + o.tp, self.fp + o.fp, self.fn + o.fn, self.tn + o.tn)

    @classmethod
    def of(cls, alarm: Bools, fault: Bools) -> Counts:
        return cls(
            int(np.sum(alarm & fault)),
            int(np.sum(alarm & ~fault)),
            int(np.sum(~alarm & fault)),
            int(np.sum(~alarm & ~fault)),
        )

    def rates(self) -> dict[str, float]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        return {
            "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "precision": p,
            "recall": r,
            "false_alarm_rate": self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0,
            "missed_alarm_rate": self.fn / (self.fn + self.tp) if self.fn + self.tp else 0.0,
        }


def export_run(run: Any, workdir: Path) -> tuple[Path, Path]:
    """The run's training file (its first minutes) and its whole export, as a historian writes
    them; labels only in the whole export (the evaluator keeps them, the model never sees them)."""
    from simulators.historian import messy, write_export
    from simulators.plant_runs import run_paths

    train_path, full_path = run_paths(workdir, run)
    style = messy(run.seed)
    n = run.train_rows
    write_export(train_path, run.ts[:n], run.display_names, run.units, run.values[:n], style=style)
    write_export(
        full_path, run.ts, run.display_names, run.units, run.values, labels=run.labels, style=style
    )
    return train_path, full_path


def hop1_windows(bundle: Bundle, table: Table) -> tuple[F64, Bools, F64, F32]:
    """Every window the agent could score (hop 1) through the agent's own assembler, normalized
    with the bundle's scaler: (grid ts, grid invalid, window end ts, windows)."""
    pipeline = pipeline_for(bundle, "bench")
    m = bundle.manifest
    buf = WindowBuffer(m.window, 1, len(m.signals))
    grid: list[float] = []
    invalid: list[bool] = []
    ends: list[float] = []
    wins: list[F32] = []
    for _ts, row_batches in batches(pipeline.asset.signals, table):
        for b in row_batches:
            for sample in pipeline.assembler.push(b):
                grid.append(sample.ts)
                invalid.append(not sample.valid)
                w = buf.push(sample)
                if w is not None:
                    ends.append(sample.ts)
                    wins.append(w)
    stacked = np.stack(wins) if wins else np.zeros((0, m.window, len(m.signals)), np.float32)
    return (
        np.asarray(grid),
        np.asarray(invalid, bool),
        np.asarray(ends),
        pipeline.scaler.apply(stacked),
    )


def _at_grid(grid: F64, ends: F64, alarm: Bools) -> Bools:
    """Per grid sample: the state of the last window ended at or before it."""
    idx = np.searchsorted(ends, grid, side="right") - 1
    out: Bools = np.where(idx >= 0, alarm[np.maximum(idx, 0)], False)
    return out


def train_run(train_path: Path, bundle_dir: Path, seed: int, cfg: PlantConfig) -> Bundle:
    """`edge-agent train` on the training file, as a new user calls it (cached per run)."""
    if (bundle_dir / MANIFEST).exists():
        return Bundle.load(bundle_dir)
    from edge_agent.cli import main as cli_main

    argv = ["train", "--data", str(train_path), "--out", str(bundle_dir), "--seed", str(seed)]
    # The fp32 twin is compared with the int8 model on the same samples; gateways do not get it.
    argv += ["--quiet", "--keep-fp32"]
    if cfg.teacher_steps is not None:
        argv += ["--teacher-steps", str(cfg.teacher_steps)]
    if cfg.student_steps is not None:
        argv += ["--steps", str(cfg.student_steps)]
    code = cli_main(argv)
    if code != 0:
        raise RuntimeError(f"edge-agent train exited {code} on {train_path}")
    return Bundle.load(bundle_dir)


def evaluate_run(machine: str, seed: int, workdir: Path, cfg: PlantConfig) -> dict[str, Any]:
    from bench.baselines import Knn, PcaT2Q, window_features
    from simulators.plant_runs import plant_run

    t0 = time.monotonic()
    run = plant_run(seed, machine)
    train_path, full_path = export_run(run, workdir)
    bundle = train_run(train_path, workdir / f"{run.name}-bundle", seed, cfg)
    train_s = bundle.manifest.training.get("seconds", math.nan)
    full = read_table(full_path)
    test_start = float(run.ts[run.train_rows])
    truth = np.asarray([lab != "normal" for lab in run.labels], bool)

    def grid_fault(grid: F64) -> Bools:
        # The truth is the simulator's state at each instant of the clean 1 Hz grid (the export
        # misses rows; the agent's grid does not).
        k = np.clip(np.round(grid - run.ts[0]).astype(np.int64), 0, len(truth) - 1)
        out: Bools = truth[k]
        return out

    out: dict[str, Any] = {
        "run": run.name,
        "machine": machine,
        "fault": run.fault,
        "magnitude": round(run.magnitude, 3),
        "setpoint_change": run.setpoint_change_at is not None,
        "train_rows": run.train_rows,
        "train_seconds": train_s,
    }
    counts: dict[str, Counts] = {}
    scorers: dict[str, Callable[[F32], tuple[F32, F32]] | None] = {
        "int8": None,
        "fp32": Detector(bundle.directory / "model.fp32.onnx").score,
    }
    for name, score in scorers.items():
        r = replay_batched(pipeline_for(bundle, "bench"), full, score)
        test = r.ts >= test_start
        flagged = r.alert_active | r.invalid
        counts[name] = Counts.of(flagged[test], grid_fault(r.ts[test]))
        if name == "int8" and r.alert_open is not None:
            open_flagged = (r.alert_open | r.invalid)[test]
            counts["int8_open"] = Counts.of(open_flagged, grid_fault(r.ts[test]))
            # Alerts (pages): raised on a normal vs a faulty instant of the test part.
            raised = np.asarray(
                [e.ts for e in r.events if e.event.value == "raised" and e.ts >= test_start]
            )
            on_fault = grid_fault(raised) if raised.size else np.zeros(0, bool)
            out["alerts"] = {
                "raised_on_normal": int((~on_fault).sum()),
                "raised_in_fault": int(on_fault.sum()),
            }
    # Baselines on hop-1 windows, fitted on the training file's windows.
    train_table = read_table(train_path)
    _, _, _, train_w = hop1_windows(bundle, train_table)
    grid, invalid, ends, test_w = hop1_windows(bundle, full)
    test = grid >= test_start
    fault = grid_fault(grid[test])
    counts["always"] = Counts.of(np.ones(int(test.sum()), bool), fault)
    f_train, f_test = window_features(train_w), window_features(test_w)
    w = bundle.manifest.window
    for name, alarms in (
        ("pca_t2q", PcaT2Q.fit(f_train).alarms(f_test)),
        ("knn", Knn.fit(f_train, w).alarms(f_test)),
    ):
        counts[name] = Counts.of((_at_grid(grid, ends, alarms) | invalid)[test], fault)
    out["counts"] = {k: c.__dict__ for k, c in counts.items()}
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def run_plant(cfg: PlantConfig, workdir: Path, log: Any = print) -> dict[str, Any]:
    import multiprocessing as mp

    workdir.mkdir(parents=True, exist_ok=True)
    jobs = [("pump", cfg.first_seed + i) for i in range(cfg.pump_runs)]
    jobs += [("compressor", cfg.first_seed + i) for i in range(cfg.compressor_runs)]
    t0 = time.monotonic()
    results: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(cfg.jobs, initializer=_worker_init) as pool:
        pending = [pool.apply_async(evaluate_run, (m, s, workdir, cfg)) for m, s in jobs]
        for (m, s), res in zip(jobs, pending, strict=True):
            results.append(res.get())
            log(f"{m}-{s:03d} done after {time.monotonic() - t0:.0f} s")
            (workdir / "partial.json").write_text(json.dumps(results))
    return {"config": cfg.__dict__, "results": results, "summary": summarize(results)}


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pooled per sample over runs, per machine and over all."""
    out: dict[str, dict[str, Any]] = {}
    groups = {"all": results}
    for m in sorted({r["machine"] for r in results}):
        groups[m] = [r for r in results if r["machine"] == m]
    for fault in sorted({r["fault"] for r in results}):
        groups[f"fault {fault}"] = [r for r in results if r["fault"] == fault]
    for group, rs in groups.items():
        for det in DETECTORS if not group.startswith("fault ") else ("int8", "pca_t2q", "knn"):
            total = sum((Counts(**r["counts"][det]) for r in rs), Counts())
            out[f"{group}/{det}"] = {"runs": len(rs), **total.rates(), **total.__dict__}
    alerts = [r["alerts"] for r in results if "alerts" in r]
    out["alerts"] = {
        "raised_on_normal": sum(a["raised_on_normal"] for a in alerts),
        "raised_in_fault": sum(a["raised_in_fault"] for a in alerts),
        "faulty_runs": sum(1 for r in results if r["fault"] != "none"),
    }
    train = [r["train_seconds"] for r in results if not math.isnan(r["train_seconds"])]
    out["training"] = {
        "median_seconds": float(np.median(train)) if train else math.nan,
        "max_seconds": float(np.max(train)) if train else math.nan,
    }
    return out


def table_text(summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| runs | detector | F1 | false alarm rate | missed alarm rate | precision | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in summary.items():
        if "/" not in key:
            continue
        group, det = key.split("/")
        lines.append(
            f"| {group} ({r['runs']}) | {det} | {r['f1']:.3f} | {r['false_alarm_rate']:.1%} | "
            f"{r['missed_alarm_rate']:.1%} | {r['precision']:.3f} | {r['recall']:.3f} |"
        )
    a = summary.get("alerts", {})
    if a:
        lines.append(
            f"\nalerts raised (int8): {a['raised_on_normal']} on normal samples, "
            f"{a['raised_in_fault']} in faults ({a['faulty_runs']} faulty runs)"
        )
    t = summary.get("training", {})
    lines.append(
        f"\ntraining seconds per run: median {t.get('median_seconds', math.nan):.1f}, "
        f"max {t.get('max_seconds', math.nan):.1f}"
    )
    return "\n".join(lines)


def main(cfg: PlantConfig, workdir: Path, json_out: Path | None) -> int:
    result = run_plant(cfg, workdir)
    print(table_text(result["summary"]))
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=1))
        print(f"→ {json_out}")
    return 0
