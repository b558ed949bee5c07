"""Simulator properties the benchmarks rely on."""

from __future__ import annotations

import numpy as np

from simulators.pump import PumpSimulator


def test_successive_stretches_of_a_unit_are_not_copies_of_each_other():
    """A unit served from `start` (`edge-sim modbus --start`, `bench soak`'s stretches) keeps
    the seed's unit characteristics, but its chance from then on is its own: one started 20 h
    later does not serve the numbers an earlier one serves later in its run (the fast run-up
    draws fewer numbers per simulated second than serving does, so without its own generator a
    later stretch would replay an earlier one's, an hour on)."""
    from simulators.machine import run_up

    def stream(start: float, n: int) -> np.ndarray:
        sim = PumpSimulator(seed=1)
        run_up(sim, 1, start)
        assert sim.state.t == start
        return np.asarray(sim.rng.bit_generator.random_raw(n))

    a, b = stream(86_400.0, 2_000_000), stream(86_400.0 + 72_000.0, 8)
    np.testing.assert_array_equal(stream(86_400.0, 8), a[:8])  # reproducible
    starts = np.flatnonzero(a == b[0])
    assert not any(np.array_equal(a[k : k + 8], b) for k in starts)
    assert PumpSimulator(seed=1).q_rated == PumpSimulator(seed=1).q_rated  # the same unit
