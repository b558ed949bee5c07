"""The forecast stage of one asset: levels of its limited signals, their time to limit, and the
`predicted` alerts (raised → updated → cleared, one lifecycle per signal and limit).

Fed every grid sample (`push`); works on one level per bucket of valid samples and refits when a
bucket closes, so its cost is a handful of small least-squares fits per minute per asset.

The level is the bucket's *upper envelope*, not its mean (`envelope`): a PLC's limit alarm fires
on an instantaneous value, so a signal that swings with load (a compressor's discharge
temperature, 6 °C higher loaded than unloaded) crosses its limit at its loaded peaks, while the
mean of the bucket reaches it much later."""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.forecast.calibration import Calibration, quantile_columns
from edge_agent.forecast.trend import Crossing, crossings
from edge_agent.limits import LimitSpec
from edge_agent.types import AlertEvent, AlertEventKind, Contribution, Forecast

KIND = "predicted"
MODEL = "forecast-trend/2"  # /2: envelope levels, mixed curves, calibrated band
_NS = uuid.UUID("0b7d3f4e-8e1a-4c55-9a61-5d2f0c9e7a10")


@dataclass(frozen=True, slots=True)
class ForecastParams:
    horizon_s: float = 5400.0
    bucket_s: float = 120.0
    history_s: float = 10800.0
    min_history_s: float = 1800.0
    update_interval_s: float = 600.0
    sample_period_s: float = 1.0
    # Consecutive fits the raise (near end under the horizon) or clear (near end beyond
    # `clear_factor` × horizon) condition must hold: one odd fit neither raises nor clears.
    persist: int = 3
    clear_factor: float = 2.0
    # How far ahead a crossing is looked for, in horizons (beyond: "not within").
    lookahead: float = 4.0


@dataclass(slots=True)
class _Target:
    """One signal and one of its limits, with its alert state."""

    column: int
    signal: str
    spec: LimitSpec
    limit: float
    limit_kind: str
    sign: float  # +1: a high limit; -1: a low one (the fit runs on the negated signal)
    normal: tuple[float, float]
    alert_id: str | None = None
    raise_streak: int = 0
    clear_streak: int = 0
    published_ts: float = -math.inf
    published_eta: float = math.inf
    severity: str = "warning"
    last: Crossing | None = None


# The envelope's quantile: the level the signal spends a tenth of the bucket at or above. A load
# state that holds for less than a tenth of the time is not the level an alarm is about to meet.
ENVELOPE_Q = 0.9
_Z_ENVELOPE = 1.2815515655446004  # the standard normal's 90th percentile


