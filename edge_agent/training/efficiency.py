"""Training stage: the efficiency model (edge_agent/energy/efficiency.py) from the normal data's
energy columns, when the data has them (a recording through a profile that declares `energy:`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from edge_agent.csvdata import Table
from edge_agent.energy.efficiency import EfficiencyError, EfficiencySpec, fit_efficiency
from edge_agent.energy.meter import EnergySignals, power_kw

log = logging.getLogger(__name__)


def fit_from_tables(
    tables: Sequence[Table], energy: EnergySignals, period: float, window_s: float = 300.0
) -> EfficiencySpec | None:
    """The efficiency model of the normal data in `tables`, or None (said why) when the data
    lacks the energy columns, the profile names no operating point, or there is too little."""
    if not energy.operating_point:
        log.info("no efficiency model: the profile's energy section names no operating_point")
        return None
    missing = sorted({p for t in tables for p in energy.points if p not in t.columns})
    if missing:
        log.info("no efficiency model: the data has no column %s", ", ".join(missing))
        return None
    rows = np.concatenate([t.select(list(energy.points)) for t in tables]).astype(np.float32)
    bad = np.concatenate([t.select_bad(list(energy.points)) for t in tables]).any(axis=1)
    power = np.array([power_kw(energy, r)[0] for r in rows], dtype=np.float64)
    power[bad] = np.nan
    ops = rows[:, list(energy.operating_point)].astype(np.float64)
    try:
        spec = fit_efficiency(power, ops, list(energy.operating_point_names), period, window_s)
    except EfficiencyError as exc:
        log.warning("no efficiency model: %s", exc)
        return None
    log.info(
        "efficiency model over %s: tolerance %.2f %% from %d blocks of %g s",
        ", ".join(spec.features), spec.tolerance * 100, spec.blocks, spec.window_s,
    )  # fmt: skip
    return spec
