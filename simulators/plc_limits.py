"""Fixed limit alarms the pump skid's PLC already has: what the gateway's model must beat.

Vibration: 4.5 mm/s RMS is the zone C/D boundary of ISO 10816-3 for group 2 machines (15-300 kW,
like this pump) on rigid foundations (zone B/C for group 1 or on flexible foundations), the usual
"alarm" setting, as the pump profile's limits say; the others are typical nameplate-derived trips.
"""

from __future__ import annotations

# signal → (low limit, high limit); None where the PLC has no limit on that side.
PUMP_LIMITS: dict[str, tuple[float | None, float | None]] = {
    "vibration_de": (None, 4.5),
    "vibration_nde": (None, 4.5),
    "motor_temperature": (None, 80.0),
    "motor_current": (None, 48.0),
    "discharge_pressure": (3.0, None),
    "flow_rate": (50.0, None),
}
