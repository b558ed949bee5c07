"""Assets whose bundles carry identical model bytes share one ONNX Runtime session (issue 7:
memory per asset); different models never do, and a shared session scores exactly like its own."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import numpy as np

from edge_agent.inference import detector as det
from edge_agent.inference.detector import Detector, shared_detector


def test_identical_models_share_a_session_and_score_identically(trained_bundle, tmp_path: Path):  # type: ignore[no-untyped-def]
    src = trained_bundle.model_path
    copy = tmp_path / "copy.onnx"
    shutil.copyfile(src, copy)
    a = shared_detector(src, trained_bundle.manifest.model.input)
    b = shared_detector(copy, trained_bundle.manifest.model.input)
    assert a is b  # same bytes, another path: one session
    fp32 = shared_detector(trained_bundle.directory / "model.fp32.onnx")
    assert fp32 is not a
    x = np.random.default_rng(0).normal(size=(5, 32, 8)).astype(np.float32)
    own = Detector(src, trained_bundle.manifest.model.input)
    for got, want in zip(a.score(x), own.score(x), strict=True):
        assert np.array_equal(got, want)


def test_a_session_goes_with_its_last_user(trained_bundle):  # type: ignore[no-untyped-def]
    d = shared_detector(trained_bundle.model_path)
    before = len(det._shared)
    del d
    gc.collect()
    assert len(det._shared) == before - 1
