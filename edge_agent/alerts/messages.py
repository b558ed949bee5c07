"""Upstream topics and JSON payloads. Every payload has a JSON Schema in `schemas/`."""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from edge_agent.types import AlertEvent, AlertEventKind, EnergyReport, Forecast

ALERT_SCHEMA = "edge-agent/alert/1"
STATUS_SCHEMA = "edge-agent/status/1"
EVENT_SCHEMA = "edge-agent/event/1"
TELEMETRY_SCHEMA = "edge-agent/telemetry/1"
ENERGY_SCHEMA = "edge-agent/energy/1"
SCHEMA_NAMES = ("alert", "status", "event", "telemetry", "energy")


class EventType(enum.StrEnum):
    """System event types: the `type` field of edge-agent/event/1 (schemas/event.v1.json lists
    the same values; a StrEnum, so the wire strings are the values)."""

    SOURCE_OFFLINE = "source_offline"
    SOURCE_ONLINE = "source_online"
    DATA_QUALITY = "data_quality"
    MODEL_LOADED = "model_loaded"
    MODEL_REJECTED = "model_rejected"
    CONFIG_REJECTED = "config_rejected"
    OUTBOX_DROPPED = "outbox_dropped"
    OUTBOX_ERROR = "outbox_error"
    OUTBOX_RECOVERED = "outbox_recovered"
    PUBLISH_REJECTED = "publish_rejected"
    ALERT_BUDGET_EXCEEDED = "alert_budget_exceeded"
    # Fleet commands (docs/FLEET.md): every step of a command answers with one of these (and
    # model_loaded / model_rejected / config_rejected above), `details.command_id` naming it.
    COMMAND_ACCEPTED = "command_accepted"
    COMMAND_REJECTED = "command_rejected"
    BUNDLE_STAGED = "bundle_staged"
    ROLLED_BACK = "rolled_back"
    CONFIG_APPLIED = "config_applied"
    LOOP_FAULT = "loop_fault"


EVENT_TYPES = tuple(EventType)


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    site: str
    gateway: str

    @property
    def base(self) -> str:
        return f"{self.prefix.rstrip('/')}/{self.site}/{self.gateway}"

    def alert(self, asset: str) -> str:
        return f"{self.base}/alerts/{asset}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    def telemetry(self, asset: str) -> str:
        return f"{self.base}/telemetry/{asset}"

    def energy(self, asset: str) -> str:
        return f"{self.base}/energy/{asset}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_payload(e: AlertEvent, site: str, gateway: str) -> dict[str, Any]:
    return {
        "schema": ALERT_SCHEMA,
        "alert_id": e.alert_id,
        "event": e.event.value,
        "site": site,
        "gateway": gateway,
        "asset": e.asset,
        "ts": iso(e.ts),
        "kind": e.kind,
        "severity": e.severity,
        "score": round(e.score, 6),
        "threshold": round(e.threshold, 6),
        "message": e.message,
        "contributions": [
            {
                "signal": c.signal,
                "share": c.share,
                "value": c.value,
                "normal_low": c.normal_low,
                "normal_high": c.normal_high,
            }
            for c in e.contributions
        ],
        "model_version": e.model_version,
        **({"probabilities": dict(e.probabilities)} if e.probabilities else {}),
        **({"recurrences": e.recurrences} if e.recurrences else {}),
        "condition_active": e.condition_active and e.event is not AlertEventKind.CLEARED,
        **({"forecast": forecast_payload(e.forecast)} if e.forecast is not None else {}),
    }


def forecast_payload(f: Forecast) -> dict[str, Any]:
    """The `forecast` object of a `predicted` alert (issue 14)."""
    near, far = f.interval_s
    return {
        "signal": f.signal,
        "unit": f.unit,
        "limit": f.limit,
        "limit_kind": f.limit_kind,
        "direction": f.direction,
        **({"label": f.label} if f.label else {}),
        "level": f.level,
        "rate_per_h": f.rate_per_h,
        "time_to_limit_s": f.time_to_limit_s,
        "interval_s": {"confidence": 0.8, "near": near, "far": far},
        "horizon_s": f.horizon_s,
    }


def status_payload(
    state: str,
    site: str,
    gateway: str,
    version: str,
    models: dict[str, str],
    ts: float,
    unsigned_models: list[str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema": STATUS_SCHEMA,
        "state": state,
        "site": site,
        "gateway": gateway,
        "agent_version": version,
        "models": models,
        "ts": iso(ts),
    }
    if unsigned_models:
        body["unsigned_models"] = sorted(unsigned_models)
    return body


def event_payload(
    type_: EventType,
    severity: str,
    message: str,
    site: str,
    gateway: str,
    ts: float,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    try:
        kind = EventType(type_)  # a plain string from a caller outside the type checker
    except ValueError:
        raise ValueError(f"unknown event type {type_!r}") from None
    body: dict[str, Any] = {
        "schema": EVENT_SCHEMA,
        # Random: events have no natural identity; it lets consumers drop redeliveries.
        "event_id": str(uuid.uuid4()),
        "type": kind.value,
        "severity": severity,
        "site": site,
        "gateway": gateway,
        "ts": iso(ts),
        "message": message,
    }
    if subject is not None:
        body["subject"] = subject
    if details:
        body["details"] = details
    return body


def telemetry_payload(
    site: str, gateway: str, asset: str, ts: float, score: float, threshold: float, model: str
) -> dict[str, Any]:
    return {
        "schema": TELEMETRY_SCHEMA,
        "site": site,
        "gateway": gateway,
        "asset": asset,
        "ts": iso(ts),
        "score": round(score, 6),
        "threshold": round(threshold, 6),
        "model_version": model,
    }


def _sig(v: float | None, digits: int = 7) -> float | None:
    """`digits` significant digits: an interval of seconds moves litres, one of a day
    thousands of cubic metres; fixed decimals would lose the first or bloat the second."""
    return None if v is None else float(f"{v:.{digits}g}")


def energy_payload(r: EnergyReport, site: str, gateway: str) -> dict[str, Any]:
    """One energy interval of one asset (schemas/energy.v1.json)."""
    body: dict[str, Any] = {
        "schema": ENERGY_SCHEMA,
        "site": site,
        "gateway": gateway,
        "asset": r.asset,
        "start": iso(r.start),
        "end": iso(r.end),
        "measured_s": round(r.measured_s, 3),
        "unmeasured_s": round(r.unmeasured_s, 3),
        "samples": r.samples,
        "invalid_samples": r.invalid_samples,
        "energy_kwh": _sig(r.energy_kwh),
        "mean_power_kw": _sig(r.mean_power_kw),
        "mean_power_factor": _sig(r.mean_power_factor, 4),
    }
    if r.product is not None:
        body["product"] = {"unit": r.product_name, "amount": _sig(r.product)}
        body["specific_energy_kwh_per_unit"] = _sig(r.specific_energy)
    if r.efficiency_ratio is not None:
        body["efficiency"] = {
            "ratio": _sig(r.efficiency_ratio, 6),
            "expected_specific_energy_kwh_per_unit": _sig(r.expected_specific_energy),
        }
    return body


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema shipped for a message kind (one of SCHEMA_NAMES)."""
    text = resources.files("edge_agent.alerts").joinpath(f"schemas/{name}.v1.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema
