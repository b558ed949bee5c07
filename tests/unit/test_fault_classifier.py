"""A bundle trained with labelled fault data names the fault class in its alerts."""

from pathlib import Path

import jsonschema
import pytest

from edge_agent.alerts.messages import alert_payload, load_schema
from edge_agent.csvdata import read_table
from edge_agent.inference.bundle import Bundle
from edge_agent.profiles import load_profile
from edge_agent.replay_cli import run_replay
from simulators.pump import PumpSimulator
from simulators.record import record
from simulators.scenarios import make_scenario
from tests.conftest import PERIOD, PROFILE, SIGNALS, SPEED

SEED = 3


def _record(path: Path, n: int, scenario: str | None = None, at: float = 0.0, warmup: float = 0.0):
    sim = PumpSimulator(SEED, make_scenario(scenario, at))
    return record(load_profile(PROFILE), path, n, PERIOD, speed=SPEED, sim=sim, warmup=warmup)


@pytest.fixture(scope="module")
def classified_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    pytest.importorskip("torch")
    from edge_agent.training.train import TrainOptions, train_bundle

    d = tmp_path_factory.mktemp("classified")
    normal = read_table(_record(d / "normal.csv", 6000))
    # Labelled fault data of the same unit: 400 s normal, then the fault.
    faults = [
        read_table(_record(d / f"{sc}.csv", 1500, sc, at=6400.0, warmup=6000.0))
        for sc in ("cavitation", "rotor_imbalance")
    ]
    opts = TrainOptions(
        progress=False, teacher_steps=0, max_steps=600, classifier_steps=400, distill_windows=2048
    )
    return train_bundle([normal], SIGNALS, d / "bundle", opts, faults=faults)


def test_manifest_lists_classes_and_the_classifier_file(classified_bundle):
    c = classified_bundle.manifest.classifier
    assert c is not None
    assert c.labels == ["normal", "cavitation", "rotor_imbalance"]
    assert "classifier.onnx" in classified_bundle.manifest.files
    assert c.validation_accuracy is not None and c.validation_accuracy > 0.8


@pytest.mark.parametrize("scenario", ["cavitation", "rotor_imbalance"])
def test_alert_carries_the_fault_class(tmp_path, classified_bundle, scenario):
    # Later data of the same unit, not seen in training.
    data = _record(tmp_path / "t.csv", 1500, scenario, at=9400.0, warmup=9000.0)
    rows = run_replay(classified_bundle, read_table(data))
    events = [e for r in rows for e in r.events]
    raised = [e for e in events if e.event.value == "raised"]
    assert raised, "the fault was not detected"
    # A gross fault raises on its first window (one faulty sample, too few to classify); then
    # the class comes in an `updated` event of the same alert within a few samples.
    named = [e for e in events if e.alert_id == raised[0].alert_id and e.kind != "anomaly"]
    assert named, raised[0].message
    first = named[0]
    assert first.ts - raised[0].ts <= 10 * PERIOD
    assert first.kind == scenario, first.message
    assert first.probabilities[0][0] == scenario
    assert f"{scenario} suspected" in first.message
    body = alert_payload(first, "s", "g")
    jsonschema.validate(body, load_schema("alert"))
    assert abs(sum(body["probabilities"].values()) - 1.0) < 0.01


def test_faults_without_labels_are_refused(tmp_path):
    pytest.importorskip("torch")
    from edge_agent.training.train import TrainingError, TrainOptions, train_bundle

    normal = read_table(_record(tmp_path / "n.csv", 600))
    opts = TrainOptions(progress=False, teacher_steps=0, max_steps=5)
    with pytest.raises(TrainingError, match="no text column 'label'"):
        train_bundle([normal], SIGNALS, tmp_path / "b", opts, faults=[normal])
