"""Each training stage on its own, on a small synthetic asset (three signals that follow one
load, one constant): tiny step counts, so the whole file takes seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_agent.csvdata import Table
from edge_agent.inference.bundle import Manifest, sha256_file
from edge_agent.inference.model_io import INPUT, OUTPUTS

torch = pytest.importorskip("torch")

from edge_agent.training.train import (  # noqa: E402
    Calibration,
    FittedLevels,
    PreparedData,
    Student,
    TrainingError,
    TrainOptions,
    build_manifest,
    distill_student,
    export_and_calibrate,
    fit_levels,
    fit_teacher,
    prepare_data,
    train_fault_classifier,
)

SIGNALS = ["load", "current", "flow", "setpoint"]
OPTS = TrainOptions(
    window=16, hop=4, max_steps=8, teacher_steps=3, progress=False, distill_windows=300,
    classifier_steps=5,
)  # fmt: skip


def asset_table(n: int = 900, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    load = np.cumsum(rng.normal(0, 0.1, n)) + 10
    values = np.column_stack(
        [
            load,
            2 * load + rng.normal(0, 0.05, n),
            load + rng.normal(0, 0.05, n),
            np.full(n, 50.0),
        ]
    )
    return Table.of(ts=np.arange(n, dtype=np.float64), columns=SIGNALS, values=values)


@pytest.fixture(scope="module")
def data() -> PreparedData:
    return prepare_data([asset_table()], SIGNALS, OPTS)


@pytest.fixture(scope="module")
def levels(data: PreparedData) -> FittedLevels:
    return fit_levels(data, OPTS)


@pytest.fixture(scope="module")
def student(data: PreparedData, levels: FittedLevels) -> Student:
    return distill_student(data, levels, OPTS)


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, data: PreparedData, student: Student
) -> tuple[Path, Calibration]:
    out = tmp_path_factory.mktemp("bundle")
    return out, export_and_calibrate(student, data, OPTS, out)


def test_prepare_data_splits_in_time_and_scales_on_the_fit_part(data):
    # 900 rows at window 16: 885 windows, none across the cut at 720 samples.
    assert len(data.train) == 720 - 15 and len(data.calibration) == 180 - 15
    raw = np.concatenate(data.segments)
    np.testing.assert_allclose(data.mean, raw[:720].mean(axis=0))
    assert data.constant == ["setpoint"] and data.constant_mask == [False, False, False, True]
    assert data.scale[3] > 0  # floored: a constant signal cannot divide by zero
    # The student's windows are a subset of the training windows, the quantizer's of those.
    assert len(data.fit) == 300 and len(data.quantization) == 300
    train_rows = {w.tobytes() for w in data.train}
    assert all(w.tobytes() in train_rows for w in data.fit)
    assert data.train.dtype == np.float32 and data.train.shape[1:] == (16, 4)


def test_prepare_data_is_seeded(data):
    again = prepare_data([asset_table()], SIGNALS, OPTS)
    np.testing.assert_array_equal(again.fit, data.fit)
    np.testing.assert_array_equal(again.quantization, data.quantization)
    assert again.data_hash == data.data_hash
    other = prepare_data([asset_table()], SIGNALS, TrainOptions(**{**vars(OPTS), "seed": 1}))
    assert not np.array_equal(other.fit, data.fit)


def test_prepare_data_needs_windows_on_both_sides_of_the_cut():
    t = asset_table()
    for start in range(0, 900, 20):
        # Longer than the assembler holds a missing value: runs of 16 valid samples.
        t.values[start : start + 4, 0] = np.nan
    with pytest.raises(TrainingError, match="too few complete windows: 0 for training, 0 for"):
        prepare_data([t], SIGNALS, TrainOptions(window=32, progress=False))


def test_fit_levels_judges_absolute_levels_only_with_enough_hours(data, levels):
    assert data.hours < OPTS.level_min_hours and not levels.judge_levels
    assert not any(levels.relations.judged)
    judged = fit_levels(data, TrainOptions(**{**vars(OPTS), "judge_levels": True}))
    assert judged.judge_levels and list(judged.relations.judged[:3]) == [True] * 3
    # A constant signal: no stuck limit, no level-shift judgement.
    assert levels.stuck_after[3] is None and all(s is not None for s in levels.stuck_after[:3])
    assert levels.shift.judged == [True, True, True, False]


def test_fit_teacher_none_without_steps(data, levels):
    assert fit_teacher(data, levels, TrainOptions(**{**vars(OPTS), "teacher_steps": 0})) is None


def test_fit_teacher_gives_targets_for_the_fit_windows(data, levels):
    taught = fit_teacher(data, levels, OPTS)
    assert taught is not None and taught.steps == 3 and len(taught.teacher.losses) == 3
    assert taught.targets.shape == data.fit.shape
    assert taught.calibration_scores.shape == (len(data.calibration),)
    assert np.all(taught.weights > 0)
    art = taught.artifacts(OPTS)
    assert art["teacher_clear"] <= art["teacher_raise"]
    assert taught.info()["teacher_steps"] == 3
    distilled = distill_student(data, levels, OPTS, taught)
    assert distilled.distilled and len(distilled.losses) == OPTS.max_steps


def test_distill_student_loads_weights_and_levels(student, levels):
    assert not student.distilled and len(student.losses) == OPTS.max_steps
    w = student.scorer.weights.numpy()
    assert np.all(np.isfinite(w)) and np.all(w > 0)
    np.testing.assert_allclose(
        student.scorer.levels.half_width.numpy(), levels.relations.half_width, rtol=1e-6
    )


def test_export_and_calibrate_writes_the_int8_model_and_thresholds(exported, data):
    out, cal = exported
    # The gateway's bundle holds the int8 model only; the fp32 twin was measured, then dropped.
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]
    assert 0.99 <= cal.agreement["int8_vs_fp32_decision_agreement"] <= 1
    assert 0 < cal.clear <= cal.raise_
    assert cal.heldout_scores.shape == (len(data.calibration),)
    assert cal.fit_scores.shape == (len(data.fit),)
    # Most held-out windows lie below the threshold they set (quantile 0.999 × 1.25).
    assert np.mean(cal.heldout_scores <= cal.raise_) >= 0.99
    assert cal.agreement["onnx_fp32_vs_torch_max_abs_diff"] < 1e-3
    assert "student_vs_teacher_spearman" not in cal.agreement


def test_the_raise_threshold_is_at_least_the_rules_peak_on_all_normal_data(
    tmp_path, caplog, exported
):
    """The floor (training/alerting.py `normal_peak`): the k-of-n statistic over every normal
    window, training part included. A burst in the training part, which the held-out part does
    not show, lifts the threshold to the burst's peak, and training says so."""
    _, plain = exported
    assert plain.raise_ >= plain.normal_peak  # the floor holds whether or not it decides
    t = asset_table()
    # A minute of the current oscillating against the load (a shape the rest never shows),
    # in the training part.
    t.values[300:360, 1] += np.sin(np.arange(60) * np.pi / 2) * 10.0
    burst = prepare_data([t], SIGNALS, OPTS)
    lv = fit_levels(burst, OPTS)
    with caplog.at_level("INFO", logger="edge_agent.training.train"):
        cal = export_and_calibrate(distill_student(burst, lv, OPTS), burst, OPTS, tmp_path)
    quantile_t = float(np.quantile(cal.heldout_scores, OPTS.quantile)) * (1 + OPTS.margin)
    assert cal.raise_ == cal.normal_peak > quantile_t
    assert "the raise rule's peak on the normal data" in caplog.text


