"""Fault scenarios: each modifies the clean process values and the noise from its onset on."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Scenario:
    """A fault from `at` until `until` (simulated seconds; an episode when `until` is finite, after
    which the machine is healthy again). `magnitude` scales the fault: 1 is the loud textbook
    case the scenario describes, 0.1 a subtle onset that a plant would still want to hear of."""

    name: str
    at: float  # onset, simulated seconds from start
    until: float = math.inf
    magnitude: float = 1.0

    def active(self, t: float) -> bool:
        return self.at <= t < self.until

    def severity(self, t: float) -> float:
        return 1.0 if self.active(t) else 0.0

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        raise NotImplementedError

    def efficiency_factor(self, t: float) -> float:
        """What is left of the machine's efficiency at time t (1: none lost); the machine's
        physics applies it, so current and power follow consistently."""
        return 1.0


@dataclass
class BearingWear(Scenario):
    """Gradual: a drive-end bearing defect grows over `ramp` seconds. Vibration at the drive end
    rises first (the non-drive end sees part of it), friction heats the motor and costs current."""

    ramp: float = 1800.0

    def severity(self, t: float) -> float:
        if not self.active(t):
            return 0.0
        return float(min(1.0, (t - self.at) / self.ramp) ** 1.5)

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        s = self.severity(t) * self.magnitude
        if s <= 0:
            return
        clean["vibration_de"] += 5.0 * s
        clean["vibration_nde"] += 1.5 * s
        clean["motor_temperature"] += 8.0 * s
        clean["motor_current"] += 0.8 * s
        noise["vibration_de"] *= 1 + 3 * s


@dataclass
class SlowBearingWear(BearingWear):
    """Bearing wear over hours (issue 14): the same accelerating defect on a 4-hour ramp, so the
    drive-end vibration reaches the PLC's 4.5 mm/s alarm about 2.5 hours after onset (the exact
    time depends on the unit and its load: `PumpSimulator.clean` gives the noise-free value
    from which the benchmark takes the true crossing)."""

    ramp: float = 4 * 3600.0


@dataclass
class Cavitation(Scenario):
    """Sudden: suction pressure falls below vapour pressure. Flow and head drop, pressure and flow
    fluctuate strongly, vibration jumps with broadband noise, current drops with the load."""

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        if not self.active(t):
            return
        m = self.magnitude
        clean["flow_rate"] *= 1 - 0.18 * m
        clean["discharge_pressure"] *= 1 - 0.15 * m
        clean["motor_current"] *= 1 - 0.07 * m
        clean["vibration_de"] += 2.5 * m
        clean["vibration_nde"] += 2.0 * m
        noise["discharge_pressure"] *= 1 + 5 * m
        noise["flow_rate"] *= 1 + 4 * m
        noise["vibration_de"] *= 1 + 5 * m
        noise["vibration_nde"] *= 1 + 5 * m
        # Vapour bubbles collapse in bursts.
        if rng.random() < 0.2:
            clean["vibration_de"] += 2.0 * m * math.fabs(float(rng.standard_normal()))


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
        return min(1.0, (t - self.at) / self.ramp) if self.active(t) else 0.0

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        s = self.severity(t) * self.magnitude
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
        if not self.active(t):
            return
        m = self.magnitude
        clean["vibration_de"] += 1.5 * m
        clean["vibration_nde"] += 3.0 * m
        clean["flow_rate"] *= 1 - 0.04 * m
        clean["motor_current"] *= 1 - 0.03 * m


@dataclass
class VibrationStep(Scenario):
    """A gross step: drive-end vibration jumps by 2 mm/s (about 20 standard deviations of its
    normal noise) and stays there, as in the side-by-side measurement of issue 17. Nothing else
    moves: a limit alarm's case, the one persistence must not delay."""

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        if self.active(t):
            clean["vibration_de"] += 2.0 * self.magnitude


@dataclass
class SensorDrift(Scenario):
    """A fluid temperature sensor drifts away from the truth at `rate` degrees per hour; the
    process itself is healthy (a data-quality problem, not a machine fault)."""

    rate: float = 12.0

    def severity(self, t: float) -> float:
        return min(1.0, (t - self.at) / 1800.0) if self.active(t) else 0.0

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        if self.active(t):
            clean["fluid_temperature"] += self.magnitude * self.rate * (t - self.at) / 3600.0


