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
