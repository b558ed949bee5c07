"""The false-alarm budget: one event when raised alerts come several-fold faster than calibrated."""

from edge_agent.alerts.budget import FalseAlarmBudget


def test_no_event_within_budget_or_before_enough_alerts():
    b = FalseAlarmBudget(expected_per_hour=1.0)
    # Two alerts in the first minute: 120 per hour, but two alerts are no rate yet.
    assert b.observe(60, 1.0, 2) is None
    # Then 10 quiet hours: 3 alerts in ~10 h is within budget.
    assert b.observe(36_000, 1.0, 1) is None
    assert 0.29 < b.observed_per_hour < 0.31


def test_one_event_when_the_rate_exceeds_the_budget_several_fold():
    b = FalseAlarmBudget(expected_per_hour=0.5)
    msgs = [b.observe(3600, 1.0, 3) for _ in range(5)]  # 3 per hour: 6x the budget
    assert msgs[0] is not None and "6x" not in msgs[0] and "5x the 0.5 per hour" in msgs[0]
    assert msgs[1:] == [None] * 4  # said once
    assert b.observed_per_hour == 3.0
