"""Short runs of a machine as a plant would record them for commissioning: a few minutes of
healthy operation to train on, then a quarter of an hour or so in which the machine keeps warming
up, the operator may move the set point, and one subtle fault comes and goes.

This is what real test rigs and plants give a model to learn from, and it is much harder than the
long clean recordings of `bench quality`'s scenario mode: the training stretch sees neither the
warm-up's end nor other operating points, the faults are small (a partly closed suction valve, a
slight imbalance, the onset of cavitation), sensors are quantized and spike now and then. A run is
a pure function of its seed. `simulators/historian.py` then writes it the way historians export
(missed rows, jitter, awkward headers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.profiles import load_profile, packaged_profile_dirs
from edge_agent.sources.modbus.profile import ModbusProfile
from simulators.compressor import COMPRESSOR_SCENARIOS, CompressorSimulator
from simulators.machine import Machine
from simulators.pump import NOISE as PUMP_NOISE
from simulators.pump import PumpSimulator
from simulators.registers import quantize
from simulators.scenarios import SCENARIOS, Scenario

F64 = npt.NDArray[np.float64]
START_TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z

# Subtle faults per machine and the range of their magnitude (1 = the loud textbook case).
PUMP_FAULTS: dict[str, tuple[float, float]] = {
    "suction_restriction": (0.3, 1.0),
    "cavitation": (0.1, 0.3),
    "rotor_imbalance": (0.1, 0.3),
    "misalignment": (0.2, 0.6),
    "cooling_loss": (0.2, 0.6),
    "valve_closure": (0.15, 0.4),
}
COMPRESSOR_FAULTS: dict[str, tuple[float, float]] = {
    "air_leak": (0.3, 0.8),
    "cooler_fouling": (0.3, 0.8),
}
# Historian display names and units of the profiles' points.
DISPLAY = {
    "motor_current": ("Motor Current", "A"),
    "motor_voltage": ("Motor Voltage", "V"),
    "vibration_de": ("Vibration DE RMS", "mm/s"),
    "vibration_nde": ("Vibration NDE RMS", "mm/s"),
    "motor_temperature": ("Motor Temperature", "°C"),
    "fluid_temperature": ("Fluid Temperature", "°C"),
    "discharge_pressure": ("Discharge Pressure", "bar"),
    "flow_rate": ("Flow Rate", "m3/h"),
    "discharge_temperature": ("Discharge Temperature", "°C"),
    "oil_temperature": ("Oil Temperature", "°C"),
    "vibration": ("Vibration RMS", "mm/s"),
    "air_flow": ("Air Flow", "m3/min"),
}
PUMP_SIGNALS = [
    "motor_current", "motor_voltage", "vibration_de", "vibration_nde",
    "motor_temperature", "fluid_temperature", "discharge_pressure", "flow_rate",
]  # fmt: skip
COMPRESSOR_SIGNALS = [
    "motor_current", "discharge_pressure", "discharge_temperature", "oil_temperature",
    "vibration", "air_flow",
]  # fmt: skip
# Coarse transmitters or historian resolution, in engineering units (a run picks fine or coarse).
COARSE = {"flow_rate": 1.0, "discharge_pressure": 0.05, "motor_voltage": 1.0, "air_flow": 0.1}


@dataclass(frozen=True)
class PlantRun:
    name: str
    machine: str
    seed: int
    fault: str
    magnitude: float
    ts: F64  # a clean 1 Hz grid; the historian export adds the jitter and the holes
    signals: list[str]  # tag names
    units: list[str]
    values: F64  # rows × signals, as the devices report them
    labels: list[str]  # per row: "normal" or the fault's name
    train_rows: int  # the first rows: healthy operation to train on
    onset: float  # fault episode, seconds since the run's start
    until: float
    setpoint_change_at: float | None  # a normal change of operating point after training

    @property
    def display_names(self) -> list[str]:
        return [DISPLAY[s][0] for s in self.signals]


def _profile(name: str) -> ModbusProfile:
    return load_profile(next(d / f"{name}.yaml" for d in packaged_profile_dirs()))


def plant_run(seed: int, machine: str = "pump") -> PlantRun:
    """One run; the seed draws the unit, the durations, the fault, its size and timing."""
    rng = np.random.default_rng([seed, 7919])
    train_s = int(rng.integers(300, 601))
    test_s = int(rng.integers(720, 1201))
    total = train_s + test_s
    faults = PUMP_FAULTS if machine == "pump" else COMPRESSOR_FAULTS
    fault = str(rng.choice(sorted(faults)))
    lo, hi = faults[fault]
    magnitude = float(rng.uniform(lo, hi))
    length = float(rng.uniform(150, 400))
    onset = float(train_s + rng.uniform(60, max(61.0, test_s - length - 60)))
    until = min(onset + length, total - 30.0)
    scenario: Scenario
    sim: Machine
    setpoint_at: float | None = None
    setpoint_to = 0.0
    if machine == "pump":
        scenario = SCENARIOS[fault](name=fault, at=onset, until=until, magnitude=magnitude)
        pump = PumpSimulator(
            seed, scenario, thermal_start=float(rng.uniform(0.3, 0.9)), setpoint_interval_s=math.inf
        )
        pump.state.load = pump.state.load_setpoint = float(rng.uniform(0.65, 0.9))
        if rng.random() < 0.5:
            # The operator moves the set point a little after commissioning: normal operation.
            setpoint_at = float(train_s + rng.uniform(30, test_s - 60))
            step = float(rng.uniform(0.03, 0.08)) * (1 if rng.random() < 0.5 else -1)
            setpoint_to = min(0.95, max(0.6, pump.state.load_setpoint + step))
        sim, signals, profile = pump, PUMP_SIGNALS, _profile("acme_pump_plc_fw1")
    elif machine == "compressor":
        cls = COMPRESSOR_SCENARIOS[fault]
        scenario = cls(name=fault, at=onset, until=until, magnitude=magnitude)
        if hasattr(scenario, "ramp"):
            scenario.ramp = 300.0
        sim = CompressorSimulator(seed, scenario)
        signals, profile = COMPRESSOR_SIGNALS, _profile("acme_compressor_fw1")
    else:
        raise ValueError(f"unknown machine {machine!r} (pump or compressor)")
    coarse = rng.random() < 0.5
    noise = {s: PUMP_NOISE.get(s, 0.1) for s in signals}
    ts = START_TS + seed * 86_400.0 + np.arange(total, dtype=np.float64)
    values = np.zeros((total, len(signals)))
    labels: list[str] = []
    for i in range(total):
        if setpoint_at is not None and sim.state.t <= setpoint_at < sim.state.t + 1.0:
            assert isinstance(sim, PumpSimulator)
            sim.state.load_setpoint = setpoint_to
        sim.step(0.5)
        sim.step(0.5)
        measured = quantize(profile, sim.measure())
        for j, s in enumerate(signals):
            v = measured[s]
            # A transmitter spikes now and then (EMI, a loose shield): one sample, then fine.
            if rng.random() < 0.001:
                v += float(rng.choice([-1.0, 1.0])) * float(rng.uniform(4, 8)) * noise[s]
            if coarse and s in COARSE:
                v = round(v / COARSE[s]) * COARSE[s]
            values[i, j] = v
        labels.append(fault if scenario.active(sim.state.t) else "normal")
    units = [DISPLAY[s][1] for s in signals]
    return PlantRun(
        name=f"{machine}-{seed:03d}",
        machine=machine,
        seed=seed,
        fault=fault,
        magnitude=magnitude,
        ts=ts,
        signals=list(signals),
        units=units,
        values=values,
        labels=labels,
        train_rows=train_s,
        onset=onset,
        until=until,
        setpoint_change_at=setpoint_at,
    )


def run_paths(workdir: Path, run: PlantRun) -> tuple[Path, Path]:
    """Where a run's training export and its full export go."""
    return workdir / f"{run.name}-train.csv", workdir / f"{run.name}.csv"
