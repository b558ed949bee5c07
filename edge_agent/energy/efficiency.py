"""Is the asset using more energy than its own normal data says it should at this operating
point? A model of active power against the operating point (flow, head, speed: the profile's
`energy.operating_point`), fitted on the normal training data and stored in the bundle manifest
(`efficiency`), and a judge that compares measured with expected energy over blocks of valid time.

Why power against the operating point and not kWh/m³ against flow: an interval mixes operating
points (set-point changes), and the ratio of measured to expected *energy over the same samples*
is exact for any mix, where a model of interval kWh/m³ would depend on how the interval happened
to be spent. The ratio is reported per energy interval too (`energy/1`), and specific energy
expected = expected kWh over the same m³.

The tolerance comes from the training data's own blocks: the largest relative deviation of a
block (or 3.29 standard deviations of the block ratios, the two-sided 0.999 point of a normal
law, whichever is wider), times (1 + margin) as the detector's threshold is. Nothing is fitted to
a benchmark. Only excess consumption raises: a machine drawing less than normal for its operating
point is a measurement question, not an efficiency loss.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.types import AlertEvent, AlertEventKind

F64 = npt.NDArray[np.float64]
_NS = uuid.UUID("0b6f3c1a-6c0e-4d7e-9a43-51f1f4a0e6d2")
Z_999 = 3.29  # two-sided 0.999 quantile of the standard normal


class EfficiencyError(ValueError):
    """Normal data that cannot give an efficiency model; the message says why."""


class EfficiencySpec(BaseModel):
    """`efficiency` of a bundle manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: str = "active power ~ quadratic in the standardized operating point, least squares"
    features: list[str] = Field(min_length=1)
    mean: list[float]
    scale: list[float]
    coef: list[float]
    window_s: float = Field(gt=0)
    tolerance: float = Field(gt=0)
    persistence: int = Field(2, ge=1)
    margin: float = Field(ge=0)
    blocks: int = Field(ge=1)
    block_ratio_sd: float = Field(ge=0)
    block_ratio_max_dev: float = Field(ge=0)

    @model_validator(mode="after")
    def _shapes(self) -> EfficiencySpec:
        k = len(self.features)
        terms = 1 + k + k * (k + 1) // 2
        if len(self.mean) != k or len(self.scale) != k or len(self.coef) != terms:
            raise ValueError(
                f"efficiency: {k} features need {k} mean and scale values and {terms} "
                f"coefficients (have {len(self.mean)}, {len(self.scale)}, {len(self.coef)})"
            )
        if any(not v > 0 for v in self.scale):
            raise ValueError("efficiency.scale: every value must be positive")
        return self

    def expected_kw(self, ops: Sequence[float]) -> float:
        """Expected active power (kW) at one operating point."""
        return self.predictor()(ops)

    def predictor(self) -> Callable[[Sequence[float]], float]:
        """`expected_kw` as a closure over plain floats: it runs on every valid sample, where
        numpy's per-call overhead on six numbers would cost several times the arithmetic."""
        mean, scale, coef = tuple(self.mean), tuple(self.scale), tuple(self.coef)
        k = len(mean)
        pairs = [(i, j) for i in range(k) for j in range(i, k)]

        def expected(ops: Sequence[float]) -> float:
            z = [(ops[i] - mean[i]) / scale[i] for i in range(k)]
            total = coef[0] + sum(coef[1 + i] * z[i] for i in range(k))
            return total + sum(
                c * z[i] * z[j] for c, (i, j) in zip(coef[1 + k :], pairs, strict=True)
            )

        return expected


def _basis(z: F64) -> F64:
    """[1, z_i, z_i·z_j (i ≤ j)] per row: a quadratic surface, enough for a pump or fan curve
    over its working range, few enough terms (6 for two signals) to fit from an hour."""
    n, k = z.shape
    cols = [np.ones(n), *(z[:, i] for i in range(k))]
    cols += [z[:, i] * z[:, j] for i in range(k) for j in range(i, k)]
    return np.stack(cols, axis=1)


def block_ratios(power: F64, expected: F64, per_block: int) -> F64:
    """Measured over expected energy in consecutive blocks of `per_block` valid samples."""
    n = len(power) // per_block * per_block
    if n == 0:
        return np.zeros(0)
    p = power[:n].reshape(-1, per_block).sum(axis=1)
    e = expected[:n].reshape(-1, per_block).sum(axis=1)
    return np.asarray(p / e, dtype=np.float64)


