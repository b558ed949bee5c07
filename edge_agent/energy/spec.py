"""Which of a device's points play which part in the energy balance, declared in its profile
(`energy:` in firmware_configs/*.yaml), and the asset's energy settings in the agent config.

The profile names points, never values of its own unit system: each role has a set of units it
accepts, with the factor to the unit the meter computes in (kW, m³/s). A point in any other unit is
a profile error naming the role, the point and its unit (the agent exits 2 on it); a role left out
turns energy off for the asset, which the agent says once at start."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# Accepted units per role and their factor to the meter's units: A, V, kW, m³/s, power factor 1.
CURRENT_UNITS = {"A": 1.0, "mA": 1e-3, "kA": 1e3}
VOLTAGE_UNITS = {"V": 1.0, "kV": 1e3}
POWER_UNITS = {"W": 1e-3, "kW": 1.0, "MW": 1e3}
FACTOR_UNITS = {"": 1.0, "1": 1.0, "pu": 1.0, "%": 0.01}
FLOW_UNITS = {
    "m3/s": 1.0,
    "m3/min": 1 / 60,
    "m3/h": 1 / 3600,
    "l/s": 1e-3,
    "l/min": 1e-3 / 60,
}
# Operating-point signals are only standardized by the efficiency model: any unit will do.
ROLE_UNITS: dict[str, dict[str, float]] = {
    "current": CURRENT_UNITS,
    "voltage": VOLTAGE_UNITS,
    "power_factor": FACTOR_UNITS,
    "active_power": POWER_UNITS,
    "product": FLOW_UNITS,
}


class Constant(BaseModel):
    """A nameplate value standing in for a point the device does not have (e.g. the supply
    voltage of a controller that reads only current)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    value: float = Field(gt=0)
    unit: str


class EnergySpec(BaseModel):
    """`energy:` of a device profile. Active power is `active_power` when the device measures it,
    else `current` × `voltage` × `power_factor` (× √3 for `phases: 3`, line-to-line voltage)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    phases: Literal[1, 3] = 3
    active_power: str | None = None
    current: str | None = None
    voltage: str | Constant | None = None
    # A point, or the motor's nameplate cos φ (a constant is only as good as the load is steady).
    power_factor: str | Annotated[float, Field(gt=0, le=1)] | None = None
    product: str | None = None  # flow of the product: specific energy is kWh per m³ of it
    product_name: str = "m3"  # what a unit of product is called in messages
    # Signals that set the operating point the efficiency model conditions on (flow, head, ...).
    operating_point: list[str] = Field(default_factory=list, max_length=4)

    def points(self) -> dict[str, str]:
        """role → point name, for the roles that name a point."""
        out = {}
        for role in ("active_power", "current", "voltage", "power_factor", "product"):
            v = getattr(self, role)
            if isinstance(v, str):
                out[role] = v
        for i, name in enumerate(self.operating_point):
            out[f"operating_point[{i}]"] = name
        return out

    def missing(self) -> str | None:
        """Why active power cannot be computed from what is declared (None: it can)."""
        if self.active_power is not None:
            return None
        lacking = [r for r in ("current", "voltage", "power_factor") if getattr(self, r) is None]
        return f"no {', '.join(lacking)} declared" if lacking else None

    def check(self, point_names: list[str], unit_of: dict[str, str]) -> list[str]:
        """Errors of this spec against the profile's points and their units."""
        errors = []
        for role, name in self.points().items():
            if name not in point_names:
                errors.append(f"energy.{role}: {name!r} is not a point of this profile")
                continue
            accepted = ROLE_UNITS.get(role)
            if accepted is not None and unit_of[name] not in accepted:
                errors.append(
                    f"energy.{role}: point {name!r} has unit {unit_of[name]!r}; "
                    f"{role} takes one of {', '.join(repr(u) for u in accepted)}"
                )
        if isinstance(self.voltage, Constant) and self.voltage.unit not in VOLTAGE_UNITS:
            errors.append(
                f"energy.voltage: unit {self.voltage.unit!r}; voltage takes one of "
                f"{', '.join(repr(u) for u in VOLTAGE_UNITS)}"
            )
        return errors


class AssetEnergyConfig(BaseModel):
    """`energy:` of an asset in the agent config."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    # Reporting interval, aligned to multiples of it in UTC (900 s: the quarter hours of metering).
    interval_s: float = Field(900.0, ge=1.0, le=86_400.0)
    # The source whose profile's `energy:` applies (default: the first of the asset's sources
    # whose profile has one).
    source: str | None = None
    efficiency: bool = True  # judge specific energy when the bundle has an efficiency model
