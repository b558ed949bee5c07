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


# -- severity-aware raising (issue 17) ------------------------------------------------------------


def test_a_score_at_the_gross_cut_raises_on_its_first_window():
    events = feed(policy(gross_threshold=4.0), [0.5, 0.5, 4.0, 0.5])
    assert [(i, e.event) for i, e in events] == [(2, AlertEventKind.RAISED)]
    assert events[0][1].severity == "critical"


def test_marginal_scores_still_need_k_of_n_with_a_gross_cut():
    p = policy(gross_threshold=4.0)
    # 3.9 is far above the raise threshold but below the gross cut: single spikes stay quiet.
    assert feed(p, [0.5, 3.9, 0.5, 0.5, 3.9, 0.5, 0.5, 0.5]) == []
    events = feed(p, [3.9, 3.9, 3.9], t0=100)
    assert [(i, e.event) for i, e in events] == [(2, AlertEventKind.RAISED)]


def test_gross_cut_below_raise_is_refused():
    with pytest.raises(ValueError):
        PolicyParams(raise_threshold=1.0, clear_threshold=0.5, gross_threshold=0.9)


def test_persistence_is_counted_in_samples_whatever_the_hop():
    p = PolicyParams(raise_threshold=1.0, clear_threshold=0.8, k=3, n=5)
    assert (p.for_hop(4, 1).k, p.for_hop(4, 1).n) == (12, 20)
    assert (p.for_hop(4, 2).k, p.for_hop(4, 2).n) == (6, 10)
    assert p.for_hop(4, 4) == p and p.for_hop(4, 8) == p


# -- episodes (issue 19) ---------------------------------------------------------------------


def test_a_recurrence_within_the_quiet_period_is_one_alert_updated_with_a_count():
    p = policy(quiet_period_s=10.0)
    # Raised at 2; calm from 7 (the last 5 below clear): the condition returned to normal; back
    # at 10 (3 of the last 5 above), the raise rule holding until 12; calm again from 15;
    # cleared 10 s after 12, at 22.
    scores = [2.0] * 3 + [0.1] * 5 + [2.0] * 3 + [0.1] * 20
    events = feed(p, scores)
    assert [(i, e.event, e.condition_active) for i, e in events] == [
        (2, AlertEventKind.RAISED, True),
        (7, AlertEventKind.UPDATED, False),
        (10, AlertEventKind.UPDATED, True),
        (15, AlertEventKind.UPDATED, False),
        (22, AlertEventKind.CLEARED, False),
    ]
    assert len({e.alert_id for _, e in events}) == 1
    assert [e.recurrences for _, e in events] == [0, 0, 1, 1, 1]
    assert "returned to normal" in events[1][1].message
    assert "recurred 1x" in events[2][1].message


def test_clears_only_after_the_quiet_period_and_then_a_new_fault_is_a_new_alert():
    p = policy(quiet_period_s=10.0)
    first = feed(p, [2.0] * 3 + [0.1] * 16)
    # The raise rule holds at 2, 3 and 4 (3 of the last 5 above); calm from 7 (the last 5 below
    # clear), but cleared only 10 s after 4, at 14.
    assert [(i, e.event) for i, e in first] == [
        (2, AlertEventKind.RAISED),
        (7, AlertEventKind.UPDATED),  # the condition returned to normal; the alert stays open
        (14, AlertEventKind.CLEARED),
    ]
    assert p.active_alert is None and p.recurrences == 0
    later = feed(p, [2.0] * 3, t0=19)
    assert [e.event for _, e in later] == [AlertEventKind.RAISED]
    assert later[0][1].alert_id != first[0][1].alert_id
    assert later[0][1].recurrences == 0


def test_hovering_between_clear_and_raise_neither_recurs_nor_clears():
    p = policy(quiet_period_s=5.0)
    events = feed(p, [2.0] * 3 + [0.1] * 5 + [0.9] * 30)
    assert [e.event for _, e in events] == [AlertEventKind.RAISED, AlertEventKind.UPDATED]
    assert p.active_alert is not None and not p.condition_active


