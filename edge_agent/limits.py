"""Alarm and trip limits of a signal, with the unit they are in (issue 14).

Device profiles declare them per point (`limits:` in `firmware_configs/*.yaml`, e.g. the ISO
10816-3 zone boundaries of a vibration point); an asset may override them per signal in the agent
config. A limit's unit must be the point's unit: a forecast in mm/s against a limit in in/s would
be wrong by a factor no one sees, so a mismatch is a config error, not a conversion."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LimitSpec(BaseModel):
    """Limits of one signal. At least one of the four; an alarm comes before its trip."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str = Field(min_length=1, max_length=32)
    alarm_high: float | None = None
    trip_high: float | None = None
    alarm_low: float | None = None
    trip_low: float | None = None
    # What the limit stands for, for the alert message ("ISO 10816-3 zone C/D").
    label: str = Field("", max_length=120)

    @model_validator(mode="after")
    def _ordered(self) -> LimitSpec:
        values = (self.alarm_high, self.trip_high, self.alarm_low, self.trip_low)
        if all(v is None for v in values):
            raise ValueError(
                "a limit needs at least one of alarm_high, trip_high, alarm_low, trip_low"
            )
        if any(v is not None and v != v for v in values):  # NaN
            raise ValueError("limits must be numbers, not NaN")
        hi, hi_trip = self.alarm_high, self.trip_high
        if hi is not None and hi_trip is not None and hi_trip < hi:
            raise ValueError("trip_high must be >= alarm_high")
        lo, lo_trip = self.alarm_low, self.trip_low
        if lo is not None and lo_trip is not None and lo_trip > lo:
            raise ValueError("trip_low must be <= alarm_low")
        highs = [v for v in (self.alarm_high, self.trip_high) if v is not None]
        lows = [v for v in (self.alarm_low, self.trip_low) if v is not None]
        if highs and lows and min(highs) <= max(lows):
            raise ValueError("high limits must be above low limits")
        return self

    @property
    def high(self) -> tuple[float, str] | None:
        """The first high limit a rising signal meets, and its name (alarm before trip)."""
        if self.alarm_high is not None:
            return self.alarm_high, "alarm"
        if self.trip_high is not None:
            return self.trip_high, "trip"
        return None

    @property
    def low(self) -> tuple[float, str] | None:
        if self.alarm_low is not None:
            return self.alarm_low, "alarm"
        if self.trip_low is not None:
            return self.trip_low, "trip"
        return None


def check_limits(
    limits: Mapping[str, LimitSpec], units: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(name, problem) for each limit on a name not in `units` (name → unit) or in another
    unit than that name's."""
    problems: list[tuple[str, str]] = []
    for name, spec in limits.items():
        if name not in units:
            problems.append((name, f"no signal {name!r} to put a limit on"))
        elif spec.unit != units[name]:
            have = units[name] or "no unit"
            problems.append((name, f"limit in {spec.unit!r} but signal {name!r} is in {have!r}"))
    return problems