def envelope(samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per column of `samples` (valid samples in time order × signals), the upper envelope of the
    process: the 90th percentile of the samples less what white sample-to-sample noise alone
    puts there (1.28 σ, σ from the median absolute successive difference, which a load step
    now and then does not move). What holds for tens of seconds (a load state) stays in; what
    changes from one sample to the next (sensor noise: its first sample over the limit is a
    matter of chance and of the sample rate, not of the process) does not. On a signal that is
    only noise the envelope is its mean; for a low limit pass the negated samples."""
    q = quantile_columns(samples, ENVELOPE_Q)
    if len(samples) < 3:
        return q
    steps = np.abs(np.diff(samples, axis=0))
    # Successive differences of white noise have σ·√2; MAD → σ by 1.4826.
    noise = 1.4826 * quantile_columns(steps, 0.5) / math.sqrt(2.0)
    out: npt.NDArray[np.float64] = q - _Z_ENVELOPE * noise
    return out


@dataclass(slots=True)
class _Bucket:
    index: int
    samples: npt.NDArray[np.float64]  # capacity × the limited columns
    count: int = 0


@dataclass(slots=True)
class ForecastStage:
    asset: str
    params: ForecastParams
    targets: list[_Target]
    columns: list[int]
    # Data time of the latest fit (the end of its last bucket); each target's `last` holds it.
    fitted_at: float | None = None
    _bucket: _Bucket | None = None
    _target_columns: npt.NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, np.intp))
    _signs: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    _columns: npt.NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, np.intp))
    _limits: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    _times: deque[float] = field(default_factory=deque)
    _levels: deque[npt.NDArray[np.float64]] = field(default_factory=deque)
    _calibration: Calibration | None = None

    @classmethod
    def build(
        cls,
        asset: str,
        signals: Sequence[str],
        limits: Mapping[str, LimitSpec],
        params: ForecastParams,
        normal: Sequence[tuple[float, float]] | None = None,
    ) -> ForecastStage | None:
        """The stage for these limits on `signals` (the asset's columns, in order); None when
        no signal has a limit."""
        targets: list[_Target] = []
        for col, name in enumerate(signals):
            spec = limits.get(name)
            if spec is None:
                continue
            rng = normal[col] if normal is not None else (math.nan, math.nan)
            for side, sign in ((spec.high, 1.0), (spec.low, -1.0)):
                if side is not None:
                    targets.append(_Target(col, name, spec, side[0], side[1], sign, rng))
        if not targets:
            return None
        columns = sorted({t.column for t in targets})
        stage = cls(asset, params, targets, columns)
        stage._target_columns = np.array([columns.index(g.column) for g in targets])
        stage._columns = np.array(columns, dtype=np.intp)
        # Each fit is checked against the levels of the next horizon (the lead the alert is
        # about), over the last history's worth of levels.
        leads = max(1, math.ceil(params.horizon_s / params.bucket_s))
        stage._calibration = Calibration(leads, params.bucket_s, params.history_s, leads)
        stage._signs = np.array([g.sign for g in targets])
        stage._limits = np.array([g.limit * g.sign for g in targets])
        return stage

    def push(
        self, ts: float, values: npt.NDArray[np.floating[Any]], valid: bool
    ) -> list[AlertEvent]:
        """One grid sample; the `predicted` alert events it caused (usually none)."""
        p = self.params
        index = math.floor(ts / p.bucket_s)
        events: list[AlertEvent] = []
        b = self._bucket
        if b is not None and index != b.index:
            events = self._close(b)
            b = self._bucket = None
        if not valid:
            return events
        if b is None:
            # Room for twice the bucket's samples: a clock that stepped back fills more.
            cap = 2 * math.ceil(p.bucket_s / p.sample_period_s) + 2
            b = self._bucket = _Bucket(index, np.empty((cap, len(self.columns))))
        if b.count < len(b.samples):
            b.samples[b.count] = values[self._columns]
            b.count += 1
        return events

    def _close(self, b: _Bucket) -> list[AlertEvent]:
        p = self.params
        expected = p.bucket_s / p.sample_period_s
        # A level from a mostly invalid minute is a few samples' noise, not a level.
        if b.count < 0.5 * expected:
            return []
        samples = b.samples[: b.count]
        if not np.all(np.isfinite(samples)):
            return []  # a NaN that came marked valid spoils its bucket, not the history
        # One column per target: the target's signal, negated for a low limit (whose envelope
        # is then the lower one, mirrored).
        level = envelope(samples[:, self._target_columns] * self._signs)
        t_end = (b.index + 1) * p.bucket_s
        t_level = t_end - p.bucket_s / 2
        cal = self._calibration
        assert cal is not None
        cal.observe(t_level, level)
        self._times.append(t_level)
        self._levels.append(level)
        while self._times and self._times[0] < t_end - p.history_s:
            self._times.popleft()
            self._levels.popleft()
        if t_end - self._times[0] + p.bucket_s / 2 < p.min_history_s:
            return []
        t = np.fromiter(self._times, dtype=np.float64)
        y = np.stack(list(self._levels))
        events: list[AlertEvent] = []
        self.fitted_at = t_end
        fits = crossings(
            t, y, self._limits, p.lookahead * p.horizon_s, p.bucket_s, cal.widening(len(y[0]))
        )
        if fits is None:
            return []
        cal.add_fit(
            t_level,
            np.stack([f.path[: cal.leads] for f in fits]),
            np.stack([f.path_sd[: cal.leads] for f in fits]),
        )
        # Levels stand at their buckets' middles; events at the bucket's end: count from there.
        half = p.bucket_s / 2
        for target, fit in zip(self.targets, fits, strict=True):
            c = dataclasses.replace(
                fit,
                eta=max(0.0, fit.eta - half),
                near=max(0.0, fit.near - half),
                far=max(0.0, fit.far - half),
                eta_linear=max(0.0, fit.eta_linear - half),
                level=fit.level + fit.rate * half,
            )
            target.last = c
            event = self._judge(target, c, t_end)
            if event is not None:
                events.append(event)
        return events

    def _judge(self, g: _Target, c: Crossing, ts: float) -> AlertEvent | None:
        p = self.params
        near = c.near
        if g.alert_id is None:
            # The straight line over the whole history must head for the limit within the
            # look-ahead too: a quadratic on a wandering process's last rise is not a trend.
            heading = near <= p.horizon_s and math.isfinite(c.eta_linear)
            g.raise_streak = g.raise_streak + 1 if heading else 0
            if g.raise_streak < p.persist:
                return None
            g.raise_streak = g.clear_streak = 0
            g.alert_id = str(uuid.uuid5(_NS, f"{self.asset}/{g.signal}/{g.limit_kind}/{ts:.3f}"))
            return self._event(g, c, ts, AlertEventKind.RAISED)
        g.clear_streak = g.clear_streak + 1 if near > p.clear_factor * p.horizon_s else 0
        if g.clear_streak >= p.persist:
            event = self._event(g, c, ts, AlertEventKind.CLEARED)
            g.alert_id = None
            g.clear_streak = 0
            return event
        severity = _severity(c, p)
        moved = abs(c.eta - g.published_eta) > 0.2 * max(g.published_eta, p.bucket_s) or (
            math.isinf(c.eta) != math.isinf(g.published_eta)
        )
        due = ts - g.published_ts >= p.update_interval_s
        if severity != g.severity or (moved and due):
            return self._event(g, c, ts, AlertEventKind.UPDATED)
        return None

    def _event(self, g: _Target, c: Crossing, ts: float, kind: AlertEventKind) -> AlertEvent:
        p = self.params
        assert g.alert_id is not None
        severity = "info" if kind is AlertEventKind.CLEARED else _severity(c, p)
        level = c.level * g.sign
        forecast = Forecast(
            signal=g.signal,
            unit=g.spec.unit,
            limit=g.limit,
            limit_kind=g.limit_kind,
            direction="high" if g.sign > 0 else "low",
            label=g.spec.label,
            level=round(level, 6),
            rate_per_h=round(c.rate * 3600.0 * g.sign, 6),
            time_to_limit_s=_finite(c.eta),
            interval_s=(_finite(c.near), _finite(c.far)),
            horizon_s=p.horizon_s,
        )
        # Payloads are strict JSON: no NaN where the bundle had no range for the signal.
        lo, hi = (v if math.isfinite(v) else level for v in g.normal)
        if kind is not AlertEventKind.CLEARED:
            g.published_ts, g.published_eta, g.severity = ts, c.eta, severity
        return AlertEvent(
            alert_id=g.alert_id,
            event=kind,
            asset=self.asset,
            ts=ts,
            # How far inside the horizon the near end is: 1 at the horizon, more when sooner.
            score=round(p.horizon_s / max(c.near, p.bucket_s), 6),
            threshold=1.0,
            severity="warning" if severity == "info" else severity,
            kind=KIND,
            message=describe(self.asset, forecast, kind),
            contributions=(Contribution(g.signal, 1.0, level, lo, hi),),
            model_version=MODEL,
            forecast=forecast,
        )


def _severity(c: Crossing, p: ForecastParams) -> str:
    return "critical" if c.near <= p.horizon_s / 4 else "warning"


def _finite(x: float) -> float | None:
    return round(x, 1) if math.isfinite(x) else None


def _duration(s: float | None) -> str:
    if s is None:
        return "beyond the look-ahead"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def describe(asset: str, f: Forecast, kind: AlertEventKind) -> str:
    """ "vibration_de reaches 4.5 mm/s (ISO 10816-3 zone C/D alarm) in about 38 min (80 %
    interval 25 min–1.0 h)"."""
    what = f"{f.limit:g} {f.unit}"
    why = f" ({f.label + ' ' if f.label else ''}{f.limit_kind})"
    verb = "reaches" if f.direction == "high" else "falls to"
    if kind is AlertEventKind.CLEARED:
        return (
            f"{asset}: {f.signal} no longer heading for {what}{why} within "
            f"{_duration(f.horizon_s)} (level {f.level:.3g} {f.unit})"
        )
    near, far = f.interval_s
    return (
        f"{asset}: {f.signal} {verb} {what}{why} in about {_duration(f.time_to_limit_s)} "
        f"(80 % interval {_duration(near)}–{_duration(far)}; now {f.level:.3g} {f.unit}, "
        f"{f.rate_per_h:+.3g} {f.unit}/h)"
    )
