"""Train a bundle from normal data, in stages, each a function with typed input and output:

    prepare_data        rows → the agent's own windows, split in time, standardized
    fit_levels          level relations, level shifts and stuck limits on the normal data
    fit_teacher         the transformer teacher (optional) and its distillation targets
    distill_student     the small convolutional autoencoder the gateway runs
    export_and_calibrate
                        ONNX fp32 → static int8 → thresholds on held-out normal windows (the
                        chronologically last part of the data)
    train_fault_classifier
                        optional head, only with labelled fault data
    build_manifest      what the runtime reads (and what the bundle's signature will cover)

`train_bundle` runs them in that order. The order matters for reproducibility, not only for data
flow: the student's initial weights come from torch's global generator as the teacher left it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from edge_agent.alerts.policy import CRITICAL_RATIO, PolicyParams
from edge_agent.csvdata import Table
from edge_agent.energy.meter import EnergySignals
from edge_agent.inference.bundle import (
    MANIFEST,
    SCHEMA_VERSION,
    Bundle,
    sha256_file,
    write_manifest,
)
from edge_agent.inference.model_io import CLASSIFIER_OUTPUT, INPUT, OUTPUTS
from edge_agent.stream.stuck import stuck_limits
from edge_agent.training import alerting
from edge_agent.training.data import DataReport, assemble
from edge_agent.training.efficiency import fit_from_tables
from edge_agent.training.export import (
    export_onnx,
    quantize_detector,
    quantize_int8,
    run_scores,
    session,
)
from edge_agent.training.lean import lean_scorer
from edge_agent.training.levels import (
    LevelRelations,
    fit_level_relations,
    measurement_noise,
    window_levels,
)
from edge_agent.training.model import ConvAutoencoder, LevelModel, Scorer, demean
from edge_agent.training.shift import ShiftFit, fit_shift

if TYPE_CHECKING:
    # Imported when a teacher is trained: it pulls in `transformers`.
    from edge_agent.training.teacher import PatchTeacher

log = logging.getLogger(__name__)
F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


class TrainingError(ValueError):
    """Training data or options that cannot give a usable bundle; the message says why."""


@dataclass(frozen=True)
class TrainOptions:
    window: int = 32
    hop: int = 4
    # None: scaled to the data (`steps_for`): passes enough over few windows to converge, capped
    # so hours of data do not take hours to train.
    max_steps: int | None = None
    batch_size: int = 128
    learning_rate: float = 2e-3
    seed: int = 0
    quantile: float = 0.999
    margin: float = 0.25
    holdout: float = 0.2
    progress: bool = True
    # Teacher: 0 steps trains the student alone (reconstruction loss only); None: scaled.
    teacher_steps: int | None = None
    distill_weight: float = 0.5
    # Windows the teacher reconstructs for distillation (each costs one pass per signal).
    distill_windows: int = 4096
    # Level relations: their prediction interval covers this share of normal levels with this
    # confidence (see training/levels.py).
    level_coverage: float = 0.999
    level_confidence: float = 0.95
    # Absolute levels judged in the graph (training/levels.py). None: only when the normal data
    # spans at least `level_min_hours`; minutes of data cannot show where levels go at other
    # operating points, after warm-up or at other times of day (docs/QUALITY.md measures it).
    # Level *shifts* are judged either way (stream/level_shift.py).
    judge_levels: bool | None = None
    level_min_hours: float = 1.0
    # Level shifts against each signal's recent past (stream/level_shift.py).
    level_shift: bool = True
    # False level-shift episodes per asset-hour the shift tolerances are set for (their normal
    # tail, extrapolated; training/shift.py); None: the Normal interval alone.
    shift_false_per_hour: float | None = 0.005
    classifier_steps: int = 800
    # Also ship the float twin (`model.fp32.onnx`) in the bundle: for benchmarks that compare
    # int8 with fp32. The gateway runs only `model.onnx`; by default the twin is built to
    # measure int8 against it (the manifest's agreement) and then dropped.
    keep_fp32: bool = False


# Passes over the training windows and the step ranges (see TrainOptions.max_steps).
STUDENT_EPOCHS, STUDENT_STEPS = 60, (200, 1500)
TEACHER_EPOCHS, TEACHER_STEPS = 20, (100, 600)
TEACHER_BATCH = 64


def steps_for(windows: int, batch: int, epochs: int, bounds: tuple[int, int]) -> int:
    """Optimizer steps for `epochs` passes over `windows`, within `bounds`."""
    lo, hi = bounds
    return int(min(hi, max(lo, math.ceil(epochs * windows / max(1, batch)))))


def segments(ts: F64, x: F64, period: float) -> list[F64]:
    """Split rows into runs without NaN and without time gaps (> 1.5 periods)."""
    ok = np.all(np.isfinite(x), axis=1)
    breaks = np.ones(len(ts), dtype=bool)
    breaks[1:] = np.diff(ts) > 1.5 * period
    out, start = [], None
    for i in range(len(ts)):
        if not ok[i]:
            if start is not None:
                out.append(x[start:i])
            start = None
            continue
        if start is None:
            start = i
        elif breaks[i]:
            out.append(x[start:i])
            start = i
    if start is not None:
        out.append(x[start:])
    return out


def windows_of(segs: list[F64], window: int) -> F32:
    views = [
        np.lib.stride_tricks.sliding_window_view(s, window, axis=0).transpose(0, 2, 1)
        for s in segs
        if len(s) >= window
    ]
    if not views:
        return np.zeros((0, window, segs[0].shape[1] if segs else 0), np.float32)
    return np.concatenate(views).astype(np.float32)


def _signal_weights(mean_error: F64) -> F32:
    """1 / typical normal error per signal, floored so a perfectly predictable signal does not
    get an unbounded weight."""
    floor = max(float(np.max(mean_error)) * 1e-3, 1e-6)
    return (1.0 / np.maximum(mean_error, floor)).astype(np.float32)


def _fit(scorer: Scorer, train: F32, opts: TrainOptions, targets: F32 | None = None) -> list[float]:
    """Reconstruction loss, plus distillation towards the teacher's reconstruction when given:
    the student learns to say what the teacher (reading each signal from the others) says."""
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    optim = torch.optim.Adam(scorer.parameters(), lr=opts.learning_rate)
    steps = opts.max_steps or steps_for(len(train), opts.batch_size, STUDENT_EPOCHS, STUDENT_STEPS)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=steps)
    data = torch.from_numpy(train)
    target = torch.from_numpy(targets) if targets is not None else None
    alpha = opts.distill_weight if target is not None else 0.0
    losses: list[float] = []
    scorer.train()
    bar = tqdm(range(steps), desc="student", unit="step", disable=not opts.progress)
    for step in bar:
        idx = torch.from_numpy(rng.integers(0, len(data), size=min(opts.batch_size, len(data))))
        x = demean(data[idx])
        rec = scorer.reconstruct(x)
        loss = ((rec - x) ** 2).mean()
        if target is not None:
            loss = (1 - alpha) * loss + alpha * ((rec - target[idx]) ** 2).mean()
        optim.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optim.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    scorer.eval()
    return losses


@torch.no_grad()
def _mean_signal_error(scorer: Scorer, windows: F32) -> F64:
    scorer.weights.fill_(1.0)
    errs = [
        scorer(torch.from_numpy(windows[i : i + 512]))[1].numpy()
        for i in range(0, len(windows), 512)
    ]
    mean: F64 = np.concatenate(errs).mean(axis=0).astype(np.float64)
    return mean


def _spearman(a: F32, b: F32) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def thresholds(scores: F32, opts: TrainOptions) -> tuple[float, float]:
    """(raise, clear) from scores on held-out normal windows: the `quantile` (raise) and the
    99th percentile (clear, never above raise), each times (1 + margin). Student and teacher
    are calibrated alike, so the benchmarks compare like with like."""
    raise_t = float(np.quantile(scores, opts.quantile)) * (1 + opts.margin)
    clear_t = min(raise_t, float(np.quantile(scores, 0.99)) * (1 + opts.margin))
    return raise_t, clear_t


# -- stage 1: data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedData:
    """The normal data as the later stages use it. Windows are standardized with the scaler
    (`mean`, `scale`), which is fitted on the part before the chronological cut only."""

    signals: list[str]
    period: float  # s, the asset's when given
    rows: int  # input rows, all files
    data_hash: str  # of the input values: names the data a bundle was trained on
    report: DataReport
    segments: list[F64]  # every valid run without a gap (engineering units), both sides of the cut
    mean: F64
    scale: F64
    constant: list[str]  # signals (nearly) constant before the cut: scale floored
    low: F64  # 0.5th and 99.5th percentile of all valid samples: the range quoted in alerts
    high: F64
    train: F32  # every window before the cut
    calibration: F32  # every window after the cut: the thresholds come from these
    fit: F32  # the windows the student fits and the teacher distils (a subset of `train`)
    quantization: F32  # the windows the int8 quantizer calibrates on (a subset of `fit`)

    @property
    def hours(self) -> float:
        return self.report.valid_samples * self.period / 3600.0

    @property
    def constant_mask(self) -> list[bool]:
        return [s in self.constant for s in self.signals]

    def standardized_segments(self) -> list[F64]:
        return [(s - self.mean) / self.scale for s in self.segments]

    def normalize(self, windows: F32) -> F32:
        """Raw (…, signals) values → the model's input units (float32, as the agent's scaler)."""
        return _standardize(windows, self.mean, self.scale)


def _standardize(windows: F32, mean: F64, scale: F64) -> F32:
    out: F32 = ((windows - mean.astype(np.float32)) / scale.astype(np.float32)).astype(np.float32)
    return out


def prepare_data(
    tables: Sequence[Table],
    signals: list[str],
    opts: TrainOptions,
    expected_period: float | None = None,
    max_age: float | None = None,
) -> PreparedData:
    """Check the data, put it through the agent's own assembler and window buffer
    (`training/data.py`), split it in time (`opts.holdout` last for calibration), fit the scaler
    and draw the student's and the quantizer's windows (seeded). Raises TrainingError naming
    what is missing."""
    if not tables or sum(len(t.ts) for t in tables) == 0:
        raise TrainingError("the data has no rows")
    period = tables[0].inferred_period()
    if expected_period is not None and not math.isclose(period, expected_period, rel_tol=0.01):
        raise TrainingError(
            f"data sample period {period:g} s differs from the asset's sample_period_s "
            f"{expected_period:g} s"
        )
    if expected_period is not None:
        period = expected_period
    x = np.concatenate([t.select(signals) for t in tables])
    empty = [s for s, col in zip(signals, x.T, strict=True) if not np.any(np.isfinite(col))]
    if empty:
        raise TrainingError(f"signals with no numeric values: {', '.join(empty)}")
    w = opts.window
    need = math.ceil(w / opts.holdout) + w
    data = assemble(tables, signals, period, max_age or 2.5 * period, w)
    for line in data.report.lines():
        log.info("%s", line)
    if data.report.valid_samples < need:
        raise TrainingError(
            f"too few usable samples: {data.report.valid_samples} valid grid samples from "
            f"{data.report.rows} rows; need at least {need} for window {w} with "
            f"{opts.holdout:.0%} held out for calibration"
        )
    fit_segments, train_w, _, cal_raw = data.split(1 - opts.holdout)
    if len(train_w) < 16 or len(cal_raw) < 16:
        raise TrainingError(
            f"too few complete windows: {len(train_w)} for training, {len(cal_raw)} for "
            f"calibration (need 16 each; the data has {data.report.valid_samples} valid samples "
            f"in {len(data.segments)} runs without a gap)"
        )
    fit_rows = np.concatenate(fit_segments).astype(np.float64)
    mean = fit_rows.mean(axis=0)
    std = fit_rows.std(axis=0)
    # A constant signal has std 0; floor the scale so it cannot divide by zero and a tiny
    # change of it does not dominate the score.
    floor = 1e-3 * np.maximum(1.0, np.abs(mean))
    constant = [s for s, sd, f in zip(signals, std, floor, strict=True) if sd < f]
    if constant:
        log.warning("constant (or nearly) in training data: %s", ", ".join(constant))
    scale = np.maximum(std, floor)
    # The observed range is quoted in alerts; like the levels (next stage) it uses all normal
    # data, the held-out part included.
    normal_segments = [s.astype(np.float64) for s in data.segments]
    every = np.concatenate(normal_segments)
    low, high = np.percentile(every, 0.5, axis=0), np.percentile(every, 99.5, axis=0)
    train_n = _standardize(train_w, mean, scale)
    # One generator, two draws in this order: the bundles stay identical to those trained
    # before the stages were split (the quantizer's draw used to happen at export).
    rng = np.random.default_rng(opts.seed)
    n_sub = min(opts.distill_windows, len(train_n))
    fit_n = train_n[np.sort(rng.choice(len(train_n), size=n_sub, replace=False))]
    quant = fit_n[rng.choice(len(fit_n), size=min(512, len(fit_n)), replace=False)]
    return PreparedData(
        signals=signals, period=period, rows=len(x),
        data_hash=hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16],
        report=data.report, segments=normal_segments, mean=mean, scale=scale, constant=constant,
        low=low, high=high, train=train_n, calibration=_standardize(cal_raw, mean, scale),
        fit=fit_n, quantization=quant,
    )  # fmt: skip


# -- stage 2: levels -------------------------------------------------------------------------


@dataclass(frozen=True)
class FittedLevels:
    """How levels are judged (training/levels.py, stream/level_shift.py) and when a value
    counts as stuck, all from the normal data."""

    relations: LevelRelations  # without judgement when absolute levels are not judged
    judge_levels: bool
    shift: ShiftFit
    stuck_after: list[int | None]


def fit_levels(data: PreparedData, opts: TrainOptions) -> FittedLevels:
    w, signals = opts.window, data.signals
    std_segments = data.standardized_segments()
    levels = window_levels(std_segments, w, opts.hop)
    stuck_after = stuck_limits(data.segments, w, data.constant_mask)
    # Measurement noise alone gives a window level variance of σ² / window.
    noise = measurement_noise(std_segments) / w
    relations = fit_level_relations(levels, opts.level_coverage, opts.level_confidence, noise)
    judge_levels = opts.judge_levels
    if judge_levels is None:
        judge_levels = data.hours >= opts.level_min_hours
        log.info(
            "absolute levels %s: the data spans %.2f h of valid samples (%s %.2f h); level "
            "shifts are judged either way",
            "judged" if judge_levels else "not judged",
            data.hours,
            "at least" if judge_levels else "under",
            opts.level_min_hours,
        )
    if not judge_levels:
        relations = relations.without_judgement()
    unjudged = [s for s, ok in zip(signals, relations.judged, strict=True) if not ok]
    if unjudged and judge_levels:
        log.warning(
            "levels not judged (they did not move beyond measurement noise in the training data, "
            "so nothing says where they may go; more data fixes this): %s",
            ", ".join(unjudged),
        )
    shift = fit_shift(
        std_segments,
        w,
        opts.level_coverage,
        opts.level_confidence,
        data.constant_mask,
        period_s=data.period,
        false_per_hour=opts.shift_false_per_hour,
    )
    if opts.level_shift:
        unshifted = [s for s, ok in zip(signals, shift.judged, strict=True) if not ok]
        if unshifted:
            log.warning("level shifts not judged (constant in training): %s", ", ".join(unshifted))
    log.info(
        "levels: effective samples %s",
        ", ".join(
            f"{s} {n:.0f}" for s, n in zip(signals, relations.level_effective_samples, strict=True)
        ),
    )
    return FittedLevels(relations, judge_levels, shift, stuck_after)


# -- stage 3: teacher ------------------------------------------------------------------------


@dataclass(frozen=True)
class TaughtTeacher:
    teacher: PatchTeacher
    steps: int
    seconds: float
    weights: F32  # per signal, as the student's: 1 / typical error on the fit windows
    levels: LevelModel  # the same level error the student's graph adds
    targets: F32  # reconstructions of `PreparedData.fit`: the student's distillation targets
    calibration_scores: F32  # on `PreparedData.calibration`, scored like the student

    def info(self) -> dict[str, float | int | str]:
        """For the manifest's `training`."""
        return {
            "teacher": "patchtst-channel-attention",
            "teacher_steps": self.steps,
            "teacher_params": sum(p.numel() for p in self.teacher.parameters()),
            "teacher_seconds": self.seconds,
        }

    def artifacts(self, opts: TrainOptions) -> dict[str, Any]:
        """What the benchmarks need to run the teacher as a detector (`train_bundle` artifacts)."""
        raise_t, clear_t = thresholds(self.calibration_scores, opts)
        return {
            "teacher": self.teacher,
            "teacher_weights": self.weights,
            "levels": self.levels,
            "teacher_raise": raise_t,
            "teacher_clear": clear_t,
        }


def _one_thread() -> None:
    # One thread: these models are small (windows of a few dozen samples × a handful of signals),
    # so intra-op threads gain little and, on a loaded machine, spin against each other. 10 min
    # of 1 Hz data with the machine's two cores busy: 53 s wall with one thread, 209 s with two.
    torch.set_num_threads(1)


def fit_teacher(
    data: PreparedData, levels: FittedLevels, opts: TrainOptions
) -> TaughtTeacher | None:
    """The transformer teacher on the training windows, its reconstructions of the student's fit
    windows and its scores on the held-out ones; None when `opts.teacher_steps` is 0."""
    _one_thread()
    steps = opts.teacher_steps
    if steps is None:
        steps = steps_for(len(data.train), TEACHER_BATCH, TEACHER_EPOCHS, TEACHER_STEPS)
    if steps <= 0:
        return None
    from edge_agent.training.teacher import teacher_scores, train_teacher

    level_model = LevelModel(len(data.signals)).load(levels.relations)
    t0 = time.monotonic()
    teacher = train_teacher(data.train, steps, opts.seed, TEACHER_BATCH, progress=opts.progress)
    ones = np.ones(len(data.signals), np.float32)
    _, targets = teacher_scores(teacher, data.fit, ones, None)
    shape_fit = data.fit - data.fit.mean(axis=1, keepdims=True)
    t_err = ((targets - shape_fit) ** 2).mean(axis=(0, 1)).astype(np.float64)
    weights = _signal_weights(t_err)
    cal, _ = teacher_scores(teacher, data.calibration, weights, level_model)
    seconds = round(time.monotonic() - t0, 1)
    return TaughtTeacher(teacher, steps, seconds, weights, level_model, targets, cal)


# -- stage 4: student ------------------------------------------------------------------------


@dataclass(frozen=True)
class Student:
    scorer: Scorer  # the graph to export: weights and level model loaded
    losses: list[float]
    distilled: bool


def distill_student(
    data: PreparedData,
    levels: FittedLevels,
    opts: TrainOptions,
    teacher: TaughtTeacher | None = None,
) -> Student:
    """The autoencoder on the fit windows (distilled towards the teacher's reconstructions when
    there is one), its per-signal weights, and the level model: the scorer the bundle exports.
    Not seeded here on purpose: the initial weights come from torch's generator as the teacher
    stage left it, as they always have (reseeding would change every trained bundle)."""
    _one_thread()
    scorer = Scorer(ConvAutoencoder(len(data.signals), opts.window))
    targets = teacher.targets if teacher is not None else None
    losses = _fit(scorer, data.fit, opts, targets)
    with torch.no_grad():
        scorer.weights.copy_(
            torch.from_numpy(_signal_weights(_mean_signal_error(scorer, data.fit)))
        )
    scorer.levels.load(levels.relations)
    return Student(scorer, losses, targets is not None)


# -- stage 5: export and calibration ---------------------------------------------------------


MODEL_FILE, FP32_FILE, CLASSIFIER_FILE = "model.onnx", "model.fp32.onnx", "classifier.onnx"


