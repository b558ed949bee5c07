import numpy as np
import pytest

from edge_agent.alerts.policy import AlertPolicy, PolicyParams, SignalInfo
from edge_agent.types import AlertEventKind, Score

INFO = SignalInfo(["vib", "temp"], ["mm/s", "degC"], [1.0, 20.0], [3.0, 60.0])


def policy(**kw):
    params = PolicyParams(raise_threshold=1.0, clear_threshold=0.8, **{"k": 3, "n": 5, **kw})
    return AlertPolicy("pump-1", params, INFO, "m1")


def feed(p, scores, t0=0.0):
    events = []
    for i, s in enumerate(scores):
        e = p.update(
            Score(
                "pump-1",
                t0 + i,
                s,
                np.array([s * 0.9, s * 0.1], np.float32),
                np.array([5.0, 40.0], np.float32),
            )
        )
        if e is not None:
            events.append((i, e))
    return events


def test_single_spikes_do_not_raise():
    assert feed(policy(), [0.5, 2.0, 0.5, 0.5, 2.0, 0.5, 0.5, 0.5]) == []


def test_k_of_n_raises_once_and_never_re_raises_while_active():
    events = feed(policy(), [2.0, 0.5, 2.0, 2.0] + [5.0] * 20)
    assert [(i, e.event) for i, e in events] == [(3, AlertEventKind.RAISED)]
    e = events[0][1]
    assert e.contributions[0].signal == "vib"
    assert "vib 5 mm/s (normal 1–3)" in e.message
    assert e.severity == "warning"


def test_hysteresis_band_keeps_alert_until_all_n_below_clear():
    # 0.9 is below raise but above clear: the alert stays.
    events = feed(policy(), [2.0] * 3 + [0.9] * 10 + [0.7] * 4 + [0.5])
    kinds = [(i, e.event) for i, e in events]
    assert kinds == [(2, AlertEventKind.RAISED), (17, AlertEventKind.CLEARED)]
    assert events[0][1].alert_id == events[1][1].alert_id


def test_cooldown_delays_a_new_alert_and_ids_differ():
    p = policy(cooldown_s=100.0)
    first = feed(p, [2.0] * 3 + [0.1] * 5)
    assert [e.event for _, e in first] == [AlertEventKind.RAISED, AlertEventKind.CLEARED]
    assert feed(p, [2.0] * 10, t0=8) == []  # inside the cooldown
    later = feed(p, [2.0] * 3, t0=200)
    assert [e.event for _, e in later] == [AlertEventKind.RAISED]
    assert later[0][1].alert_id != first[0][1].alert_id


def test_alert_id_is_reproducible():
    a = feed(policy(), [2.0] * 3)[0][1].alert_id
    b = feed(policy(), [2.0] * 3)[0][1].alert_id
    assert a == b


def test_critical_severity():
    assert feed(policy(), [5.0] * 3)[0][1].severity == "critical"


def test_invalid_params():
    with pytest.raises(ValueError):
        PolicyParams(raise_threshold=1.0, clear_threshold=2.0)
    with pytest.raises(ValueError):
        PolicyParams(raise_threshold=1.0, clear_threshold=0.5, k=6, n=5)


def test_updated_on_severity_change_is_rate_limited_and_keeps_the_alert_id():
    p = policy(update_interval_s=10.0)
    # raised as a warning at i=2, critical from i=4 (but within 10 s), warning again at i=20.
    events = feed(p, [2.0] * 4 + [5.0] * 16 + [2.0] * 12 + [0.1] * 5)
    kinds = [(i, e.event, e.severity) for i, e in events]
    assert kinds == [
        (2, AlertEventKind.RAISED, "warning"),
        (12, AlertEventKind.UPDATED, "critical"),
        (22, AlertEventKind.UPDATED, "warning"),
        (36, AlertEventKind.CLEARED, "warning"),
    ]
    assert len({e.alert_id for _, e in events}) == 1
    assert "anomaly updated (critical)" in events[1][1].message


def test_no_updates_unless_configured():
    events = feed(policy(), [2.0] * 4 + [5.0] * 16 + [0.1] * 5)
    assert [e.event for _, e in events] == [AlertEventKind.RAISED, AlertEventKind.CLEARED]


def test_a_resumed_alert_is_not_raised_again_and_clears_under_its_id():
    """After a restart (issue 12): the alert consumers hold open continues, never a second id."""
    p = policy()
    p.resume("held-id", since=-100.0, severity="critical")
    assert p.active_alert == "held-id"
    assert feed(p, [5.0] * 10) == []  # the fault goes on: no new raise
    events = feed(p, [0.1] * 5, t0=10.0)
    assert [(i, e.event, e.alert_id) for i, e in events] == [(4, AlertEventKind.CLEARED, "held-id")]
    assert "held open across an agent restart" in events[0][1].message
    assert "after 114 s" in events[0][1].message  # since the first raise, before the restart
