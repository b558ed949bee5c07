"""Frozen transmitters are reported as bad data after repeating longer than normal data ever did."""

import numpy as np

from edge_agent.stream.stuck import StuckSignalCheck, longest_runs, stuck_limits
from edge_agent.types import Sample


def sample(t: float, *values: float) -> Sample:
    return Sample(ts=t, values=np.array(values, np.float32), valid=True)


def test_longest_runs_per_column_within_segments():
    a = np.array([[1, 5], [1, 5], [2, 5], [2, 6], [2, 6]], float)
    b = np.array([[3, 7], [3, 7]], float)
    assert longest_runs([a, b]) == [3, 3]


def test_limits_are_twice_the_longest_run_at_least_a_window_and_none_for_constants():
    rng = np.random.default_rng(0)
    noisy = rng.standard_normal((500, 1))
    held = np.repeat(rng.standard_normal(20), 25)[:, None]  # a slow poll held on the grid
    const = np.full((500, 1), 4.0)
    seg = np.hstack([noisy, held, const])
    assert stuck_limits([seg], 32, [False, False, True]) == [32, 50, None]


def test_a_frozen_signal_is_flagged_after_its_limit_and_recovers():
    check = StuckSignalCheck([5, None])
    rng = np.random.default_rng(1)
    out = [check.apply(sample(t, float(rng.standard_normal()), 1.0)) for t in range(20)]
    assert all(s.valid for s in out)  # the constant second column is never judged
    frozen = [check.apply(sample(20 + t, 0.5, 1.0)) for t in range(8)]
    assert [s.valid for s in frozen] == [True] * 5 + [False] * 3
    assert frozen[-1].issues == ((0, "stuck"),)
    assert check.apply(sample(30, 0.6, 1.0)).valid


def test_missing_values_break_a_run_and_existing_issues_are_kept():
    check = StuckSignalCheck([2])
    assert check.apply(sample(0, 1.0)).valid
    assert check.apply(sample(1, 1.0)).valid
    assert check.apply(sample(2, float("nan"))).valid
    assert check.apply(sample(3, 1.0)).valid
    bad = Sample(ts=4, values=np.array([1.0], np.float32), valid=False, issues=((0, "stale"),))
    check.apply(bad)
    out = check.apply(sample(5, 1.0))
    assert not out.valid and out.issues == ((0, "stuck"),)


def test_pipeline_reports_a_frozen_transmitter_as_bad_data_naming_it(trained_bundle, tmp_path):
    """A real bundle's limits, the simulator's stuck-sensor scenario, the agent's pipeline."""
    from edge_agent.csvdata import read_table
    from edge_agent.profiles import load_profile
    from edge_agent.replay import replay
    from edge_agent.replay_cli import pipeline_for
    from simulators.pump import PumpSimulator
    from simulators.record import record
    from simulators.scenarios import make_scenario
    from tests.conftest import PERIOD, PROFILE, SPEED

    limits = trained_bundle.manifest.stuck_after_samples
    assert limits is not None and all(lim is not None and lim >= 32 for lim in limits)
    at = 300.0
    sim = PumpSimulator(7, scenario=make_scenario("stuck_sensor", at))
    path = record(load_profile(PROFILE), tmp_path / "stuck.csv", 900, PERIOD, speed=SPEED, sim=sim)
    pipeline = pipeline_for(trained_bundle)
    rows = list(replay(pipeline, read_table(path)))
    raised = [r for r in rows if r.bad_data_raised]
    assert len(raised) == 1  # one data-quality episode, raised once
    assert raised[0].bad_data == "discharge_pressure stuck"
    assert all(r.bad_data == "discharge_pressure stuck" for r in rows if r.ts >= raised[0].ts)
    onset = rows[0].ts + at / SPEED
    limit = limits[trained_bundle.manifest.signals.index("discharge_pressure")]
    assert onset + (limit - 1) * PERIOD <= raised[0].ts <= onset + (limit + 2) * PERIOD
    # Before the onset windows were scored; once stuck, none is.
    assert any(r.ts < onset and r.score == r.score for r in rows)
    assert all(r.score != r.score for r in rows if r.ts > raised[0].ts)
