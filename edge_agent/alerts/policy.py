"""Turn a stream of window scores into alert lifecycle events.

- raise: at least `k` of the last `n` scores are above the raise threshold (persistence, so one
  noisy window does not page anyone), and no alert is active, and the cooldown since the last clear
  has passed;
- clear: the last `n` scores are all below the clear threshold (hysteresis: clear < raise, so an
  alert does not flap around one threshold);
- update (optional, `update_interval_s`): while active, an `updated` event when the severity
  differs from the last one sent, at most once per `update_interval_s` of data time, so a score
  hovering around the critical ratio does not page on every window.

The alert_id is derived from the asset and the raise time, so replaying the same data yields the
same ids as the live agent did.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_agent.types import AlertEvent, AlertEventKind, Contribution, Score

_ALERT_NS = uuid.UUID("6f1d6c1e-2b8a-4d0b-9c57-0e7e4a1f3b21")


@dataclass(frozen=True, slots=True)
class PolicyParams:
    raise_threshold: float
    clear_threshold: float
    k: int = 3
    n: int = 5
    cooldown_s: float = 0.0
    critical_ratio: float = 3.0
    top_signals: int = 3
    update_interval_s: float | None = None  # None: no `updated` events

    def __post_init__(self) -> None:
        if not 0 < self.clear_threshold <= self.raise_threshold:
            raise ValueError("need 0 < clear_threshold <= raise_threshold")
        if not 1 <= self.k <= self.n:
            raise ValueError("need 1 <= k <= n")


@dataclass(frozen=True, slots=True)
class SignalInfo:
    names: Sequence[str]
    units: Sequence[str]
    normal_low: Sequence[float]
    normal_high: Sequence[float]


class AlertPolicy:
    def __init__(
        self, asset: str, params: PolicyParams, signals: SignalInfo, model_version: str
    ) -> None:
        self.asset = asset
        self.params = params
        self.signals = signals
        self.model_version = model_version
        self._recent: deque[float] = deque(maxlen=params.n)
        self._active: str | None = None
        self._active_since = 0.0
        self._cleared_at = -np.inf
        self._last_sent_at = 0.0
        self._last_severity = ""
        self._resumed = False  # the active alert was held open across an agent restart

    @property
    def active_alert(self) -> str | None:
        return self._active

    def resume(self, alert_id: str, since: float, severity: str) -> None:
        """Continue an alert that consumers still hold open from before a restart: while its
        condition persists it is not raised again (no second id for one fault), and it clears by
        the usual rule (the last n scores below the clear threshold) once the condition is gone."""
        self._active = alert_id
        self._active_since = since
        self._last_severity = severity
        self._resumed = True

    def update(self, s: Score) -> AlertEvent | None:
        p = self.params
        self._recent.append(s.score)
        if self._active is None:
            above = sum(1 for v in self._recent if v > p.raise_threshold)
            if above >= p.k and s.ts - self._cleared_at >= p.cooldown_s:
                self._active = str(uuid.uuid5(_ALERT_NS, f"{self.asset}/{s.ts:.6f}"))
                self._active_since = s.ts
                return self._sent(self._event(AlertEventKind.RAISED, s))
            return None
        if len(self._recent) == p.n and all(v < p.clear_threshold for v in self._recent):
            event = self._event(AlertEventKind.CLEARED, s)
            self._active = None
            self._resumed = False
            self._cleared_at = s.ts
            return event
        if (
            p.update_interval_s is not None
            and self._severity(s) != self._last_severity
            and s.ts - self._last_sent_at >= p.update_interval_s
        ):
            return self._sent(self._event(AlertEventKind.UPDATED, s))
        return None

    def _sent(self, event: AlertEvent) -> AlertEvent:
        self._last_sent_at = event.ts
        self._last_severity = event.severity
        return event

    def _severity(self, s: Score) -> str:
        ratio = s.score / self.params.raise_threshold
        return "critical" if ratio >= self.params.critical_ratio else "warning"

    def _contributions(self, s: Score) -> tuple[Contribution, ...]:
        errors = np.asarray(s.signal_errors, dtype=np.float64)
        total = float(errors.sum()) or 1.0
        order = np.argsort(-errors)[: self.params.top_signals]
        info = self.signals
        return tuple(
            Contribution(
                signal=info.names[i],
                share=round(float(errors[i]) / total, 4),
                value=float(s.last[i]),
                normal_low=float(info.normal_low[i]),
                normal_high=float(info.normal_high[i]),
            )
            for i in order
        )

    def _event(self, kind: AlertEventKind, s: Score) -> AlertEvent:
        assert self._active is not None
        p = self.params
        ratio = s.score / p.raise_threshold
        severity = self._severity(s)
        contributions = self._contributions(s)
        units = dict(zip(self.signals.names, self.signals.units, strict=True))
        parts = [
            f"{c.signal} {c.value:.4g}{(' ' + units[c.signal]) if units[c.signal] else ''} "
            f"(normal {c.normal_low:.4g}–{c.normal_high:.4g})"
            for c in contributions
        ]
        if kind is not AlertEventKind.CLEARED:
            message = (
                f"{self.asset}: anomaly {kind.value} ({severity}), score {s.score:.3g} is "
                f"{ratio:.1f}x the threshold {p.raise_threshold:.3g}; "
                f"top signals: {'; '.join(parts)}"
            )
        else:
            message = (
                f"{self.asset}: anomaly cleared after {s.ts - self._active_since:.0f} s, "
                f"score {s.score:.3g} back below {p.clear_threshold:.3g}"
                + (" (the alert was held open across an agent restart)" if self._resumed else "")
            )
        return AlertEvent(
            alert_id=self._active,
            event=kind,
            asset=self.asset,
            ts=s.ts,
            score=float(s.score),
            threshold=p.raise_threshold,
            severity=severity,
            kind="anomaly",
            message=message,
            contributions=contributions,
            model_version=self.model_version,
        )


def orphan_cleared(
    asset: str,
    alert_id: str,
    severity: str,
    threshold: float,
    model_version: str,
    ts: float,
    reason: str,
) -> AlertEvent:
    """A `cleared` event for an alert left open by an earlier run whose asset no longer has a
    pipeline to clear it (removed from the config): consumers must not hold it forever."""
    return AlertEvent(
        alert_id=alert_id,
        event=AlertEventKind.CLEARED,
        asset=asset,
        ts=ts,
        score=0.0,
        threshold=threshold,
        severity=severity,
        kind="anomaly",
        message=f"{asset}: anomaly cleared: {reason}",
        contributions=(),
        model_version=model_version,
    )
