"""Active power, energy and specific energy of one asset, from its grid samples (pure, no I/O).

The energy columns are assembled on the asset's grid by their own `Assembler` (the pipeline
runs it beside the model's), so a sample is valid exactly when every energy signal is fresh
(held no longer than the asset's `max_age`), finite and of good quality. Integration:
- a valid sample stands for its grid slot: power × sample period (the sample-and-hold the
  assembler already applies, never across a gap longer than max age);
- an invalid sample (missing, stale, bad, or a power that is negative, a power factor outside
  (0, 1]) adds nothing: its time is *unmeasured*, reported as such (`measured_s` against the
  interval), never filled in;
- intervals are aligned to multiples of `interval_s` in data time (the quarter hours of metering
  with 900 s) and closed by the first sample past their end; an interval without a sample is not
  reported (after a long outage there is nothing to say about it but that it is unmeasured).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_agent.energy.spec import (
    CURRENT_UNITS,
    FACTOR_UNITS,
    FLOW_UNITS,
    POWER_UNITS,
    VOLTAGE_UNITS,
    Constant,
    EnergySpec,
)
from edge_agent.types import EnergyReport, FloatArray, Sample

SQRT3 = math.sqrt(3.0)
# Expected power (kW) at an operating point (the efficiency model, efficiency.py).
ExpectedPower = Callable[[Sequence[float]], float]


@dataclass(frozen=True)
class EnergySignals:
    """One asset's energy spec resolved against its profile: the points to assemble (in column
    order) and how to turn a row of them into kW, cos φ and m³/s."""

    source: str
    points: tuple[str, ...]
    phases: int
    active_power: tuple[int, float] | None  # (column, factor to kW)
    current: tuple[int, float] | None  # (column, factor to A)
    voltage: tuple[int, float] | float | None  # (column, factor to V) or volts
    power_factor: tuple[int, float] | float | None  # (column, factor) or cos φ
    product: tuple[int, float] | None  # (column, factor to m³/s)
    product_name: str
    operating_point: tuple[int, ...]  # columns
    operating_point_names: tuple[str, ...]

    @property
    def power_factor_measured(self) -> bool:
        return isinstance(self.power_factor, tuple)


def resolve(source: str, spec: EnergySpec, unit_of: dict[str, str]) -> EnergySignals:
    """Columns and unit factors for `spec` (already checked against the profile's units)."""
    points: list[str] = []

    def col(name: str, table: dict[str, float]) -> tuple[int, float]:
        if name not in points:
            points.append(name)
        return points.index(name), table[unit_of[name]]

    def point_or_constant(
        v: str | float | Constant | None, table: dict[str, float]
    ) -> tuple[int, float] | float | None:
        if v is None:
            return None
        if isinstance(v, str):
            return col(v, table)
        if isinstance(v, Constant):
            return v.value * table[v.unit]
        return float(v)

    active = col(spec.active_power, POWER_UNITS) if spec.active_power else None
    current = col(spec.current, CURRENT_UNITS) if spec.current and not active else None
    voltage = None if active else point_or_constant(spec.voltage, VOLTAGE_UNITS)
    pf = None if active else point_or_constant(spec.power_factor, FACTOR_UNITS)
    product = col(spec.product, FLOW_UNITS) if spec.product else None
    ops = tuple(col(n, {unit_of[n]: 1.0})[0] for n in spec.operating_point)
    return EnergySignals(
        source, tuple(points), spec.phases, active, current, voltage, pf, product,
        spec.product_name, ops, tuple(spec.operating_point),
    )  # fmt: skip


def _value(row: FloatArray, v: tuple[int, float] | float) -> float:
    if isinstance(v, tuple):
        return float(row[v[0]]) * v[1]
    return v


def power_kw(sig: EnergySignals, row: FloatArray) -> tuple[float, float | None]:
    """(active power in kW, cos φ or None) of one row; NaN when the row cannot give a power
    (a power factor outside (0, 1], a negative power)."""
    if sig.active_power is not None:
        p = _value(row, sig.active_power)
        return (p if p >= 0 else math.nan), None
    assert sig.current is not None and sig.voltage is not None and sig.power_factor is not None
    i, v, pf = _value(row, sig.current), _value(row, sig.voltage), _value(row, sig.power_factor)
    if not 0 < pf <= 1 or i < 0 or v < 0:
        return math.nan, pf
    k = SQRT3 if sig.phases == 3 else 1.0
    return k * v * i * pf / 1000.0, pf


class EnergyMeter:
    """Integrates one asset's energy samples into `EnergyReport`s, one per interval."""

    # Below this much product (m³) in an interval, kWh per m³ is not reported: a stopped pump's
    # no-load energy over a trickle would be a meaningless, huge number.
    MIN_PRODUCT_M3 = 1e-3

    def __init__(
        self,
        asset: str,
        signals: EnergySignals,
        period: float,
        interval_s: float,
        expected_kw: ExpectedPower | None = None,
    ) -> None:
        self.asset = asset
        self.signals = signals
        self.period = period
        self.interval_s = interval_s
        self.expected_kw = expected_kw
        self._ops = list(signals.operating_point)
        self._k: int | None = None  # index of the open interval
        self._began: float | None = None  # the first sample's slot start (the agent started)
        self._reset()
        self.rejected = 0  # valid samples whose values gave no power (counted, not integrated)

    def _reset(self) -> None:
        self._first: float | None = None
        self._n = self._bad = 0
        self._measured = self._kwh = self._pf = self._m3 = 0.0
        self._pf_n = 0
        self._kwh_expected = 0.0
        self._expected_ok = True

    def push(self, sample: Sample) -> tuple[list[EnergyReport], float | None, float | None]:
        """Feed one grid sample: the intervals it closed, and for a valid sample its power and
        the power the efficiency model expects at its operating point (kW; None otherwise)."""
        out: list[EnergyReport] = []
        k = math.floor(sample.ts / self.interval_s)
        if self._k is not None and k > self._k and self._n:
            out.append(self._report())
        if self._k is None or k > self._k:
            self._k = k
            self._reset()
        # A sample stamped before the open interval (the grid never does this) is ignored.
        if k < self._k:
            return out, None, None
        if self._first is None:
            self._first = sample.ts
        if self._began is None:
            self._began = sample.ts - self.period / 2
        self._n += 1
        if not sample.valid:
            self._bad += 1
            return out, None, None
        p, pf = power_kw(self.signals, sample.values)
        if not math.isfinite(p):
            self._bad += 1
            self.rejected += 1
            return out, None, None
        dt = self.period
        self._measured += dt
        self._kwh += p * dt / 3600.0
        if pf is not None:
            self._pf += pf
            self._pf_n += 1
        if self.signals.product is not None:
            q = max(0.0, _value(sample.values, self.signals.product))
            self._m3 += q * dt
        e = None
        if self.expected_kw is not None and self.signals.operating_point:
            row = sample.values
            e = self.expected_kw([float(row[i]) for i in self._ops])
            if math.isfinite(e):
                self._kwh_expected += e * dt / 3600.0
            else:
                self._expected_ok = False
        return out, p, e

    def _report(self) -> EnergyReport:
        assert self._k is not None and self._first is not None
        assert self._began is not None
        # Only the interval the meter started in is partial: later ones span their whole
        # length, whatever of it was unmeasured.
        start = max(self._k * self.interval_s, self._began)
        end = (self._k + 1) * self.interval_s
        measured = self._measured
        has_product = self.signals.product is not None
        m3 = self._m3 if has_product else None
        specific = self._kwh / m3 if m3 is not None and m3 >= self.MIN_PRODUCT_M3 else None
        expected = ratio = None
        if self.expected_kw is not None and self._expected_ok and self._kwh_expected > 0:
            ratio = self._kwh / self._kwh_expected
            if specific is not None and m3 is not None:
                expected = self._kwh_expected / m3
        return EnergyReport(
            asset=self.asset, start=start, end=end, measured_s=measured, samples=self._n,
            invalid_samples=self._bad, energy_kwh=self._kwh,
            mean_power_kw=self._kwh * 3600.0 / measured if measured > 0 else None,
            mean_power_factor=self._pf / self._pf_n if self._pf_n else None,
            product=m3, product_name=self.signals.product_name, specific_energy=specific,
            expected_specific_energy=expected, efficiency_ratio=ratio,
        )  # fmt: skip
