"""What every device profile has, whatever its protocol: vendor, model, firmware, its point names
and their units. Each protocol package defines its profile on `ProfileBase`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from edge_agent.energy.spec import EnergySpec
from edge_agent.limits import LimitSpec, check_limits

POINT_NAME = r"^[A-Za-z_][A-Za-z0-9_.]*$"


class ProfileBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Each protocol's profile narrows this to its own tag (the registry dispatches on it).
    protocol: str
    profile_version: Literal[1] = 1
    vendor: str
    model: str
    firmware: str
    description: str = ""
    # Alarm/trip limits per point name, in the point's unit (issue 14: time-to-limit forecasts).
    limits: dict[str, LimitSpec] = {}
    # Which points give the asset's power and product (edge_agent/energy/spec.py).
    energy: EnergySpec | None = None

    @model_validator(mode="after")
    def _limits_on_points(self) -> ProfileBase:
        if self.limits:
            units = {n: self.unit_of(n) for n in self.point_names()}
            problems = check_limits(self.limits, units)
            if problems:
                raise ValueError("; ".join(f"limits.{n}: {why}" for n, why in problems))
        return self

    @model_validator(mode="after")
    def _energy_points(self) -> ProfileBase:
        if self.energy is not None:
            names = self.point_names()
            errors = self.energy.check(names, {n: self.unit_of(n) for n in names})
            if errors:
                raise ValueError("; ".join(errors))
        return self

    def point_names(self) -> list[str]:
        raise NotImplementedError

    def check_signal(self, name: str) -> None:
        """Raise KeyError when `name` is not a point of this profile, ValueError when it is but
        cannot be a numeric signal."""
        if name not in self.point_names():
            raise KeyError(name)

    def unit_of(self, name: str) -> str:
        raise NotImplementedError
