"""The model I/O contract (`inference/model_io.py`): export writes it, the manifest records it,
bundle loading checks it and the detector runs the model by the manifest's names."""

import hashlib
import shutil

import numpy as np
import onnx
import pytest

from edge_agent.inference.bundle import (
    Bundle,
    BundleError,
    read_manifest,
    sha256_file,
    write_manifest,
)
from edge_agent.inference.detector import Detector, DetectorPool
from edge_agent.inference.model_io import INPUT, OUTPUTS, check_outputs


def test_exported_graph_and_manifest_follow_the_contract(trained_bundle):
    m = trained_bundle.manifest.model
    assert (m.input, tuple(m.outputs)) == (INPUT, OUTPUTS)
    # The fp32 twin's contract: tests/unit/test_training_stages.py (keep_fp32).
    assert not (trained_bundle.directory / "model.fp32.onnx").exists()
    graph = onnx.load(str(trained_bundle.directory / "model.onnx")).graph
    assert [i.name for i in graph.input] == [INPUT]
    assert tuple(o.name for o in graph.output) == OUTPUTS


@pytest.mark.parametrize(
    "outputs", [["signal_error", "score"], ["score"], ["score", "signal_error", "extra"]]
)
def test_bundle_with_other_outputs_is_refused_on_load(trained_bundle, tmp_path, outputs):
    d = shutil.copytree(trained_bundle.directory, tmp_path / "b")
    m = read_manifest(d)
    m["model"]["outputs"] = outputs  # type: ignore[index]
    write_manifest(d, m)
    with pytest.raises(BundleError, match=r"model\.outputs: .*not the ones this agent runs"):
        Bundle.load(d)


def test_check_outputs_names_both():
    check_outputs(list(OUTPUTS))
    with pytest.raises(ValueError, match=r"\['score'\] are not .* \['score', 'signal_error'\]"):
        check_outputs(["score"])


def test_detector_runs_the_manifests_output_names(trained_bundle):
    m = trained_bundle.manifest
    det = Detector(trained_bundle.model_path, m.model.input, m.model.outputs)
    assert det.outputs == m.model.outputs
    score, errors = det.score(np.zeros((3, m.window, len(m.signals)), np.float32))
    assert score.shape == (3,) and errors.shape == (3, len(m.signals))
    # The score is the mean of the per-signal errors: the order of the outputs is right.
    np.testing.assert_allclose(score, errors.mean(axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match="model has no output 'anomaly'"):
        Detector(trained_bundle.model_path, m.model.input, ["anomaly", "signal_error"])


def test_pool_keys_on_output_names(trained_bundle):
    pool = DetectorPool()
    m = trained_bundle.manifest.model
    a = pool.get(trained_bundle.model_path, m.input, m.outputs)
    assert pool.get(trained_bundle.model_path, m.input, list(OUTPUTS)) is a
    assert pool.get(trained_bundle.model_path, m.input, ["score"]) is not a


def test_sha256_file_is_the_plain_sha256(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 3_000_000)
    assert sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()
