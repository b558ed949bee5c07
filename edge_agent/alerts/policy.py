"""Turn a stream of window scores into alert lifecycle events, one alert per fault episode.

- raise: at least `k` of the last `n` scores are above the raise threshold (persistence, so one
  noisy window does not page anyone), or one score reaches the gross threshold (severity-aware:
  persistence is for marginal scores; a score far beyond anything the asset's normal data
  produced is not made to wait, issue 17); and no alert is active, and the cooldown since the
  last clear has passed;
- episode: the raise rule holding again while an alert is active is the same condition. The
  alert clears when the last `n` scores are all below the clear threshold (hysteresis: clear <
  raise) and the raise rule has not held for `quiet_period_s` of data time. If it holds again
  after the scores had calmed, the fault recurred inside its episode: an `updated` event with the
  count of recurrences so far, not a new alert (issue 19). The quiet period runs from the last
  window the raise rule held, so its first part overlaps the calm-down the hysteresis asks for
  anyway;
- condition (ISA-18.2's "return to normal" inside an open alarm): when the scores calm inside an
  episode whose quiet period has not run out, an `updated` event says the condition returned to
  normal (`condition_active` False) while the alert stays open; a recurrence says it is active
  again. So a subscriber is paged once per episode and still sees, within a sample or two, whether
  the machine is anomalous now; replay flags a sample while the condition is active;
- update (optional, `update_interval_s`): while active, an `updated` event when the severity
  differs from the last one sent, at most once per `update_interval_s` of data time, so a score
  hovering around the critical ratio does not page on every window.

`k` and `n` count windows at the bundle's hop; an asset scoring more often (`hop` below the
bundle's) passes them scaled (`PolicyParams.for_hop`), so persistence lasts the same number of
samples whatever the hop, and only gross scores gain from the shorter hop.

The alert_id is derived from the asset and the raise time, so replaying the same data yields the
same ids as the live agent did.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_agent.types import AlertEvent, AlertEventKind, Contribution, Score

_ALERT_NS = uuid.UUID("6f1d6c1e-2b8a-4d0b-9c57-0e7e4a1f3b21")
# A score this many times the raise threshold is `critical`; the gross cut is never below it.
CRITICAL_RATIO = 3.0


@dataclass(frozen=True, slots=True)
class PolicyParams:
    raise_threshold: float
    clear_threshold: float
    k: int = 3
    n: int = 5
    cooldown_s: float = 0.0
    critical_ratio: float = CRITICAL_RATIO
    top_signals: int = 3
    update_interval_s: float | None = None  # None: no `updated` events on severity changes
    # A score at or above this raises on its own window (None: persistence for every score).
    gross_threshold: float | None = None
    # Data time without the raise rule holding before an episode clears (0: at the first calm
    # window, as without episodes).
    quiet_period_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.clear_threshold <= self.raise_threshold:
            raise ValueError("need 0 < clear_threshold <= raise_threshold")
        if not 1 <= self.k <= self.n:
            raise ValueError("need 1 <= k <= n")
        if self.gross_threshold is not None and self.gross_threshold < self.raise_threshold:
            raise ValueError("need gross_threshold >= raise_threshold")
        if self.quiet_period_s < 0:
            raise ValueError("need quiet_period_s >= 0")

    def for_hop(self, bundle_hop: int, hop: int) -> PolicyParams:
        """These params (k and n in windows of `bundle_hop` samples) for windows every `hop`
        samples: the same persistence in samples, rounded up."""
        if hop >= bundle_hop or hop < 1:
            return self
        factor = bundle_hop / hop
        return dataclasses.replace(self, k=math.ceil(self.k * factor), n=math.ceil(self.n * factor))


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
        self._recent: deque[float] = deque(maxlen=params.n)
        self.params = params
        self.signals = signals
        self.model_version = model_version
        self._active: str | None = None
        self._active_since = 0.0
        self._cleared_at = -np.inf
        self._last_sent_at = 0.0
        self._last_severity = ""
        self._resumed = False  # the active alert was held open across an agent restart
        # Episode state: since when the scores have been calm (None: the condition holds), and
        # how often the condition came back within the open episode.
        self._calm_since: float | None = None
        self._last_hot = 0.0  # data time the raise rule last held
        self._recurrences = 0
        self._condition = False  # the raise rule's condition holds (alert raised and not calm)

    @property
    def params(self) -> PolicyParams:
        return self._params

    @params.setter
    def params(self, params: PolicyParams) -> None:
        """New thresholds (a reload): the recent scores are kept, as many as the new `n` holds."""
        self._params = params
        self._recent = deque(self._recent, maxlen=params.n)

    @property
    def active_alert(self) -> str | None:
        return self._active

    @property
    def condition_active(self) -> bool:
        """An alert is open and its condition has not returned to normal (a sample flagged)."""
        return self._active is not None and self._condition

    @property
    def recurrences(self) -> int:
        """Times the condition came back inside the open episode (0 without an alert)."""
        return self._recurrences

    def resume(self, alert_id: str, since: float, severity: str) -> None:
        """Continue an alert that consumers still hold open from before a restart: while its
        condition persists it is not raised again (no second id for one fault), and it clears by
        the usual rule (the last n scores below the clear threshold, and the quiet period since
        the raise rule last held, counted from the restart) once the condition is gone."""
        self._active = alert_id
        self._active_since = since
        self._last_severity = severity
        self._resumed = True
        self._calm_since = None
        self._last_hot = -np.inf  # set by the first window after the restart
        self._recurrences = 0
        self._condition = True

    def _raise_rule(self, score: float) -> bool:
        p = self._params
        if p.gross_threshold is not None and score >= p.gross_threshold:
            return True
        return sum(1 for v in self._recent if v > p.raise_threshold) >= p.k

    def update(self, s: Score) -> AlertEvent | None:
        p = self._params
        self._recent.append(s.score)
        hot = self._raise_rule(s.score)
        if self._active is None:
            if hot and s.ts - self._cleared_at >= p.cooldown_s:
                self._active = str(uuid.uuid5(_ALERT_NS, f"{self.asset}/{s.ts:.6f}"))
                self._active_since = self._last_hot = s.ts
                self._calm_since = None
                self._recurrences = 0
                self._condition = True
                return self._sent(self._event(AlertEventKind.RAISED, s))
            return None
        if self._last_hot == -np.inf:
            self._last_hot = s.ts  # resumed: the quiet period runs from the first window seen
        if hot:
            self._last_hot = s.ts
            if self._calm_since is not None:
                # Back within the quiet period: the same episode, one more recurrence.
                self._calm_since = None
                self._recurrences += 1
                self._condition = True
                return self._sent(self._event(AlertEventKind.UPDATED, s))
        elif len(self._recent) == p.n and all(v < p.clear_threshold for v in self._recent):
            first_calm = self._calm_since is None
            if first_calm:
                self._calm_since = s.ts
            if s.ts - self._last_hot >= p.quiet_period_s:
                self._condition = False
                event = self._event(AlertEventKind.CLEARED, s)
                self._active = None
                self._resumed = False
                self._cleared_at = s.ts
                self._calm_since = None
                self._recurrences = 0
                return event
            if first_calm:
                # Calm, the episode still open: the condition returned to normal.
                self._condition = False
                return self._sent(self._event(AlertEventKind.UPDATED, s))
        if (
            p.update_interval_s is not None
            and self._severity(s) != self._last_severity
            and s.ts - self._last_sent_at >= p.update_interval_s
        ):
            return self._sent(self._event(AlertEventKind.UPDATED, s))
        return None

    def updated(self, s: Score) -> AlertEvent:
        """An `updated` event of the open alert at this score, for news the policy does not
        judge itself (the fault class, once a window names it)."""
        assert self._active is not None
        return self._sent(self._event(AlertEventKind.UPDATED, s))

    def _sent(self, event: AlertEvent) -> AlertEvent:
        self._last_sent_at = event.ts
        self._last_severity = event.severity
        return event

    def _severity(self, s: Score) -> str:
        ratio = s.score / self._params.raise_threshold
        return "critical" if ratio >= self._params.critical_ratio else "warning"

    def _contributions(self, s: Score) -> tuple[Contribution, ...]:
        errors = np.asarray(s.signal_errors, dtype=np.float64)
        total = float(errors.sum()) or 1.0
        order = np.argsort(-errors)[: self._params.top_signals]
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
        p = self._params
        ratio = s.score / p.raise_threshold
        severity = self._severity(s)
        contributions = self._contributions(s)
        units = dict(zip(self.signals.names, self.signals.units, strict=True))
        parts = [
            f"{c.signal} {c.value:.4g}{(' ' + units[c.signal]) if units[c.signal] else ''} "
            f"(normal {c.normal_low:.4g}–{c.normal_high:.4g})"
            for c in contributions
        ]
        again = f" (recurred {self._recurrences}x in this episode)" if self._recurrences else ""
        if kind is AlertEventKind.UPDATED and not self._condition:
            message = (
                f"{self.asset}: anomaly returned to normal{again}, score {s.score:.3g} below "
                f"{p.clear_threshold:.3g}; the alert stays open until "
                f"{p.quiet_period_s:.0f} s pass without the condition"
            )
        elif kind is not AlertEventKind.CLEARED:
            message = (
                f"{self.asset}: anomaly {kind.value}{again} ({severity}), score {s.score:.3g} is "
                f"{ratio:.1f}x the threshold {p.raise_threshold:.3g}; "
                f"top signals: {'; '.join(parts)}"
            )
        else:
            message = (
                f"{self.asset}: anomaly cleared after {s.ts - self._active_since:.0f} s{again}, "
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
            recurrences=self._recurrences,
            condition_active=self._condition,
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
        condition_active=False,
    )