def test_keep_fp32_ships_the_float_twin_in_the_manifest(tmp_path, data, levels, student):
    opts = TrainOptions(**{**vars(OPTS), "keep_fp32": True})
    cal = export_and_calibrate(student, data, opts, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fp32.onnx", "model.onnx"]
    doc = build_manifest(tmp_path, "unit", None, opts, data, levels, student, cal)
    assert sorted(doc["files"]) == ["model.fp32.onnx", "model.onnx"]
    # Both graphs are the lean rewrite: no transposed convolution; the int8 one runs on integers.
    fp32 = [n.op_type for n in onnx.load(str(tmp_path / "model.fp32.onnx")).graph.node]
    int8 = [n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node]
    assert "ConvTranspose" not in fp32 and fp32.count("Conv") == 6
    assert int8.count("QLinearConv") == 6 and "Conv" not in int8 and "ConvTranspose" not in int8
    assert int8.count("QuantizeLinear") == 1 and int8.count("DequantizeLinear") == 1
    # A later run without the flag removes a twin left in the folder.
    export_and_calibrate(student, data, OPTS, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_build_manifest_is_a_valid_manifest_of_the_written_files(exported, data, levels, student):
    out, cal = exported
    doc = build_manifest(out, "unit", None, OPTS, data, levels, student, cal, seconds=1.5)
    m = Manifest.model_validate(json.loads(json.dumps(doc)))
    assert list(m.files) == ["model.onnx"]
    assert (m.model.input, tuple(m.model.outputs)) == (INPUT, OUTPUTS)
    assert m.files["model.onnx"].sha256 == sha256_file(out / "model.onnx")
    assert m.model_version.startswith("unit-") and m.model_version.endswith(
        m.files["model.onnx"].sha256[:8]
    )
    assert m.threshold.raise_ == cal.raise_ and m.threshold.calibration_windows == 165
    assert m.training["teacher"] == "none" and m.training["seconds"] == 1.5
    assert m.model.architecture == "conv1d-autoencoder" and m.classifier is None
    assert m.level_shift is not None and m.level_shift.tolerance[3] is None


def test_train_fault_classifier_writes_its_model_and_manifest_entry(tmp_path, data):
    t = asset_table(600, seed=5)
    t.values[400:, 1] += 3.0  # a fault: current leaves its relation to load
    labels = ["normal"] * 400 + ["overload"] * 200
    faults = Table.of(t.ts, t.columns, t.values, {"label": labels})
    spec = train_fault_classifier([faults], data, OPTS, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["classifier.onnx"]
    assert spec["labels"] == ["normal", "overload"]
    assert (spec["input"], spec["output"]) == (INPUT, "probabilities")
    assert spec["validation_accuracy"] is not None
