"""The pump simulator's electrical truth: √3·V·I·cos φ of the clean values is its electrical
power (shaft power over motor efficiency plus core losses), impeller wear costs efficiency
(more current for the same flow and head) well before vibration rises."""

from __future__ import annotations

import math

import pytest

from simulators.pump import CORE_LOSS_KW, MOTOR_EFFICIENCY, PumpSimulator
from simulators.scenarios import ImpellerWear


def test_power_factor_makes_the_meter_equation_hold():
    sim = PumpSimulator(4)
    for _ in range(50):
        sim.step(37.0)
        sim.measure()
        c = sim.clean
        pf = sim.power_factor()
        assert 0.5 < pf < 0.9
        meter = math.sqrt(3) * c["motor_voltage"] * c["motor_current"] * pf / 1000
        assert meter == pytest.approx(sim.electrical_power_kw(), rel=1e-9)
        q, p = c["flow_rate"], c["discharge_pressure"]
        hydraulic = p * 1e5 * q / 3600 / 1000
        # Overall efficiency: between the pump's (55-85 %) times the motor's, and below 1.
        overall = hydraulic / (sim.electrical_power_kw() - CORE_LOSS_KW)
        assert 0.5 * MOTOR_EFFICIENCY < overall < 0.86 * MOTOR_EFFICIENCY


def test_impeller_wear_costs_power_at_the_same_operating_point_before_vibration():
    at, ramp = 600.0, 4 * 3600.0
    healthy = PumpSimulator(7, setpoint_interval_s=math.inf)
    worn = PumpSimulator(7, ImpellerWear(name="impeller_wear", at=at, ramp=ramp),
                         setpoint_interval_s=math.inf)  # fmt: skip
    seen_half = False
    for _ in range(1, int(at + ramp), 60):
        healthy.step(60.0)
        worn.step(60.0)
        healthy.measure()
        worn.measure()
        h, w = healthy.clean, worn.clean
        # Same process (same seed, same draws): same flow and head.
        assert w["flow_rate"] == h["flow_rate"]
        assert w["discharge_pressure"] == h["discharge_pressure"]
        s = worn.scenario.severity(worn.state.t) if worn.scenario else 0.0
        ratio = worn.electrical_power_kw() / healthy.electrical_power_kw()
        lost = 0.15 * s
        # Shaft power rises by 1/(1 - lost); core losses dilute it a little.
        assert 1 + 0.9 * lost - 1e-9 <= ratio <= 1 / (1 - lost) + 1e-9
        assert w["motor_current"] >= h["motor_current"] - 1e-9
        if s <= 0.6:
            assert w["vibration_de"] == h["vibration_de"]  # no vibration yet
        if s >= 0.5:
            seen_half = True
            assert ratio > 1.06
    assert seen_half
    worn.step(600.0)
    worn.measure()
    assert worn.clean["vibration_de"] > 4.5  # past the PLC limit at the end of the ramp
