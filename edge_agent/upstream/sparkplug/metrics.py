"""The Sparkplug metric map (docs/FLEET.md): what the edge node and each asset (device) publish,
with datatypes, and the values the agent's scores and alerts give them. Pure: no I/O.

Metrics are sent by name (no aliases): a scored window's DDATA is a few hundred bytes either way,
and names keep every message readable by a host that missed the birth."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pysparkplug import DataType, Metric

from edge_agent.types import AlertEvent, AlertEventKind, Score

BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
AGENT_VERSION = "Properties/Agent Version"
SITE = "Properties/Site"
SCORE = "Anomaly/Score"
THRESHOLD = "Anomaly/Threshold"
ALERT_ACTIVE = "Alert/Active"
ALERT_CONDITION = "Alert/Condition Active"
ALERT_SEVERITY = "Alert/Severity"
ALERT_ID = "Alert/Id"
MODEL_VERSION = "Model/Version"
CONTRIBUTION = "Contributions/"
# Reserved for stages that add their own device metrics (energy, forecasts): they pass
# `MetricDef`s with these prefixes as `extra` to `device_definitions`.
ENERGY = "Energy/"
FORECAST = "Forecast/"

MetricValue = float | bool | str | int


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    datatype: DataType
    # Doubles: how far a value must move from the one last sent to go out again (0: any change).
    deadband: float = 0.0

    def changed(self, sent: MetricValue | None, now: MetricValue | None) -> bool:
        """Report by exception: does `now` differ enough from `sent` to be published?"""
        if now is None:
            return False  # nothing new (values are never withdrawn once known)
        if sent is None:
            return True
        if self.datatype is DataType.DOUBLE:
            a, b = float(sent), float(now)
            if math.isnan(a) or math.isnan(b):
                return math.isnan(a) != math.isnan(b)
            return abs(b - a) > self.deadband if self.deadband > 0 else a != b
        return sent != now

    def metric(self, value: MetricValue | None, ts_ms: int | None) -> Metric:
        """The pysparkplug metric; None is sent as an explicit null (`is_null`)."""
        return Metric(timestamp=ts_ms, name=self.name, datatype=self.datatype, value=value)


NODE_DEFINITIONS = (
    MetricDef(BD_SEQ, DataType.INT64),
    MetricDef(REBIRTH, DataType.BOOLEAN),
    MetricDef(AGENT_VERSION, DataType.STRING),
    MetricDef(SITE, DataType.STRING),
)


def device_definitions(
    signals: Sequence[str], score_deadband: float = 0.0, extra: Sequence[MetricDef] = ()
) -> tuple[MetricDef, ...]:
    """An asset's metrics: its anomaly score and threshold, its alert state, the share of each
    signal in the score, its model version, and whatever `extra` stages define."""
    return (
        MetricDef(SCORE, DataType.DOUBLE, score_deadband),
        MetricDef(THRESHOLD, DataType.DOUBLE),
        MetricDef(ALERT_ACTIVE, DataType.BOOLEAN),
        MetricDef(ALERT_CONDITION, DataType.BOOLEAN),
        MetricDef(ALERT_SEVERITY, DataType.STRING),
        MetricDef(ALERT_ID, DataType.STRING),
        MetricDef(MODEL_VERSION, DataType.STRING),
        *(MetricDef(CONTRIBUTION + s, DataType.DOUBLE, score_deadband) for s in signals),
        *extra,
    )


def score_values(
    score: Score, signals: Sequence[str], threshold: float, model_version: str
) -> dict[str, MetricValue]:
    """A scored window's metrics; contributions are each signal's share (0–1) of the window's
    reconstruction error, the same shares an alert message lists."""
    errors = np.asarray(score.signal_errors, dtype=np.float64)
    total = float(errors.sum()) or 1.0
    out: dict[str, MetricValue] = {
        SCORE: float(score.score),
        THRESHOLD: float(threshold),
        MODEL_VERSION: model_version,
    }
    for name, err in zip(signals, errors, strict=False):
        out[CONTRIBUTION + name] = round(float(err) / total, 4)
    return out


def alert_values(event: AlertEvent) -> dict[str, MetricValue]:
    """An alert event's metrics: a cleared alert leaves no severity and no id."""
    active = event.event is not AlertEventKind.CLEARED
    return {
        ALERT_ACTIVE: active,
        ALERT_CONDITION: active and event.condition_active,
        ALERT_SEVERITY: event.severity if active else "",
        ALERT_ID: event.alert_id if active else "",
    }


def idle_values() -> Mapping[str, MetricValue]:
    """A device's alert state before anything happened: no alert."""
    return {ALERT_ACTIVE: False, ALERT_CONDITION: False, ALERT_SEVERITY: "", ALERT_ID: ""}
