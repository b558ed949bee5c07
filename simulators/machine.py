"""What the servers need from a simulated machine (the pump, the compressor)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from simulators.scenarios import Scenario


class _Clock(Protocol):
    t: float  # simulated seconds since start


class Machine(Protocol):
    scenario: Scenario | None
    rng: np.random.Generator  # all of its chance: set points, load, noise, faults

    @property
    def state(self) -> _Clock: ...

    def step(self, dt: float) -> None: ...

    def measure(self) -> dict[str, float]: ...


def run_up(sim: Machine, seed: int, start: float) -> None:
    """Run `sim` (built from `seed`) for `start` simulated seconds before it serves: a unit that
    has run before, in the state that long a run leaves it (temperatures, load, set point).

    One simulated second a step (the processes are exact or first-order lags far slower than
    that, so a day takes seconds, not the minutes of the server's fine step). Then the unit's
    chance from here on is its own, drawn from (seed, start): the fast steps draw far fewer
    numbers per simulated second than serving does, so without a new generator a unit started a
    day later would serve the very numbers an earlier-started one serves an hour into its run,
    and successive stretches of one unit would be copies of each other shifted in time."""
    while sim.state.t < start:
        sim.step(min(1.0, start - sim.state.t))
    if start > 0:
        sim.rng = np.random.default_rng([seed, round(start)])
