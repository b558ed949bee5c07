"""`edge-agent bench quality --mode plant` end to end at toy size, and the plant runs it draws.
(The figures it prints are measured by running the benchmark, not checked here.)"""

import numpy as np
import pytest

from bench.plant import DETECTORS, PlantConfig, run_plant, table_text
from edge_agent.csvdata import read_table
from simulators.plant_runs import plant_run


def test_a_plant_run_trains_on_healthy_minutes_then_one_fault_episode():
    run = plant_run(5, "pump")
    labels = np.array(run.labels)
    assert 300 <= run.train_rows <= 600
    assert set(labels[: run.train_rows]) == {"normal"}
    fault = np.flatnonzero(labels != "normal")
    assert fault.size and set(labels[fault]) == {run.fault}
    # One contiguous episode inside the test part, normal operation after it.
    assert fault[-1] - fault[0] + 1 == fault.size and fault[-1] < len(labels) - 1
    assert plant_run(5, "pump").values.tobytes() == run.values.tobytes()  # a function of its seed


def test_plant_bench_runs_at_toy_size(tmp_path):
    pytest.importorskip("torch")
    cfg = PlantConfig(pump_runs=1, compressor_runs=0, jobs=1, teacher_steps=0, student_steps=20)
    result = run_plant(cfg, tmp_path, log=lambda *_: None)
    (r,) = result["results"]
    counts = r["counts"]
    assert set(counts) == set(DETECTORS)
    # Every detector is scored on the very same test samples.
    totals = {sum(c.values()) for c in counts.values()}
    assert len(totals) == 1 and totals.pop() > 600
    assert counts["always"]["fn"] == 0 and counts["always"]["tn"] == 0
    assert "| all (1) | int8 |" in table_text(result["summary"])
    # What was trained on is a historian export with awkward headers, read back as names.
    table = read_table(tmp_path / "pump-000-train.csv")
    assert "Vibration DE RMS" in table.columns
    assert len(table.ts) < r["train_rows"]  # rows the historian missed
