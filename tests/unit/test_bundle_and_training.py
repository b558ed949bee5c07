"""Bundle verification and training input checks, on a bundle really trained from simulator data."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import AssetConfig
from edge_agent.csvdata import Table
from edge_agent.inference.bundle import Bundle, BundleError, read_manifest, write_manifest
from edge_agent.pipeline import AssetPipeline
from tests.conftest import PERIOD, SIGNALS, agent_config, sign


def copy_bundle(bundle: Bundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle.directory, tmp_path / "b"))


def test_trained_bundle_is_int8_and_verified(trained_bundle):
    m = trained_bundle.manifest
    assert m.model.precision == "int8"
    assert m.signals == SIGNALS
    assert m.threshold.clear <= m.threshold.raise_
    assert m.agreement["int8_vs_fp32_decision_agreement"] >= 0.99
    # The quantized graph really holds int8 weights (QDQ): DequantizeLinear nodes are present.
    import onnx

    ops = {n.op_type for n in onnx.load(str(trained_bundle.model_path)).graph.node}
    assert "DequantizeLinear" in ops and "QuantizeLinear" in ops
    assert Bundle.load(trained_bundle.directory).manifest == m


def test_tampered_model_is_refused(trained_bundle, tmp_path):
    d = copy_bundle(trained_bundle, tmp_path)
    with (d / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="checksum mismatch"):
        Bundle.load(d)


def test_broken_manifest_is_refused(trained_bundle, tmp_path):
    d = copy_bundle(trained_bundle, tmp_path)
    m = read_manifest(d)
    m["scaler"]["mean"] = m["scaler"]["mean"][:-1]
    write_manifest(d, m)
    with pytest.raises(BundleError, match=r"scaler\.mean has 7 entries for 8 signals"):
        Bundle.load(d)


def test_signal_mismatch_names_the_difference(trained_bundle):
    with pytest.raises(BundleError, match="config signals not in bundle: vibration_xx"):
        trained_bundle.check_signals([*SIGNALS[:-1], "vibration_xx"])


def test_sample_period_mismatch_is_refused(trained_bundle):
    asset = AssetConfig(
        name="pump-1", sample_period_s=1.0, bundle=trained_bundle.directory,
        signals=[{"name": s, "source": "plc"} for s in SIGNALS],
    )  # fmt: skip
    with pytest.raises(BundleError, match="sample period"):
        AssetPipeline(asset, trained_bundle)


def test_agent_refuses_mismatched_bundle_with_exit_2(trained_bundle, tmp_path):
    d = copy_bundle(trained_bundle, tmp_path)
    m = read_manifest(d)
    m["signals"][0] = "spindle_speed"
    write_manifest(d, m)
    sign(d)  # a validly signed bundle for other signals
    cfg = agent_config(tmp_path / "a.yaml", sim_port=1502, broker_port=1883, bundle=d)
    r = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert "bundle signals not in config: spindle_speed" in r.stderr
    assert "Traceback" not in r.stderr


def table(n, cols=2, period=1.0):
    rng = np.random.default_rng(0)
    return Table.of(
        ts=np.arange(n) * period,
        columns=[f"s{i}" for i in range(cols)],
        values=rng.normal(size=(n, cols)),
    )


def test_training_input_errors_are_clear(tmp_path):
    pytest.importorskip("torch")
    from edge_agent.training.train import TrainingError, TrainOptions, train_bundle

    opts = TrainOptions(max_steps=5, progress=False, teacher_steps=5)
    with pytest.raises(TrainingError, match="too few usable samples: 50 valid"):
        train_bundle([table(50)], ["s0", "s1"], tmp_path / "x", opts)
    t = table(400)
    t.values[:, 1] = np.nan
    with pytest.raises(TrainingError, match="no numeric values: s1"):
        train_bundle([t], ["s0", "s1"], tmp_path / "x", opts)
    with pytest.raises(TrainingError, match="sample period 1 s differs"):
        train_bundle([table(400)], ["s0", "s1"], tmp_path / "x", opts, expected_period=PERIOD)


def test_constant_signal_and_gaps_still_train(tmp_path):
    pytest.importorskip("torch")
    from edge_agent.training.train import TrainOptions, train_bundle

    t = table(600)
    t.values[:, 1] = 5.0  # constant: must not give a zero scale
    t.values[100:110, 0] = np.nan  # a gap: windows must not span it
    b = train_bundle(
        [t],
        ["s0", "s1"],
        tmp_path / "b",
        TrainOptions(max_steps=20, progress=False, teacher_steps=10),
    )
    assert all(s > 0 for s in b.manifest.scaler.scale)


def test_bundle_raises_no_alert_on_its_own_training_data(trained_bundle):
    """The data the user called normal replays through the agent's own pipeline without an
    alert: the raise threshold is at least the raise rule's peak on it (training/alerting.py)."""
    from edge_agent.csvdata import read_table
    from edge_agent.replay import replay
    from edge_agent.replay_cli import pipeline_for

    manifest = trained_bundle.manifest
    assert manifest.threshold.normal_peak is not None
    assert manifest.threshold.raise_ >= manifest.threshold.normal_peak
    table = read_table(trained_bundle.directory.parent / "normal.csv")
    rows = list(replay(pipeline_for(trained_bundle), table))
    raised = [e for r in rows for e in r.events if e.event.value == "raised"]
    assert len(rows) == 12000 and raised == []


@pytest.mark.parametrize("quiet", ["bundle", 0])
def test_a_signal_going_back_where_it_was_hardly_scores(trained_bundle, quiet):
    """The level-shift stage as the pipeline builds it from a bundle: a judged signal stepped
    away scores on the way out; stepped back, once its reference had followed, far fewer windows
    score than on the way out (about a third here: the anchor crept toward the held level, see
    stream/level_shift.py; the anchor's time constant is the bundle's calibrated quiet
    period, whether or not the asset turns episodes off)."""
    m = trained_bundle.manifest
    assert m.level_shift is not None and m.alerting is not None
    asset = AssetConfig(
        name="pump-1", sample_period_s=m.sample_period_s, bundle=trained_bundle.directory,
        alert_quiet_period_s=quiet, signals=[{"name": s, "source": "plc"} for s in SIGNALS],
    )  # fmt: skip
    p = AssetPipeline(asset, trained_bundle)
    assert p.level_shift is not None
    anchor = p.level_shift.params.anchor_time_constant
    assert anchor == pytest.approx(m.alerting.quiet_period_s / m.sample_period_s)
    j = next(i for i, t in enumerate(m.level_shift.tolerance) if t is not None)
    mean = np.asarray(m.scaler.mean)
    away = mean.copy()
    away[j] += 5.0 * m.level_shift.tolerance[j] * m.scaler.scale[j]
    w = m.level_shift.window

    def over(values: np.ndarray, n: int) -> int:
        return sum(float(np.nan_to_num(p.shift_ratio(values, True))[j]) > 1.0 for _ in range(n))

    over(mean, 10 * w)
    out = over(away, 6 * w)
    assert out > w // 2
    assert over(mean, 6 * w) <= out / 2  # without the anchor as many as on the way out
