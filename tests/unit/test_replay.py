"""`edge-agent replay` runs recorded data through the agent's own pipeline."""

import csv
import subprocess
import sys

import numpy as np

from edge_agent.csvdata import read_table
from edge_agent.profiles import load_profile
from edge_agent.replay_cli import run_replay
from simulators.pump import PumpSimulator
from simulators.record import record
from simulators.scenarios import make_scenario
from tests.conftest import PERIOD, PROFILE, SEED, SPEED


def test_replay_cli_scores_and_reports_quality(tmp_path, trained_bundle):
    # The same unit as the bundle was trained on, with cavitation after 300 simulated seconds.
    sim = PumpSimulator(SEED, make_scenario("cavitation", 300.0))
    data = record(load_profile(PROFILE), tmp_path / "cav.csv", 900, PERIOD, speed=SPEED, sim=sim)
    out, png = tmp_path / "scores.csv", tmp_path / "plot.png"
    r = subprocess.run(
        [
            sys.executable, "-m", "edge_agent", "replay", "--bundle", str(trained_bundle.directory),
            "--data", str(data), "--out", str(out), "--labels", "label", "--plot", str(png),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "episodes detected 1/1" in r.stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 900
    raised = [i for i, row in enumerate(rows) if row["event"] == "raised"]
    assert raised and raised[0] >= 300, "no alert before the fault starts"
    assert png.stat().st_size > 10_000


def test_replay_is_deterministic(tmp_path, trained_bundle):
    sim = PumpSimulator(SEED, make_scenario("bearing_wear", 200.0))
    data = record(load_profile(PROFILE), tmp_path / "bw.csv", 1200, PERIOD, speed=SPEED, sim=sim)
    table = read_table(data)
    a = run_replay(trained_bundle, table)
    b = run_replay(trained_bundle, table)
    assert [(e.alert_id, e.event) for r in a for e in r.events] == [
        (e.alert_id, e.event) for r in b for e in r.events
    ]
    np.testing.assert_array_equal([r.score for r in a], [r.score for r in b])


def test_replay_rejects_a_missing_label_column(tmp_path, trained_bundle):
    data = record(load_profile(PROFILE), tmp_path / "n.csv", 100, PERIOD, seed=SEED, speed=SPEED)
    r = subprocess.run(
        [
            sys.executable, "-m", "edge_agent", "replay", "--bundle", str(trained_bundle.directory),
            "--data", str(data), "--out", str(tmp_path / "o.csv"), "--labels", "label",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "no column 'label'" in r.stderr
