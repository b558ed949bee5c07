"""What the servers need from a simulated machine (the pump, the compressor)."""

from __future__ import annotations

from typing import Protocol

from simulators.scenarios import Scenario


class _Clock(Protocol):
    t: float  # simulated seconds since start


class Machine(Protocol):
    scenario: Scenario | None

    @property
    def state(self) -> _Clock: ...

    def step(self, dt: float) -> None: ...

    def measure(self) -> dict[str, float]: ...
