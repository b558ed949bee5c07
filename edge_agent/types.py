"""Data passed between pipeline stages: frozen, slotted, no behaviour beyond trivial helpers.

Time is always carried with the data (seconds since the Unix epoch, float), never read from a clock
inside a stage; that keeps every stage replayable in virtual time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


class Quality(enum.IntEnum):
    """OPC-style quality of one reading; ordered so that max() picks the worst."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one point of one source."""

    point: str
    value: float
    quality: Quality = Quality.GOOD
    # When the device stamps its values (OPC UA source timestamp, MQTT payload time): that time,
    # seconds since the epoch. The batch time stays the grid/arrival time.
    source_ts: float | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """All readings a source obtained at one instant (one poll cycle, one message)."""

    source: str
    ts: float
    readings: tuple[Reading, ...]


@dataclass(frozen=True, slots=True)
class Sample:
    """One row of an asset's signals on its sample grid. `valid` is False when any signal was
    missing, stale or bad at that grid instant."""

    ts: float
    values: FloatArray
    valid: bool
    # Why the sample is invalid: (column, "missing" | "stale" | "bad") for each offending signal.
    issues: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Window:
    """A (window, signals) block of consecutive valid samples, ending at `ts`."""

    asset: str
    ts: float
    values: FloatArray
    last: FloatArray = field(repr=False)


@dataclass(frozen=True, slots=True)
class Score:
    """The detector's verdict on one window."""

    asset: str
    ts: float
    score: float
    signal_errors: FloatArray
    last: FloatArray


class AlertEventKind(enum.StrEnum):
    RAISED = "raised"
    UPDATED = "updated"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class Contribution:
    signal: str
    share: float
    value: float
    normal_low: float
    normal_high: float


@dataclass(frozen=True, slots=True)
class Forecast:
    """What a `predicted` alert forecasts (issue 14): when `signal` reaches its limit. Times in
    seconds from the event's `ts`; None: not within the forecast's look-ahead."""

    signal: str
    unit: str
    limit: float
    limit_kind: str  # "alarm" | "trip"
    direction: str  # "high" | "low"
    label: str
    level: float  # the trend's level at ts
    rate_per_h: float  # its slope there, units per hour
    time_to_limit_s: float | None
    interval_s: tuple[float | None, float | None]  # 80 % interval: near end, far end
    horizon_s: float


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A change in an asset's alert state, ready to be serialized upstream."""

    alert_id: str
    event: AlertEventKind
    asset: str
    ts: float
    score: float
    threshold: float
    severity: str
    kind: str
    message: str
    contributions: tuple[Contribution, ...]
    model_version: str
    # Fault class probabilities when the bundle has a classifier, most likely first.
    probabilities: tuple[tuple[str, float], ...] = ()
    # Times the condition came back inside this alert's episode (alerts/policy.py), so far.
    recurrences: int = 0
    # Whether the alert's condition holds now (ISA-18.2: active vs returned to normal while the
    # alert is still open); False on `cleared`.
    condition_active: bool = True
    # Only on `predicted` alerts (kind "predicted"): the time-to-limit forecast.
    forecast: Forecast | None = None


class DataQualityEventKind(enum.StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class DataQualityEvent:
    """An asset's data went bad (stale, bad quality or missing signals: windows are skipped) or
    came back. Raised once when it starts and cleared once when it ends, never per sample."""

    asset: str
    ts: float
    event: DataQualityEventKind
    # On raise: the offending signals and why ("stale", "bad", "missing"); empty on clear.
    issues: tuple[tuple[str, str], ...]
    invalid_samples: int = 0  # on clear: how many grid samples the episode lasted

    @property
    def subject(self) -> str:
        return self.asset

    def describe(self) -> str:
        if self.event is DataQualityEventKind.CLEARED:
            return f"{self.asset}: data quality restored after {self.invalid_samples} sample(s)"
        what = ", ".join(f"{name} {why}" for name, why in self.issues) or "no valid samples"
        return f"{self.asset}: data quality degraded ({what}); windows skipped"

    def details(self) -> dict[str, Any] | None:
        if self.event is DataQualityEventKind.CLEARED:
            return None
        return {"issues": [f"{name} {why}" for name, why in self.issues]}


@dataclass(frozen=True, slots=True)
class SourceQualityEvent:
    """A connected source's readings stopped being all good (exception responses, undecodable
    values, timestamps off the gateway clock) or became all good again: raised once when it
    starts and cleared once when it ends, never per batch."""

    source: str
    event: DataQualityEventKind
    # On raise: the points whose readings are not good, how many readings the batch had, and
    # the reason when the gateway judged them (a timestamp off its clock).
    points: tuple[str, ...] = ()
    readings: int = 0
    reason: str | None = None

    @property
    def subject(self) -> str:
        return self.source

    def describe(self) -> str:
        if self.event is DataQualityEventKind.CLEARED:
            return f"source {self.source}: all readings good again"
        why = f": {self.reason}" if self.reason else ""
        return f"source {self.source}: {len(self.points)} of {self.readings} readings not good{why}"

    def details(self) -> dict[str, Any] | None:
        if self.event is DataQualityEventKind.CLEARED:
            return None
        details: dict[str, Any] = {"points": list(self.points[:20])}
        if self.reason is not None:
            details["reason"] = self.reason
        return details


@dataclass(frozen=True, slots=True)
class EnergyReport:
    """One interval of one asset: what the `energy/1` message carries."""

    asset: str
    start: float  # interval start (data time, s since the epoch)
    end: float
    measured_s: float  # time covered by valid samples
    samples: int
    invalid_samples: int  # samples that added nothing (their time is unmeasured)
    energy_kwh: float
    mean_power_kw: float | None  # over the measured time
    mean_power_factor: float | None
    product: float | None  # m³ of product over the measured time
    product_name: str
    specific_energy: float | None  # kWh per m³ (None: no product signal, or none moved)
    expected_specific_energy: float | None = None  # the efficiency model's, same samples
    efficiency_ratio: float | None = None  # measured / expected energy, same samples

    @property
    def unmeasured_s(self) -> float:
        return max(0.0, self.end - self.start - self.measured_s)


@dataclass(frozen=True, slots=True)
class StepOutput:
    """Everything an asset pipeline produced from the batches it was pushed, each part in time
    order: the one output stream that the agent, replay and the batched replay consume (nothing
    is read back from the pipeline's attributes afterwards, so they cannot drift apart)."""

    grid: tuple[float, ...]  # every grid sample assembled
    valid: tuple[bool, ...]  # per grid sample: complete and good (only such samples are scored)
    scores: tuple[Score, ...]  # every window scored
    alerts: tuple[AlertEvent, ...]
    quality: tuple[DataQualityEvent, ...]  # data-quality episodes that started or ended
    # `predicted` alerts (time-to-limit forecasts), apart from the detector's alerts above: each
    # has its own lifecycle per signal and limit, and never counts in the detector's figures.
    predictions: tuple[AlertEvent, ...] = ()
    energy: tuple[EnergyReport, ...] = ()  # energy intervals closed (edge_agent/energy/)
    # `efficiency` alerts: their own lifecycle beside the model's alert (not in `alerts`).
    efficiency: tuple[AlertEvent, ...] = ()

    @property
    def invalid_samples(self) -> int:
        return self.valid.count(False)