@dataclass(frozen=True)
class Calibration:
    raise_: float
    clear: float
    heldout_scores: F32  # int8, on `PreparedData.calibration`
    fit_scores: F32  # int8, on `PreparedData.fit` (for the report)
    agreement: dict[str, float]
    # The alert policy's gross cut, quiet period and false-alarm budget (training/alerting.py).
    alerting: dict[str, float | int | str]
    normal_peak: float  # the raise rule's statistic at its highest on all normal windows


def export_and_calibrate(
    student: Student,
    data: PreparedData,
    opts: TrainOptions,
    out_dir: Path,
    teacher: TaughtTeacher | None = None,
) -> Calibration:
    """Export the student (fp32, rewritten lean), quantize it (static int8), write the int8 model
    (and the fp32 twin with `opts.keep_fp32`) to `out_dir`, and set the
    thresholds on the int8 model's scores of the held-out windows: the model the agent runs. The
    scores are read back through the model I/O contract, as the detector reads them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    w, n = opts.window, len(data.signals)
    cal_n = data.calibration
    # Built aside and moved in only when complete: a failed export leaves no half model.
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp_s:
        tmp = Path(tmp_s)
        fp32, int8 = tmp / FP32_FILE, tmp / MODEL_FILE
        export_onnx(lean_scorer(student.scorer), w, n, fp32)
        quantize_detector(fp32, int8, data.quantization)
        s32 = run_scores(session(fp32), cal_n)
        s8 = run_scores(session(int8), cal_n)
        s8_fit = run_scores(session(int8), data.fit)
        s8_train = run_scores(session(int8), data.train)
        for f in (fp32, int8) if opts.keep_fp32 else (int8,):
            shutil.move(str(f), out_dir / f.name)
        if not opts.keep_fp32:
            (out_dir / FP32_FILE).unlink(missing_ok=True)  # a twin left by an earlier run
    quantile_t, clear_t = thresholds(s8, opts)
    # No alert on the data called normal: the raise rule's k-of-n statistic over every normal
    # window, in time order (training part, then held-out), stays at or below the threshold.
    rule = PolicyParams(quantile_t, clear_t).for_hop(opts.hop, 1)
    peak = alerting.normal_peak(np.concatenate([s8_train, s8]), rule.k, rule.n)
    raise_t = max(quantile_t, peak)
    if raise_t >= CRITICAL_RATIO * quantile_t:
        # A stretch of the "normal" data scores like a critical fault: if it is one, the floor
        # would blind the bundle to faults up to its level. Said loudly; the user decides.
        log.warning(
            "raise threshold %.4g, %.1fx the held-out quantile's %.4g: some stretch of the normal "
            "data scores like a critical fault; if it is not normal operation, leave it out and "
            "train again",
            raise_t,
            raise_t / quantile_t,
            quantile_t,
        )
    elif raise_t > quantile_t:
        log.info(
            "raise threshold %.4g (not the held-out quantile's %.4g): the raise rule's peak on "
            "the normal data, so the bundle raises no alert on it",
            raise_t,
            quantile_t,
        )
    r32, _ = thresholds(s32, opts)
    with torch.no_grad():
        torch_scores = student.scorer(torch.from_numpy(cal_n))[0].numpy()
    agreement = {
        "int8_vs_fp32_pearson": float(np.corrcoef(s8, s32)[0, 1]),
        "int8_vs_fp32_median_rel_diff": float(np.median(np.abs(s8 - s32) / np.maximum(s32, 1e-9))),
        # Each model at its own quantile threshold: how alike the two models decide (the
        # floor above is a property of the data, the int8 model's alone).
        "int8_vs_fp32_decision_agreement": float(np.mean((s8 > quantile_t) == (s32 > r32))),
        "onnx_fp32_vs_torch_max_abs_diff": float(np.max(np.abs(s32 - torch_scores))),
    }
    if teacher is not None:
        agreement["student_vs_teacher_spearman"] = _spearman(s32, teacher.calibration_scores)
    policy = alerting.calibrate(s8, raise_t, clear_t, opts.margin, w, opts.hop, data.period)
    return Calibration(raise_t, clear_t, s8, s8_fit, agreement, policy, peak)


# -- stage 6 (optional): fault classifier ----------------------------------------------------


def _classifier(
    faults: Sequence[Table],
    label_column: str,
    data: PreparedData,
    opts: TrainOptions,
    tmp: Path,
) -> dict[str, Any]:
    from edge_agent.evaluation import NORMAL_LABELS
    from edge_agent.training.classifier import NORMAL, export_classifier, train_classifier

    labelled: list[tuple[Table, list[str]]] = []
    for k, table in enumerate(faults):
        if label_column not in table.text:
            raise TrainingError(
                f"--faults file {k + 1} has no text column {label_column!r} "
                f"(have {', '.join(table.text) or 'none'})"
            )
        raw = [v.strip() for v in table.text[label_column]]
        labelled.append((table, [NORMAL if v.lower() in NORMAL_LABELS else v for v in raw]))
    classes = [NORMAL, *sorted({n for _, names in labelled for n in names if n != NORMAL})]
    if len(classes) < 2:
        raise TrainingError("--faults data has no fault labels (every row is normal)")
    w = opts.window
    signals, period, norm, normal_windows = data.signals, data.period, data.normalize, data.fit
    train_parts: list[tuple[F32, npt.NDArray[np.int64]]] = []
    val_parts: list[tuple[F32, npt.NDArray[np.int64]]] = []
    for table, names in labelled:
        x = table.select(signals)
        y = np.array([classes.index(n) for n in names], dtype=np.float64)
        cut = int(len(x) * 0.8)
        for lo, hi, dest in ((0, cut, train_parts), (cut, len(x), val_parts)):
            # The label rides along as an extra column, so windows keep their last sample's label.
            both = np.column_stack([x[lo:hi], y[lo:hi]])
            win = windows_of(segments(table.ts[lo:hi], both, period), w)
            if len(win):
                dest.append((norm(win[:, :, :-1]), win[:, -1, -1].astype(np.int64)))
    if not train_parts:
        raise TrainingError(f"--faults data has no complete window of {w} samples")
    xt = np.concatenate([p[0] for p in train_parts])
    yt = np.concatenate([p[1] for p in train_parts])
    xv = np.concatenate([p[0] for p in val_parts]) if val_parts else xt[:0]
    yv = np.concatenate([p[1] for p in val_parts]) if val_parts else yt[:0]
    xt = np.concatenate([xt, normal_windows])
    yt = np.concatenate([yt, np.zeros(len(normal_windows), np.int64)])
    missing = [classes[c] for c in range(len(classes)) if not np.any(yt == c)]
    if missing:
        raise TrainingError(f"no complete window for classes: {', '.join(missing)}")
    model = train_classifier(xt, yt, classes, opts.classifier_steps, opts.seed, opts.progress)
    fp32, int8 = tmp / "classifier.fp32.onnx", tmp / CLASSIFIER_FILE
    export_classifier(model, w, len(signals), fp32)
    rng = np.random.default_rng(opts.seed)
    quantize_int8(fp32, int8, xt[rng.choice(len(xt), size=min(512, len(xt)), replace=False)])
    acc: float | None = None
    agree: float | None = None
    if len(xv):
        p8 = session(int8).run([CLASSIFIER_OUTPUT], {INPUT: xv})[0].argmax(axis=1)
        p32 = session(fp32).run([CLASSIFIER_OUTPUT], {INPUT: xv})[0].argmax(axis=1)
        acc, agree = float(np.mean(p8 == yv)), float(np.mean(p8 == p32))
    fp32.unlink()
    log.info("fault classifier: classes %s, held-out accuracy %s", classes, acc)
    return {
        "file": CLASSIFIER_FILE,
        "input": INPUT,
        "output": CLASSIFIER_OUTPUT,
        "labels": classes,
        "validation_accuracy": acc,
        "int8_vs_fp32_agreement": agree,
    }


def train_fault_classifier(
    faults: Sequence[Table],
    data: PreparedData,
    opts: TrainOptions,
    out_dir: Path,
    label_column: str = "label",
) -> dict[str, Any]:
    """Train, quantize and write `classifier.onnx` from labelled fault recordings; its manifest
    entry. Windows of the labelled data take the label of their last sample; normal windows come
    from both (the fault files' normal rows and the student's fit windows). Accuracy is measured
    on the chronologically last 20 % of each labelled file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp_s:
        spec = _classifier(faults, label_column, data, opts, Path(tmp_s))
        shutil.move(str(Path(tmp_s) / CLASSIFIER_FILE), out_dir / CLASSIFIER_FILE)
    return spec


