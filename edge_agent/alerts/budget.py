"""The false-alarm budget of one asset (issue 19): the rate of raised alerts per hour of valid
data, against the rate the bundle's own calibration expects on normal data.

The gateway cannot tell a false alert from a true one; what it can tell is that alerts come far
more often than the asset's normal data said they would. That means faults, or a bundle that no
longer fits the asset (retrained on another operating point, a changed machine): worth one
event for a person to look at, not a page per window. So the event comes once per model load,
and only when the observed rate exceeds `factor` times the budget *and* at least `min_alerts`
alerts were raised (one alert in the first minutes is no rate). Pure: data time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

# "Several-fold": a rate this many times the budget says the model no longer fits.
FACTOR = 5.0
MIN_ALERTS = 3


@dataclass(slots=True)
class FalseAlarmBudget:
    expected_per_hour: float  # from the bundle's calibration (manifest alerting)
    factor: float = FACTOR
    min_alerts: int = MIN_ALERTS
    raised: int = 0
    valid_hours: float = 0.0
    reported: bool = False

    @property
    def observed_per_hour(self) -> float:
        return self.raised / self.valid_hours if self.valid_hours > 0 else 0.0

    def observe(self, valid_samples: int, period_s: float, raised: int) -> str | None:
        """Count `valid_samples` grid samples and `raised` alerts; the event's message the first
        time the rate exceeds the budget several-fold, else None."""
        self.valid_hours += valid_samples * period_s / 3600.0
        self.raised += raised
        if self.reported or self.raised < self.min_alerts:
            return None
        rate = self.observed_per_hour
        if rate <= self.factor * self.expected_per_hour:
            return None
        self.reported = True
        return (
            f"{self.raised} alerts in {self.valid_hours:.2f} h of valid data: {rate:.3g} per "
            f"hour, over {self.factor:g}x the {self.expected_per_hour:.3g} per hour the bundle's "
            f"calibration expects on normal data; faults, or the model no longer fits the asset "
            f"(retrain on its current normal operation)"
        )