def test_the_condition_follows_the_scores_within_a_sample_while_the_episode_stays_open():
    """What replay flags per sample: the condition, not the episode (ISA-18.2 return to normal).
    Without a quiet period the two coincide and no return-to-normal update is sent."""
    p = policy(quiet_period_s=100.0, gross_threshold=5.0)
    states = []
    for i, v in enumerate([0.1] * 3 + [2.0] * 4 + [0.1] * 8 + [9.0] + [0.1] * 3):
        p.update(Score("pump-1", i, v, np.array([v, 0.0], np.float32), np.zeros(2, np.float32)))
        states.append((p.active_alert is not None, p.condition_active))
    assert states[:6] == [(False, False)] * 5 + [(True, True)]  # raised at 5: 3 of the last 5
    assert states[10] == (True, True) and states[11] == (True, False)  # last 5 calm at 11
    assert states[14] == (True, False)
    assert states[15] == (True, True) and p.recurrences == 1  # a gross score: active at once
    q = policy(quiet_period_s=0.0)
    events = feed(q, [2.0] * 3 + [0.1] * 5)
    assert [(e.event, e.condition_active) for _, e in events] == [
        (AlertEventKind.RAISED, True),
        (AlertEventKind.CLEARED, False),
    ]


def test_recurrence_count_is_in_the_payload_and_valid_against_the_schema():
    import jsonschema

    from edge_agent.alerts.messages import alert_payload, load_schema

    p = policy(quiet_period_s=10.0)
    events = feed(p, [2.0] * 3 + [0.1] * 5 + [2.0] * 3)
    raised, returned, updated = (alert_payload(e, "s", "g") for _, e in events)
    assert "recurrences" not in raised and updated["recurrences"] == 1
    assert [b["condition_active"] for b in (raised, returned, updated)] == [True, False, True]
    schema = load_schema("alert")
    for body in (raised, returned, updated):
        jsonschema.Draft202012Validator(schema).validate(body)


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


def test_a_resumed_alert_waits_its_quiet_period_from_the_first_window_after_the_restart():
    p = policy(quiet_period_s=10.0)
    p.resume("held-id", since=-100.0, severity="warning")
    events = feed(p, [0.1] * 12)
    # Calm from the 5th window (index 4), but the quiet period runs from the first one (0).
    assert [(i, e.event, e.alert_id) for i, e in events] == [
        (4, AlertEventKind.UPDATED, "held-id"),  # returned to normal
        (10, AlertEventKind.CLEARED, "held-id"),
    ]


def test_the_condition_inside_episodes_is_the_alert_state_without_them():
    """What an operator sees as "anomalous now" does not depend on the quiet period: sample for
    sample, the condition under episodes is the open alert without them (same raise and clear
    rules), while the number of alerts (pages) can only fall."""
    rng = np.random.default_rng(3)
    pages = {"without": 0, "inside": 0}
    for trial in range(40):
        # Bursts of high scores in calm stretches, marginal and gross, of random lengths.
        scores: list[float] = []
        while len(scores) < 400:
            scores += [float(v) for v in rng.uniform(0.0, 0.9, rng.integers(1, 30))]
            scores += [float(v) for v in rng.uniform(0.7, 6.0, rng.integers(1, 12))]
        kw = {"gross_threshold": 4.0} if trial % 2 else {}
        without, inside = policy(quiet_period_s=0.0, **kw), policy(quiet_period_s=25.0, **kw)
        raised = {"without": 0, "inside": 0}
        for i, v in enumerate(scores):
            s = Score(
                "pump-1", float(i), v, np.array([v, 0.0], np.float32), np.zeros(2, np.float32)
            )
            for name, p in (("without", without), ("inside", inside)):
                e = p.update(s)
                raised[name] += e is not None and e.event is AlertEventKind.RAISED
            assert (without.active_alert is not None) == inside.condition_active, (trial, i)
        assert raised["inside"] <= raised["without"]
        for name in pages:
            pages[name] += raised[name]
    assert pages["inside"] < pages["without"] / 2  # bursts closer than 25 s are one episode


def test_a_score_at_the_raise_threshold_keeps_a_condition_but_never_raises():
    """What the level-shift stage's hold relies on: a held level scores exactly the raise
    threshold, which is not calm (an open condition stays active) and is not above it (no alert
    is raised on a held level alone)."""
    assert feed(policy(), [1.0] * 30) == []
    events = feed(policy(), [2.0] * 3 + [1.0] * 30 + [0.5] * 5)
    assert [(i, e.event) for i, e in events] == [
        (2, AlertEventKind.RAISED),
        (37, AlertEventKind.CLEARED),
    ]
