"""Assets whose bundles carry identical model bytes share one ONNX Runtime session (issue 7:
memory per asset); different models never do, and a shared session scores exactly like its own."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import numpy as np
import onnx

from edge_agent.inference.detector import Detector, DetectorPool


def test_identical_models_share_a_session_and_score_identically(trained_bundle, tmp_path: Path):  # type: ignore[no-untyped-def]
    src = trained_bundle.model_path
    copy = tmp_path / "copy.onnx"
    shutil.copyfile(src, copy)
    pool = DetectorPool()
    a = pool.get(src, trained_bundle.manifest.model.input)
    b = pool.get(copy, trained_bundle.manifest.model.input)
    assert a is b  # same bytes, another path: one session
    other = tmp_path / "other.onnx"  # the same graph, other bytes: another model to the pool
    model = onnx.load(str(src))
    model.doc_string = "another model"
    onnx.save(model, str(other))
    assert pool.get(other, trained_bundle.manifest.model.input) is not a
    x = np.random.default_rng(0).normal(size=(5, 32, 8)).astype(np.float32)
    own = Detector(src, trained_bundle.manifest.model.input)
    for got, want in zip(a.score(x), own.score(x), strict=True):
        assert np.array_equal(got, want)


def test_a_session_goes_with_its_last_user(trained_bundle):  # type: ignore[no-untyped-def]
    pool = DetectorPool()
    d = pool.get(trained_bundle.model_path)
    assert len(pool) == 1
    del d
    gc.collect()
    assert len(pool) == 0
    assert DetectorPool().get(trained_bundle.model_path) is not pool.get(trained_bundle.model_path)


def test_pipelines_share_through_the_pool_they_are_given(trained_bundle):  # type: ignore[no-untyped-def]
    from edge_agent.config import AssetConfig, SignalConfig
    from edge_agent.pipeline import AssetPipeline

    m = trained_bundle.manifest

    def asset(name: str) -> AssetConfig:
        return AssetConfig(
            name=name, sample_period_s=m.sample_period_s, bundle=trained_bundle.directory,
            signals=[SignalConfig(name=s, source="plc") for s in m.signals],
        )  # fmt: skip

    pool = DetectorPool()
    a = AssetPipeline(asset("pump-1"), trained_bundle, pool)
    b = AssetPipeline(asset("pump-2"), trained_bundle, pool)
    c = AssetPipeline(asset("pump-3"), trained_bundle)
    assert a.detector is b.detector
    assert c.detector is not a.detector
