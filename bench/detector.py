"""`edge-agent bench detector`: µs per window and windows per second for the bundle's int8
student, its fp32 student (`model.fp32.onnx`) and the torch PatchTST teacher, at batch 1 (one
asset's window) and batched (the windows of 10 and 100 assets scored in one call), plus sizes.

All three run on one thread (the agent's detector is configured so; torch is set to match), on
the same standardized windows. Window values do not change the cost of these dense networks, so
the windows are seeded random normal. Batch-1 figures are per call, timed one by one (median and
mean); batched figures are the call time divided by the batch. Every case is bounded by a count
and by `max_seconds`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, percentile, print_table, train_pump_bundle, write_json
from edge_agent.inference.bundle import Bundle
from edge_agent.inference.detector import Detector
from edge_agent.types import FloatArray

Scorer = Callable[[FloatArray], object]


def time_calls(
    score: Scorer, windows: FloatArray, batch: int, calls: int, max_seconds: float
) -> dict[str, float]:
    """Call `score` on consecutive slices of `batch` windows; per-window figures."""
    score(windows[:batch])  # warm-up: first-call allocations and lazy initialization
    per_call: list[float] = []
    deadline = time.perf_counter() + max_seconds
    for i in range(calls):
        start = (i * batch) % (len(windows) - batch + 1)
        chunk = windows[start : start + batch]
        t0 = time.perf_counter()
        score(chunk)
        per_call.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    mean_us = sum(per_call) / len(per_call) / batch * 1e6
    return {
        "batch": batch,
        "calls": len(per_call),
        "us_per_window_mean": round(mean_us, 2),
        "us_per_window_p50": round(percentile(per_call, 50) / batch * 1e6, 2),
        "windows_per_s": round(1e6 / mean_us, 1),
    }


def load_teacher(
    workdir: Path, n_signals: int, window: int, untrained: bool
) -> tuple[Scorer, int, str] | None:
    """The teacher saved next to the bench bundle: (scorer, size of its saved state in bytes,
    which weights). With `untrained` and no saved teacher: the same architecture with its
    initial weights; a forward pass costs the same whatever the weight values."""
    path = workdir / "teacher.pt"
    if not path.exists() and not untrained:
        return None
    import io

    import numpy as np
    import torch

    from edge_agent.training.teacher import PatchTeacher, teacher_scores

    torch.set_num_threads(1)
    if path.exists():
        saved = torch.load(path, weights_only=False)
        teacher = PatchTeacher(saved["n_signals"], saved["window"])
        teacher.load_state_dict(saved["state"])
        weights, levels = saved["weights"], saved["levels"]
        which, size = "trained", path.stat().st_size
    else:
        torch.manual_seed(0)
        teacher = PatchTeacher(n_signals, window)
        weights = np.ones(n_signals, np.float32)
        levels = None  # shape error only: the level error costs next to nothing
        buf = io.BytesIO()
        torch.save(teacher.state_dict(), buf)
        which, size = "untrained (same architecture)", len(buf.getvalue())
    teacher.eval()

    def score(windows: FloatArray) -> object:
        return teacher_scores(teacher, windows, weights, levels)

    return score, size, which


def prepare(workdir: Path, retrain: bool) -> Path:
    """The bench bundle (trained once from simulator data, cached in `workdir`) and its teacher."""
    bundle_dir = workdir / "bundle-0.05"
    if (
        (bundle_dir / "manifest.json").exists()
        and (workdir / "teacher.pt").exists()
        and not retrain
    ):
        return bundle_dir
    import torch

    artifacts: dict[str, Any] = {}
    train_pump_bundle(bundle_dir, period=0.05, speed=20.0, artifacts=artifacts)
    teacher = artifacts["teacher"]
    torch.save(
        {
            "state": teacher.state_dict(),
            "n_signals": teacher.n_signals,
            "window": teacher.window,
            "weights": artifacts["teacher_weights"],
            "levels": artifacts["levels"],
        },
        workdir / "teacher.pt",
    )
    return bundle_dir


def run(
    workdir: Path,
    bundle: Path | None,
    calls: int,
    max_seconds: float,
    batches: list[int],
    untrained_teacher: bool = False,
) -> dict[str, Any]:
    """`bundle`: an existing bundle (then the teacher is timed only if `workdir` has one)."""
    bundle_dir = bundle or prepare(workdir, retrain=False)
    m = Bundle.load(bundle_dir).manifest
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(max(batches) * 4, m.window, len(m.signals))).astype(np.float32)
    int8 = Detector(bundle_dir / "model.onnx", m.model.input)
    fp32 = Detector(bundle_dir / "model.fp32.onnx", m.model.input)
    models: dict[str, Scorer] = {"student_int8": int8.score, "student_fp32": fp32.score}
    sizes = {
        "student_int8_bytes": (bundle_dir / "model.onnx").stat().st_size,
        "student_fp32_bytes": (bundle_dir / "model.fp32.onnx").stat().st_size,
        "bundle_dir_bytes": sum(f.stat().st_size for f in bundle_dir.iterdir() if f.is_file()),
    }
    teacher = load_teacher(workdir, len(m.signals), m.window, untrained_teacher)
    teacher_weights = "none"
    if teacher is not None:
        models["teacher_torch"] = teacher[0]
        sizes["teacher_state_bytes"] = teacher[1]
        teacher_weights = teacher[2]
    cases: dict[str, list[dict[str, float]]] = {}
    for name, score in models.items():
        # The teacher makes one pass per signal; fewer calls keep its share of the run bounded.
        n = calls if not name.startswith("teacher") else max(5, calls // 20)
        cases[name] = [time_calls(score, windows, b, n, max_seconds) for b in [1, *batches]]

    def speedup(slow: str, fast: str, i: int) -> float:
        """How many times fewer µs per window `fast` needs than `slow` (case i). Medians: on a
        shared machine the mean carries other processes' preemptions."""
        return round(cases[slow][i]["us_per_window_p50"] / cases[fast][i]["us_per_window_p50"], 2)

    ratios = {
        "int8_speedup_vs_fp32_batch1": speedup("student_fp32", "student_int8", 0),
        "int8_speedup_vs_fp32_batched": speedup("student_fp32", "student_int8", -1),
        "fp32_size_over_int8_size": round(
            sizes["student_fp32_bytes"] / sizes["student_int8_bytes"], 2
        ),
    }
    if "teacher_torch" in cases:
        ratios["int8_speedup_vs_teacher_batch1"] = speedup("teacher_torch", "student_int8", 0)
        ratios["int8_speedup_vs_teacher_batched"] = speedup("teacher_torch", "student_int8", -1)
    return {
        "machine": machine(),
        "bundle": {"window": m.window, "signals": len(m.signals), "model_version": m.model_version},
        "threads": 1,
        "teacher_weights": teacher_weights,
        "sizes": sizes,
        "cases": cases,
        "ratios": ratios,
        "targets": {
            "int8_no_slower_than_fp32_batch1": ratios["int8_speedup_vs_fp32_batch1"] >= 1.0,
            "int8_1.5x_fp32_batched": ratios["int8_speedup_vs_fp32_batched"] >= 1.5,
            "bundle_3x_smaller_than_fp32": ratios["fp32_size_over_int8_size"] >= 3,
            **(
                {"int8_10x_teacher": ratios["int8_speedup_vs_teacher_batch1"] >= 10}
                if "int8_speedup_vs_teacher_batch1" in ratios
                else {}
            ),
        },
    }


def main(
    out: Path,
    workdir: Path | None,
    bundle: Path | None,
    calls: int,
    max_seconds: float,
    batches: list[int],
    untrained_teacher: bool = False,
) -> int:
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        wd = workdir or Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        result = run(wd, bundle, calls, max_seconds, batches, untrained_teacher)
    rows = [
        [name, str(c["batch"]), f"{c['us_per_window_mean']:.1f}", f"{c['us_per_window_p50']:.1f}",
         f"{c['windows_per_s']:,.0f}", str(c["calls"])]
        for name, cs in result["cases"].items() for c in cs
    ]  # fmt: skip
    print_table(
        f"detector, one thread, window {result['bundle']['window']} × "
        f"{result['bundle']['signals']} signals",
        ["model", "batch", "µs/window mean", "µs/window p50", "windows/s", "calls"],
        rows,
    )
    print()
    print_table(
        "sizes and ratios",
        ["figure", "value"],
        [[k, f"{v:,}"] for k, v in result["sizes"].items()]
        + [[k, str(v)] for k, v in result["ratios"].items()]
        + [[k, "met" if v else "missed"] for k, v in result["targets"].items()],
    )
    write_json(out, result)
    return 0