# -- stage 7: manifest -----------------------------------------------------------------------


def build_manifest(
    out_dir: Path,
    name: str,
    units: list[str] | None,
    opts: TrainOptions,
    data: PreparedData,
    levels: FittedLevels,
    student: Student,
    calibration: Calibration,
    teacher: TaughtTeacher | None = None,
    classifier: dict[str, Any] | None = None,
    seconds: float = 0.0,
) -> dict[str, Any]:
    """The manifest of the files in `out_dir` (hashed here, so it describes what was written),
    as `bundle.Manifest` reads it. `seconds`: the training's wall time, for the record."""
    digest = sha256_file(out_dir / MODEL_FILE)
    created = datetime.now(UTC)
    rel, shift, w = levels.relations, levels.shift, opts.window
    files = [
        MODEL_FILE,
        *([FP32_FILE] if opts.keep_fp32 else []),
        *([CLASSIFIER_FILE] if classifier is not None else []),
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "model_version": f"{name}-{created:%Y%m%dT%H%M%SZ}-{digest[:8]}",
        "created_at": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "signals": data.signals,
        "units": units,
        "sample_period_s": data.period,
        "window": w,
        "hop": opts.hop,
        "scaler": {"mean": data.mean.tolist(), "scale": data.scale.tolist()},
        "normal_range": {"low": data.low.tolist(), "high": data.high.tolist()},
        "level_model": {
            "method": "relation residuals of window levels, leverage-aware tolerance interval",
            "coverage": opts.level_coverage,
            "confidence": opts.level_confidence,
            "effective_samples": [round(float(n), 1) for n in rel.level_effective_samples],
            "explained": [round(float(r), 4) for r in rel.explained],
            "tolerance": [
                round(float(h), 4) if ok else None
                for h, ok in zip(rel.half_width, rel.judged, strict=True)
            ],
        },
        "level_shift": {
            "window": w,
            "time_constant": shift.params.time_constant,
            "coverage": opts.level_coverage,
            "confidence": opts.level_confidence,
            "effective_samples": shift.effective_samples,
            "false_alerts_per_hour": opts.shift_false_per_hour,
            "offset": [round(float(v), 6) for v in shift.params.offset],
            "tolerance": [
                round(float(t), 6) if ok else None
                for t, ok in zip(shift.params.tolerance, shift.judged, strict=True)
            ],
        }
        if opts.level_shift
        else None,
        "stuck_after_samples": levels.stuck_after,
        "threshold": {
            "raise": calibration.raise_,
            "clear": calibration.clear,
            "method": "quantile of int8 scores on held-out normal windows, times (1 + margin), "
            "at least normal_peak",
            "quantile": opts.quantile,
            "margin": opts.margin,
            "calibration_windows": len(data.calibration),
            "normal_peak": calibration.normal_peak,
        },
        "alerting": calibration.alerting,
        "model": {
            "file": MODEL_FILE,
            "input": INPUT,
            "outputs": list(OUTPUTS),
            "precision": "int8",
            "architecture": "conv1d-autoencoder, distilled"
            if student.distilled
            else "conv1d-autoencoder",
        },
        "classifier": classifier,
        "files": {
            f: {"sha256": sha256_file(out_dir / f), "bytes": (out_dir / f).stat().st_size}
            for f in files
        },
        "agreement": calibration.agreement,
        "training": {
            "rows": data.rows,
            "train_windows": len(data.train),
            "student_fit_windows": len(data.fit),
            "calibration_windows": len(data.calibration),
            "steps": len(student.losses),
            "levels_judged": str(levels.judge_levels).lower(),
            # Named for whoever reads the bundle: scale floored, levels and shifts not judged.
            "constant_signals": ", ".join(data.constant),
            "final_loss": float(np.mean(student.losses[-50:])),
            "seconds": seconds,
            "seed": opts.seed,
            "hash": data.data_hash,
            **(teacher.info() if teacher is not None else {"teacher": "none"}),
        },
    }


