"""An oil-injected rotary screw air compressor with load/unload control: the second machine.

Simplified physics, in simulated seconds:
- plant air demand wanders as an Ornstein-Uhlenbeck process; the receiver pressure integrates
  delivered minus consumed air;
- the controller loads the compressor below the cut-in pressure and unloads it above cut-out, so
  pressure saw-tooths between them and current, flow and vibration switch with the load state;
- oil and discharge temperatures are first-order lags towards ambient plus the heat of
  compression (more when loaded).

Own scenarios: `air_leak` (demand rises by a third: the machine loads more and longer),
`cooler_fouling` (the oil cooler loses capacity: oil and discharge temperatures creep up) and the
shared `offline`. Same interface as `PumpSimulator` (`step`, `measure`, `state.t`, `scenario`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulators.scenarios import Scenario

SIGNALS = (
    "motor_current",
    "discharge_pressure",
    "discharge_temperature",
    "oil_temperature",
    "vibration",
    "air_flow",
)
NOISE = {
    "motor_current": 0.4,
    "discharge_pressure": 0.02,
    "discharge_temperature": 0.2,
    "oil_temperature": 0.1,
    "vibration": 0.05,
    "air_flow": 0.1,
}
CUT_IN, CUT_OUT = 7.0, 7.8  # bar
FREE_AIR = 10.0  # m3/min delivered when loaded
# Receiver size: bar per second for each m3/min of net inflow.
PRESSURE_RATE = 0.008


@dataclass
class CompressorState:
    t: float = 0.0
    pressure: float = 7.4
    loaded: bool = True
    demand: float = 7.0  # m3/min
    oil_temp: float = 75.0
    run_hours: float = 30_000.0


class CompressorSimulator:
    def __init__(self, seed: int = 0, scenario: Scenario | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.scenario = scenario
        self.state = CompressorState()
        self.clean: dict[str, float] = {}

    def _severity(self, name: str) -> float:
        s = self.scenario
        if s is None or s.name != name:
            return 0.0
        return s.severity(self.state.t) * s.magnitude

    def step(self, dt: float) -> None:
        s, rng = self.state, self.rng
        # Integrate in slices short against the load/unload cycle (tens of seconds).
        remaining = dt
        while remaining > 0:
            h = min(remaining, 0.5)
            remaining -= h
            a = math.exp(-h / 120.0)
            s.demand = (
                7.0
                + (s.demand - 7.0) * a
                + 1.0 * math.sqrt(1 - a * a) * float(rng.standard_normal())
            )
            demand = max(0.0, s.demand * (1 + 0.33 * self._severity("air_leak")))
            delivered = FREE_AIR if s.loaded else 0.0
            s.pressure += PRESSURE_RATE * (delivered - demand) * h
            if s.pressure < CUT_IN:
                s.loaded = True
            elif s.pressure > CUT_OUT:
                s.loaded = False
            fouling = max(self._severity("cooler_fouling"), self._severity("cooler_fouling_hours"))
            cooling = 1.0 - 0.4 * fouling
            target = 25.0 + (55.0 if s.loaded else 35.0) / cooling
            s.oil_temp = target + (s.oil_temp - target) * math.exp(-h / 600.0)
            s.t += h
            s.run_hours += h / 3600.0

    def measure(self) -> dict[str, float]:
        s, rng = self.state, self.rng
        clean = {
            "motor_current": 95.0 if s.loaded else 35.0,
            "discharge_pressure": s.pressure,
            "discharge_temperature": s.oil_temp + (8.0 if s.loaded else 2.0),
            "oil_temperature": s.oil_temp,
            "vibration": 1.8 if s.loaded else 1.2,
            "air_flow": FREE_AIR if s.loaded else 0.0,
        }
        self.clean = clean  # noise-free: the ground truth of when a limit is crossed
        out = {k: v + NOISE[k] * float(rng.standard_normal()) for k, v in clean.items()}
        out["vibration"] = max(0.0, out["vibration"])
        out["air_flow"] = max(0.0, out["air_flow"])
        out["loaded"] = float(s.loaded)
        out["run_hours"] = math.floor(s.run_hours)
        return out


@dataclass
class AirLeak(Scenario):
    """Marker scenario: CompressorSimulator raises demand while it is active."""

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        return


@dataclass
class CoolerFouling(Scenario):
    """Marker scenario: CompressorSimulator loses cooling capacity over `ramp` seconds."""

    ramp: float = 1800.0

    def severity(self, t: float) -> float:
        return min(1.0, (t - self.at) / self.ramp) if self.active(t) else 0.0

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        return


@dataclass
class SlowCoolerFouling(CoolerFouling):
    """Cooler fouling over hours (issue 14): on a 5-hour ramp the oil and discharge temperatures
    creep up to their alarms (95 / 100 degC) after about 3.5 to 4 hours, depending on demand."""

    ramp: float = 5 * 3600.0


COMPRESSOR_SCENARIOS: dict[str, type[Scenario]] = {
    "air_leak": AirLeak,
    "cooler_fouling": CoolerFouling,
    "cooler_fouling_hours": SlowCoolerFouling,
}
