import numpy as np

from edge_agent.evaluation import evaluate, is_fault


def test_labels():
    assert is_fault(["normal", "", "bearing_wear", "0", "Cavitation"]).tolist() == [
        False, False, True, False, True,
    ]  # fmt: skip


def test_metrics_on_a_known_sequence():
    ts = np.arange(10, dtype=float)
    fault = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0], bool)
    alert = np.array([0, 1, 0, 0, 0, 0, 1, 1, 1, 0], bool)
    q = evaluate(ts, alert, fault, raised_at=[1.0, 6.0])
    assert (q.precision, q.recall) == (2 / 4, 2 / 4)
    assert q.f1 == 0.5
    assert q.false_alarm_rate == 2 / 6
    assert q.missed_alarm_rate == 0.5
    assert (q.episodes, q.episodes_detected) == (1, 1)
    assert q.mean_delay_s == 2.0
    assert q.false_alarms == 1  # the alert raised at t=1 in normal operation


def test_missed_episode_and_no_faults():
    ts = np.arange(6, dtype=float)
    q = evaluate(ts, np.zeros(6, bool), np.array([0, 1, 1, 0, 1, 0], bool), [])
    assert (q.episodes, q.episodes_detected, q.recall) == (2, 0, 0.0)
    assert np.isnan(q.mean_delay_s)
    q = evaluate(ts, np.zeros(6, bool), np.zeros(6, bool), [])
    assert (q.precision, q.recall, q.false_alarm_rate) == (1.0, 1.0, 0.0)
