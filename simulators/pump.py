"""A centrifugal pump skid: motor, pump, pipework, driven by load and ambient conditions.

Simplified but coupled physics, in simulated seconds:
- load (valve position / demand) wanders as an Ornstein-Uhlenbeck process around a set point that
  the operator changes now and then; ambient temperature follows a daily cycle;
- flow follows load; discharge pressure follows the pump curve (head falls with flow squared);
- motor current follows hydraulic power over voltage (plus magnetizing current); the electrical
  input is shaft power (hydraulic power over pump efficiency) over motor efficiency plus core
  losses, and the power factor is what makes √3·V·I·cos φ equal it (`electrical_power_kw` is the
  ground truth the energy benchmark integrates; a scenario may cost pump efficiency);
- motor and fluid temperatures are first-order lags towards ambient plus losses;
- vibration RMS at both bearings grows mildly with load.

Every quantity is measured with sensor noise. All randomness comes from one seeded generator, and
the statistics do not depend on the step size (exact discretizations), so a server ticking every
10 ms and a recorder stepping in bulk produce the same process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulators.scenarios import Scenario

SIGNALS = (
    "motor_current",
    "motor_voltage",
    "vibration_de",
    "vibration_nde",
    "motor_temperature",
    "fluid_temperature",
    "discharge_pressure",
    "flow_rate",
)

# Sensor noise, one standard deviation, in engineering units.
NOISE = {
    "motor_current": 0.15,
    "motor_voltage": 0.8,
    "vibration_de": 0.08,
    "vibration_nde": 0.06,
    "motor_temperature": 0.15,
    "fluid_temperature": 0.1,
    "discharge_pressure": 0.04,
    "flow_rate": 0.6,
}
# Not a model signal (SIGNALS): the power meter's cos φ, read by profiles that map it.
PF_NOISE = 0.004
MOTOR_EFFICIENCY = 0.93
CORE_LOSS_KW = 0.5


@dataclass
class PumpState:
    t: float = 0.0
    load: float = 0.8
    load_setpoint: float = 0.8
    voltage: float = 400.0
    motor_temp: float = 55.0
    fluid_temp: float = 24.0
    run_hours: float = 12_000.0


def _ou(
    x: float, mean: float, tau: float, sigma: float, dt: float, rng: np.random.Generator
) -> float:
    """Exact Ornstein-Uhlenbeck step: stationary std `sigma`, correlation time `tau`."""
    a = math.exp(-dt / tau)
    return mean + (x - mean) * a + sigma * math.sqrt(1 - a * a) * float(rng.standard_normal())


def _lag(x: float, target: float, tau: float, dt: float) -> float:
    return target + (x - target) * math.exp(-dt / tau)


class PumpSimulator:
    def __init__(
        self,
        seed: int = 0,
        scenario: Scenario | None = None,
        thermal_start: float = 1.0,
        setpoint_interval_s: float = 1200.0,
    ) -> None:
        """`thermal_start`: where the temperatures start between ambient (0: a cold start, the
        warm-up drifts on for the better part of an hour) and equilibrium (1). The operator moves
        the load set point on average every `setpoint_interval_s` (inf: never by itself)."""
        self.rng = np.random.default_rng(seed)
        self.scenario = scenario
        self.setpoint_interval_s = setpoint_interval_s
        self.state = PumpState()
        self.offline = False
        self.clean: dict[str, float] = {}
        # Fixed per-unit characteristics (manufacturing spread), drawn once from the seed.
        self.q_rated = 120.0 * (1 + 0.03 * float(self.rng.standard_normal()))
        self.p_shutoff = 7.0 * (1 + 0.02 * float(self.rng.standard_normal()))
        self.vib_base_de = 2.0 * (1 + 0.05 * float(self.rng.standard_normal()))
        self.vib_base_nde = 1.6 * (1 + 0.05 * float(self.rng.standard_normal()))
        self.ambient_mean = 20.0 + 2.0 * float(self.rng.standard_normal())
        self.ambient_phase = float(self.rng.uniform(0, 2 * math.pi))
        # The skid has been running for thousands of hours: start at thermal equilibrium, not in a
        # cold-start transient that no training stretch would contain.
        s = self.state
        ambient = self.ambient(0.0)
        s.motor_temp = ambient + thermal_start * (self._motor_temp_target() - ambient)
        s.fluid_temp = ambient + thermal_start * (self._fluid_temp_target() - ambient)

    def ambient(self, t: float) -> float:
        return self.ambient_mean + 5.0 * math.sin(2 * math.pi * t / 86_400 + self.ambient_phase)

    def step(self, dt: float) -> None:
        s, rng = self.state, self.rng
        # Operator changes the set point now and then (a Poisson process, ~ every 20 min).
        if rng.random() < 1 - math.exp(-dt / self.setpoint_interval_s):
            s.load_setpoint = float(rng.uniform(0.6, 0.95))
        s.load = min(1.0, max(0.3, _ou(s.load, s.load_setpoint, 60.0, 0.03, dt, rng)))
        s.voltage = _ou(s.voltage, 400.0, 300.0, 2.0, dt, rng)
        s.motor_temp = _lag(s.motor_temp, self._motor_temp_target(), 900.0, dt)
        s.fluid_temp = _lag(s.fluid_temp, self._fluid_temp_target(), 1800.0, dt)
        s.t += dt
        s.run_hours += dt / 3600.0

    def _motor_temp_target(self) -> float:
        return self.ambient(self.state.t) + 0.012 * self._current() ** 2 + 8.0

    def _fluid_temp_target(self) -> float:
        return self.ambient(self.state.t) + 3.0 + 4.0 * self.state.load

    def _shaft_kw(self) -> float:
        s = self.state
        q = self.q_rated * s.load
        p = self._pressure_clean(q)
        hydraulic_kw = p * 1e5 * q / 3600.0 / 1000.0
        efficiency = 0.55 + 0.3 * s.load
        if self.scenario is not None:
            efficiency *= self.scenario.efficiency_factor(s.t)
        return hydraulic_kw / efficiency

    def _current(self) -> float:
        return 12.0 + self._shaft_kw() * 1000.0 / (math.sqrt(3) * self.state.voltage * 0.88)

    def electrical_power_kw(self) -> float:
        """True active electrical input now (kW), without sensor noise: shaft power over motor
        efficiency plus core losses. Scenarios that act on the measured current alone (bearing
        friction, cavitation, a drifting sensor) are not in it; lost pump efficiency is."""
        return self._shaft_kw() / MOTOR_EFFICIENCY + CORE_LOSS_KW

    def power_factor(self) -> float:
        """cos φ that makes √3·V·I·cos φ the true electrical power at the clean current."""
        return (
            self.electrical_power_kw()
            * 1000.0
            / (math.sqrt(3) * self.state.voltage * self._current())
        )

    def _pressure_clean(self, q: float) -> float:
        return self.p_shutoff * (1.0 - 0.45 * (q / self.q_rated) ** 2)

    def measure(self) -> dict[str, float]:
        """Noisy sensor readings at the current state, with any active fault applied."""
        s, rng = self.state, self.rng
        q = self.q_rated * s.load
        clean = {
            "motor_current": self._current(),
            "motor_voltage": s.voltage,
            "vibration_de": self.vib_base_de * (0.8 + 0.3 * s.load),
            "vibration_nde": self.vib_base_nde * (0.8 + 0.3 * s.load),
            "motor_temperature": s.motor_temp,
            "fluid_temperature": s.fluid_temp,
            "discharge_pressure": self._pressure_clean(q),
            "flow_rate": q,
        }
        noise = dict(NOISE)
        if self.scenario is not None:
            self.scenario.apply(s.t, clean, noise, rng)
        # The noise-free values, faults included: the ground truth of when a limit is crossed
        # and of the process values before sensor noise (benchmarks).
        self.clean = dict(clean)
        out = {k: v + noise[k] * float(rng.standard_normal()) for k, v in clean.items()}
        # RMS is never negative. `max(0.0, nan)` is 0.0, so a dropout (NaN) must bypass the clamp:
        # a dead sensor that read as 0 mm/s would look like a machine fault, not a data fault.
        for k in ("vibration_de", "vibration_nde"):
            if not math.isnan(out[k]):
                out[k] = max(0.0, out[k])
        out["run_hours"] = math.floor(s.run_hours)
        out["power_factor"] = self.power_factor() + PF_NOISE * float(rng.standard_normal())
        # Discrete states for profiles that expose them (coils, discrete inputs, status bits).
        out["motor_running"] = out["run_command"] = 1.0
        out["alarm_active"] = float(out["vibration_de"] > 6.0)
        out["overload_trip"] = 0.0
        out["level_switch"] = 1.0
        return out
