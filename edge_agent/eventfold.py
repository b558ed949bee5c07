"""Rate limiting of system events, as logs are rate-limited: the first `burst` events of a kind
about a subject in a period go out at once (one episode, raised then cleared, is never delayed);
further repeats within `period` seconds are held, and at the end of the period the latest of them
goes out once, standing for all, with `details.folded` (how many events it stands for) and the
count in its message. While the storm goes on, every further period sends one such event. A
condition that flaps (data good, bad, good, ...) thus costs one event per period instead of one
per flap, and the last event always tells the state it ended in. Pure: the clock is passed in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from edge_agent.alerts.messages import EventType


@dataclass(frozen=True, slots=True)
class PendingEvent:
    type: EventType
    message: str
    severity: str
    subject: str | None
    details: dict[str, Any] | None = None


@dataclass(slots=True)
class _Period:
    ends: float
    sent: int = 0
    latest: PendingEvent | None = None
    count: int = 0


class EventFolder:
    def __init__(self, period: float, clock: Callable[[], float], burst: int = 2) -> None:
        self.period = period
        self.burst = burst
        self._clock = clock
        self._periods: dict[tuple[EventType, str | None], _Period] = {}
        self.folded = 0  # events held back and folded into another, in total

    def offer(self, event: PendingEvent) -> list[PendingEvent]:
        """What to publish now for `event`: itself, or nothing (held until the period ends)."""
        if self.period <= 0:
            return [event]
        now = self._clock()
        key = (event.type, event.subject)
        out: list[PendingEvent] = []
        current = self._periods.get(key)
        if current is not None and now >= current.ends:
            out.extend(self._close(key, current, now))
            current = self._periods.get(key)
        if current is None:
            current = self._periods[key] = _Period(now + self.period)
        if current.sent < self.burst:
            current.sent += 1
            out.append(event)
            return out
        current.latest = event
        current.count += 1
        self.folded += 1
        return out

    def due(self) -> list[PendingEvent]:
        """Folded events whose period has ended (call regularly)."""
        now = self._clock()
        out: list[PendingEvent] = []
        for key, period in list(self._periods.items()):
            if now >= period.ends:
                out.extend(self._close(key, period, now))
        return out

    def drain(self) -> list[PendingEvent]:
        """Every held event now, whether its period has ended or not (on stop)."""
        now = self._clock()
        out: list[PendingEvent] = []
        for key, period in list(self._periods.items()):
            out.extend(self._close(key, period, now))
        self._periods.clear()
        return out

    def _close(
        self, key: tuple[EventType, str | None], period: _Period, now: float
    ) -> list[PendingEvent]:
        if period.latest is None:
            del self._periods[key]
            return []
        # Something happened in the period: report it and start a new period with no burst
        # left, so a storm that goes on costs one event per period.
        self._periods[key] = _Period(now + self.period, sent=self.burst)
        n = period.count
        ev = period.latest
        details = dict(ev.details or {})
        details["folded"] = n
        details["folded_period_s"] = self.period
        message = f"{ev.message} ({n} event(s) of this kind in {self.period:g} s folded into this)"
        # The latest event's severity: it tells the state the condition ended the period in.
        return [replace(ev, message=message, details=details)]
