"""Frozen transmitters are reported as bad data after repeating longer than normal data ever did."""

import numpy as np

from edge_agent.stream.assembler import Assembler
from edge_agent.stream.stuck import longest_runs, stuck_limits
from edge_agent.types import Batch, Quality, Reading, Sample


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


def feed(asm: Assembler, t: float, a: float, b: float = 1.0) -> list[Sample]:
    return asm.push(Batch("plc", t, (Reading("a", a, Quality.GOOD), Reading("b", b, Quality.GOOD))))


def test_a_frozen_signal_is_flagged_after_its_limit_and_recovers():
    asm = Assembler({("plc", "a"): 0, ("plc", "b"): 1}, 1.0, 2.5, stuck_after=[5, None])
    rng = np.random.default_rng(1)
    out = [s for t in range(20) for s in feed(asm, t, float(rng.standard_normal()))]
    assert all(s.valid for s in out)  # the constant second column is never judged
    # Each batch lands on its grid instant and completes it.
    frozen = [s for t in range(8) for s in feed(asm, 20 + t, 0.5)]
    assert [s.valid for s in frozen] == [True] * 4 + [False] * 4  # a run of 5 is stuck
    assert frozen[-1].issues == ((0, "stuck"),)
    assert feed(asm, 28, 0.6)[0].valid


def test_missing_values_break_a_run_and_a_slow_poll_counts_grid_instants():
    asm = Assembler({("plc", "a"): 0, ("plc", "b"): 1}, 1.0, 10.0, stuck_after=[2, None])
    values = [1.0, 3.0, 3.0, float("nan"), 1.0, 1.0, 1.0, 2.0]
    out = [s for t, v in enumerate(values) for s in feed(asm, t, v)]
    assert [s.valid for s in out] == [True, True, False, False, True, False, False, True]
    assert out[2].issues == ((0, "stuck"),) and out[6].issues == ((0, "stuck"),)
    # Polled every 3 s on a 1 s grid: sample-and-hold repeats a value 3 times, within a limit
    # of 4 learnt from such data; a frozen device exceeds it.
    asm = Assembler({("plc", "a"): 0, ("plc", "b"): 1}, 1.0, 5.0, stuck_after=[4, None])
    out = [s for t in range(0, 12, 3) for s in feed(asm, t, float(t))]
    out += asm.push(Batch("plc", 12.0, ()))
    assert all(s.valid for s in out)
    out = [s for t in range(12, 24, 3) for s in feed(asm, t, 99.0)]
    assert [s.valid for s in out[:4]] == [True] * 3 + [False]  # a run of 4 reaches the limit


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