@dataclass
class StuckSensor(Scenario):
    """The discharge pressure transmitter freezes at its last value (no noise, no change)."""

    held: float | None = None

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        if not self.active(t):
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
        if self.active(t) and (t - self.at) % 60.0 < 5.0:
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


@dataclass
class SuctionRestriction(Scenario):
    """A partly closed suction valve or a clogging strainer: the pump starves. Unlike throttling
    on the discharge side (which moves along the pump curve, as load changes do), flow and head
    fall together, the motor unloads a little, and the first vapour bubbles make pressure, flow
    and drive-end vibration restless: the road towards cavitation."""

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        if not self.active(t):
            return
        m = self.magnitude
        clean["flow_rate"] *= 1 - 0.15 * m
        clean["discharge_pressure"] *= 1 - 0.12 * m
        clean["motor_current"] *= 1 - 0.06 * m
        clean["vibration_de"] += 0.4 * m
        noise["discharge_pressure"] *= 1 + 2 * m
        noise["flow_rate"] *= 1 + 1.5 * m
        noise["vibration_de"] *= 1 + 1.5 * m


@dataclass
class CoolingLoss(Scenario):
    """The heat exchanger of the loop loses capacity (fouling, a stopped fan): the fluid warms
    towards a higher equilibrium with the loop's time constant, and the motor, cooled by the
    fluid, follows part of the way."""

    tau: float = 240.0

    def severity(self, t: float) -> float:
        return 1.0 - math.exp(-(t - self.at) / self.tau) if self.active(t) else 0.0

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        s = self.severity(t) * self.magnitude
        if s <= 0:
            return
        clean["fluid_temperature"] += 8.0 * s
        clean["motor_temperature"] += 3.0 * s


@dataclass
class Misalignment(Scenario):
    """Coupling misalignment after maintenance or a soft foot: drive-end vibration rises and
    gets restless (twice running speed shows in the RMS), friction costs a little current and
    heat."""

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        if not self.active(t):
            return
        m = self.magnitude
        clean["vibration_de"] += 1.2 * m
        clean["vibration_nde"] += 0.5 * m
        clean["motor_current"] *= 1 + 0.03 * m
        clean["motor_temperature"] += 2.0 * m
        noise["vibration_de"] *= 1 + 2 * m


def is_offline(scenario: Scenario | None, t: float) -> bool:
    return isinstance(scenario, Offline) and scenario.severity(t) > 0


SCENARIOS.update(
    {
        "valve_closure": ValveClosure,
        "rotor_imbalance": RotorImbalance,
        "vibration_step": VibrationStep,
        "sensor_drift": SensorDrift,
        "stuck_sensor": StuckSensor,
        "dropout": Dropout,
        "offline": Offline,
        "suction_restriction": SuctionRestriction,
        "cooling_loss": CoolingLoss,
        "misalignment": Misalignment,
        "bearing_wear_hours": SlowBearingWear,
    }
)


@dataclass
class ImpellerWear(Scenario):
    """Gradual over hours: erosion of the vanes and the wear-ring clearance cost pump efficiency
    (up to 15 % at full severity), so the motor draws more current for the same flow and head;
    the eroded impeller unbalances only late (vibration from 60 % of the ramp on, more at the
    non-drive end, nearer the impeller, past the 4.5 mm/s PLC limit by the end). Energy sees it
    long before vibration does."""

    ramp: float = 4 * 3600.0
    loss: float = 0.15  # efficiency lost at full severity (times magnitude)

    def severity(self, t: float) -> float:
        return min(1.0, (t - self.at) / self.ramp) if self.active(t) else 0.0

    def efficiency_factor(self, t: float) -> float:
        return 1.0 - self.loss * self.magnitude * self.severity(t)

    def apply(
        self, t: float, clean: dict[str, float], noise: dict[str, float], rng: np.random.Generator
    ) -> None:
        late = max(0.0, (self.severity(t) - 0.6) / 0.4) ** 2 * self.magnitude
        clean["vibration_de"] += 3.0 * late
        clean["vibration_nde"] += 3.5 * late


SCENARIOS["impeller_wear"] = ImpellerWear