def _write_report(
    out_dir: Path,
    manifest: dict[str, Any],
    student: Student,
    calibration: Calibration,
    teacher: TaughtTeacher | None,
) -> None:
    try:
        from edge_agent.training.report import write_report
    except ImportError:
        log.warning("no training report: matplotlib is not installed")
        return
    write_report(
        out_dir / "report.png", manifest["model_version"], student.losses,
        teacher.teacher.losses if teacher is not None else [], calibration.fit_scores,
        calibration.heldout_scores, teacher.calibration_scores if teacher is not None else None,
        calibration.raise_, calibration.clear, calibration.agreement,
    )  # fmt: skip


def train_bundle(
    tables: Sequence[Table],
    signals: list[str],
    out_dir: Path,
    opts: TrainOptions,
    expected_period: float | None = None,
    units: list[str] | None = None,
    name: str = "model",
    artifacts: dict[str, Any] | None = None,
    faults: list[Table] | None = None,
    label_column: str = "label",
    max_age: float | None = None,
    energy: EnergySignals | None = None,
) -> Bundle:
    """Train and write a bundle from the normal data in `tables` (one recording each). The rows
    go through the agent's own assembler and window buffer (`training/data.py`); `max_age` is
    the asset's (default 2.5 sample periods, as the agent's). `artifacts`, when given, receives
    what the bundle does not carry but a benchmark needs (the teacher, its weights and its
    calibrated thresholds, and the torch student)."""
    t_start = time.monotonic()
    data = prepare_data(tables, signals, opts, expected_period, max_age)
    levels = fit_levels(data, opts)
    teacher = fit_teacher(data, levels, opts)
    student = distill_student(data, levels, opts, teacher)
    calibration = export_and_calibrate(student, data, opts, out_dir, teacher)
    classifier = (
        train_fault_classifier(faults, data, opts, out_dir, label_column) if faults else None
    )
    manifest = build_manifest(
        out_dir, name, units, opts, data, levels, student, calibration, teacher, classifier,
        seconds=round(time.monotonic() - t_start, 1),
    )  # fmt: skip
    if energy is not None:
        # With the profile's energy points in the data: the model `efficiency` alerts use.
        efficiency = fit_from_tables(tables, energy, data.period)
        manifest["efficiency"] = efficiency.model_dump() if efficiency is not None else None
    write_manifest(out_dir, manifest)
    _write_report(out_dir, manifest, student, calibration, teacher)
    if artifacts is not None:
        artifacts["student"] = student.scorer  # the torch student the graphs were exported from
        artifacts["quantization"] = data.quantization  # the windows int8 was calibrated on
        if teacher is not None:
            artifacts.update(teacher.artifacts(opts))
    log.info("bundle written to %s (%s)", out_dir / MANIFEST, manifest["model_version"])
    return Bundle.load(out_dir)
