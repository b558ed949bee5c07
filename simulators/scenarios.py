"""Fault scenarios: each modifies the clean process values and the noise from its onset on."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Scenario:
    name: str
    at: float  # onset, simulated seconds from start

    def severity(self, t: float) -> float:
        return 0.0 if t < self.at else 1.0

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        raise NotImplementedError


@dataclass
class BearingWear(Scenario):
    """Gradual: a drive-end bearing defect grows over `ramp` seconds. Vibration at the drive end
    rises first (the non-drive end sees part of it), friction heats the motor and costs current."""

    ramp: float = 1800.0

    def severity(self, t: float) -> float:
        if t < self.at:
            return 0.0
        return float(min(1.0, (t - self.at) / self.ramp) ** 1.5)

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        s = self.severity(t)
        if s <= 0:
            return
        clean["vibration_de"] += 5.0 * s
        clean["vibration_nde"] += 1.5 * s
        clean["motor_temperature"] += 8.0 * s
        clean["motor_current"] += 0.8 * s
        noise["vibration_de"] *= 1 + 3 * s


@dataclass
class Cavitation(Scenario):
    """Sudden: suction pressure falls below vapour pressure. Flow and head drop, pressure and flow
    fluctuate strongly, vibration jumps with broadband noise, current drops with the load."""

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        if t < self.at:
            return
        clean["flow_rate"] *= 0.82
        clean["discharge_pressure"] *= 0.85
        clean["motor_current"] *= 0.93
        clean["vibration_de"] += 2.5
        clean["vibration_nde"] += 2.0
        noise["discharge_pressure"] *= 6
        noise["flow_rate"] *= 5
        noise["vibration_de"] *= 6
        noise["vibration_nde"] *= 6
        # Vapour bubbles collapse in bursts.
        if rng.random() < 0.2:
            clean["vibration_de"] += 2.0 * math.fabs(float(rng.standard_normal()))


SCENARIOS: dict[str, type[Scenario]] = {"bearing_wear": BearingWear, "cavitation": Cavitation}


def make_scenario(name: str | None, at: float) -> Scenario | None:
    if name is None or name == "none":
        return None
    try:
        return SCENARIOS[name](name=name, at=at)
    except KeyError:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})") from None


@dataclass
class ValveClosure(Scenario):
    """A discharge valve closes over `ramp` seconds: flow falls towards shut-off, pressure rises
    along the pump curve, hydraulic power (current) falls, the fluid heats up a little."""

    ramp: float = 120.0

    def severity(self, t: float) -> float:
        return 0.0 if t < self.at else min(1.0, (t - self.at) / self.ramp)

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        s = self.severity(t)
        if s <= 0:
            return
        clean["flow_rate"] *= 1 - 0.85 * s
        clean["discharge_pressure"] *= 1 + 0.25 * s
        clean["motor_current"] *= 1 - 0.3 * s
        clean["fluid_temperature"] += 4.0 * s


@dataclass
class RotorImbalance(Scenario):
    """Sudden: a lost impeller vane. Vibration rises at both bearings (more at the non-drive end,
    nearer the impeller), flow and current lose a few percent."""

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        if t < self.at:
            return
        clean["vibration_de"] += 1.5
        clean["vibration_nde"] += 3.0
        clean["flow_rate"] *= 0.96
        clean["motor_current"] *= 0.97


@dataclass
class SensorDrift(Scenario):
    """A fluid temperature sensor drifts away from the truth at `rate` degrees per hour; the
    process itself is healthy (a data-quality problem, not a machine fault)."""

    rate: float = 12.0

    def severity(self, t: float) -> float:
        return 0.0 if t < self.at else min(1.0, (t - self.at) / 1800.0)

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        if t >= self.at:
            clean["fluid_temperature"] += self.rate * (t - self.at) / 3600.0


@dataclass
class StuckSensor(Scenario):
    """The discharge pressure transmitter freezes at its last value (no noise, no change)."""

    held: float | None = None

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        if t < self.at:
            return
        if self.held is None:
            self.held = clean["discharge_pressure"]
        clean["discharge_pressure"] = self.held
        noise["discharge_pressure"] = 0.0


@dataclass
class Dropout(Scenario):
    """The vibration sensor at the drive end drops out now and then: NaN for a few seconds in
    every minute (a loose connector)."""

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        if t >= self.at and (t - self.at) % 60.0 < 5.0:
            clean["vibration_de"] = math.nan


@dataclass
class Offline(Scenario):
    """The device stops answering for `length` seconds, then comes back (power cycle, network
    outage). Servers consult `is_offline`; the physics carries on underneath."""

    length: float = 60.0

    def severity(self, t: float) -> float:
        return 1.0 if self.at <= t < self.at + self.length else 0.0

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        return


def is_offline(scenario: Scenario | None, t: float) -> bool:
    return isinstance(scenario, Offline) and scenario.severity(t) > 0


SCENARIOS.update(
    {
        "valve_closure": ValveClosure,
        "rotor_imbalance": RotorImbalance,
        "sensor_drift": SensorDrift,
        "stuck_sensor": StuckSensor,
        "dropout": Dropout,
        "offline": Offline,
    }
)