def fit_efficiency(
    power_kw: F64,
    ops: F64,
    features: list[str],
    period: float,
    window_s: float = 300.0,
    margin: float = 0.25,
    min_blocks: int = 8,
) -> EfficiencySpec:
    """Fit the model on normal data: `power_kw` per grid sample (NaN where not valid), `ops` the
    operating point per sample (n × len(features)), in time order."""
    x = np.asarray(ops, dtype=np.float64).reshape(len(power_kw), -1)
    p = np.asarray(power_kw, dtype=np.float64)
    ok = np.isfinite(p) & np.all(np.isfinite(x), axis=1) & (p >= 0)
    p, x = p[ok], x[ok]
    per_block = max(1, round(window_s / period))
    if len(p) < min_blocks * per_block:
        raise EfficiencyError(
            f"{len(p)} valid samples; the efficiency model needs {min_blocks} blocks of "
            f"{window_s:g} s ({min_blocks * per_block} samples)"
        )
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), 1e-6 * np.maximum(1.0, np.abs(mean)))
    basis = _basis((x - mean) / scale)
    # A little ridge: operating-point signals are often collinear (head follows flow on a
    # fixed system curve), and the surface must stay tame between the points it saw.
    lam = 1e-6 * len(p)
    coef = np.linalg.solve(basis.T @ basis + lam * np.eye(basis.shape[1]), basis.T @ p)
    expected = basis @ coef
    if np.any(expected <= 0):
        raise EfficiencyError("the fitted power is not positive over the normal data")
    ratios = block_ratios(p, expected, per_block)
    dev = float(np.max(np.abs(ratios - 1.0)))
    sd = float(np.std(ratios, ddof=1))
    tol = (1.0 + margin) * max(dev, Z_999 * sd)
    return EfficiencySpec(
        features=list(features), mean=mean.tolist(), scale=scale.tolist(),
        coef=[float(c) for c in coef], window_s=per_block * period, tolerance=tol,
        margin=margin, blocks=len(ratios), block_ratio_sd=sd, block_ratio_max_dev=dev,
    )  # fmt: skip


@dataclass(slots=True)
class _Block:
    n: int = 0
    measured: float = 0.0
    expected: float = 0.0


class EfficiencyJudge:
    """Raises an `efficiency` alert after `persistence` consecutive blocks of `window_s` valid
    time whose measured energy exceeds the expected by more than the tolerance, and clears it
    after as many blocks back under half the tolerance (hysteresis)."""

    def __init__(self, asset: str, spec: EfficiencySpec, period: float, model_version: str) -> None:
        self.asset = asset
        self.spec = spec
        self.model_version = model_version
        self.per_block = max(1, round(spec.window_s / period))
        self._block = _Block()
        self._over = self._under = 0
        self.active: str | None = None  # alert id
        self.last_ratio: float | None = None

    @property
    def threshold(self) -> float:
        return 1.0 + self.spec.tolerance

    def push(self, ts: float, power_kw: float, expected_kw: float) -> AlertEvent | None:
        b = self._block
        if not (math.isfinite(expected_kw) and expected_kw > 0):
            return None
        b.n += 1
        b.measured += power_kw
        b.expected += expected_kw
        if b.n < self.per_block:
            return None
        ratio = b.measured / b.expected
        self._block = _Block()
        self.last_ratio = ratio
        return self._judge(ts, ratio)

    def _judge(self, ts: float, ratio: float) -> AlertEvent | None:
        tol = self.spec.tolerance
        if self.active is None:
            self._over = self._over + 1 if ratio > 1 + tol else 0
            if self._over >= self.spec.persistence:
                self.active = str(uuid.uuid5(_NS, f"{self.asset}/efficiency/{ts:.6f}"))
                self._under = 0
                return self._event(AlertEventKind.RAISED, ts, ratio)
            return None
        self._under = self._under + 1 if ratio < 1 + tol / 2 else 0
        if self._under >= self.spec.persistence:
            event = self._event(AlertEventKind.CLEARED, ts, ratio)
            self.active = None
            self._over = 0
            return event
        return None

    def _event(self, kind: AlertEventKind, ts: float, ratio: float) -> AlertEvent:
        assert self.active is not None
        excess = (ratio - 1.0) * 100
        tol = self.spec.tolerance * 100
        window = self.spec.window_s
        what = (
            f"{self.asset}: efficiency: energy {excess:+.1f} % against the asset's normal at this "
            f"operating point ({', '.join(self.spec.features)}) over the last {window:g} s "
            f"(tolerance {tol:.1f} %)"
        )
        if kind is AlertEventKind.CLEARED:
            what = f"{self.asset}: efficiency back within {tol:.1f} % of normal ({excess:+.1f} %)"
        return AlertEvent(
            alert_id=self.active, event=kind, asset=self.asset, ts=ts, score=ratio,
            threshold=self.threshold, severity="warning", kind="efficiency", message=what,
            contributions=(), model_version=self.model_version,
        )  # fmt: skip
