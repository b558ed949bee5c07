"""`edge-agent bench quality` end to end at toy size, so the benchmark cannot rot unnoticed.
(The figures it prints are not checked here: they are measured by running the benchmark.)"""

import math

import pytest

from bench.quality import QualityConfig, run_quality, table_text


def test_quality_bench_runs_at_toy_size(tmp_path):
    pytest.importorskip("torch")
    cfg = QualityConfig(
        seeds=1, jobs=1, train_hours=0.25, little_minutes=5, normal_s=120, fault_s=120,
        drift_hours=0.05, teacher_steps=5, student_steps=20, scenarios=["cavitation"],
    )  # fmt: skip
    result = run_quality(cfg, tmp_path, log=lambda *_: None)
    keys = {(r["data"], r["stream"], r["variant"]) for r in result["results"]}
    streams = ("cavitation", "normal_drift")
    assert keys == {("full", s, v) for s in streams for v in ("int8", "fp32", "teacher")} | {
        (d, s, "int8") for d in ("little", "little-shape") for s in streams
    }
    cav = [r for r in result["results"] if r["stream"] == "cavitation"]
    assert all(r["episodes"] == 1 and 0.0 <= r["f1"] <= 1.0 for r in cav)
    assert all(not math.isnan(r["false_alarm_rate"]) for r in result["results"])
    assert "| full | cavitation | int8 |" in table_text(result["summary"])
    # The shape-only bundle judges no level; the others judge those that moved beyond noise.
    from edge_agent.inference.bundle import Bundle

    shape = Bundle.load(tmp_path / "seed0" / "bundle-little-shape").manifest.level_model
    full = Bundle.load(tmp_path / "seed0" / "bundle-full").manifest.level_model
    assert shape is not None and full is not None
    assert shape.tolerance == [None] * len(shape.tolerance)
    assert any(t is not None for t in full.tolerance)
