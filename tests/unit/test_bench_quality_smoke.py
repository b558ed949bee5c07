"""`edge-agent bench quality` end to end at toy size, so the benchmark cannot rot unnoticed.
(The figures it prints are not checked here: they are measured by running the benchmark.)"""

import math

import pytest

from edge_agent.bench.quality import QualityConfig, run_quality, table_text


def test_quality_bench_runs_at_toy_size(tmp_path):
    pytest.importorskip("torch")
    cfg = QualityConfig(
        seeds=1, jobs=1, train_hours=0.25, little_minutes=5, normal_s=120, fault_s=120,
        drift_hours=0.05, teacher_steps=5, student_steps=20, scenarios=["cavitation"],
    )  # fmt: skip
    result = run_quality(cfg, tmp_path, log=lambda *_: None)
    keys = {(r["data"], r["stream"], r["variant"]) for r in result["results"]}
    assert keys == {
        (d, s, v)
        for d in ("full", "little")
        for s in ("cavitation", "normal_drift")
        for v in ("int8", "fp32", "teacher")
    }
    cav = [r for r in result["results"] if r["stream"] == "cavitation"]
    assert all(r["episodes"] == 1 and 0.0 <= r["f1"] <= 1.0 for r in cav)
    assert all(not math.isnan(r["false_alarm_rate"]) for r in result["results"])
    assert "| full | cavitation | int8 |" in table_text(result["summary"])
