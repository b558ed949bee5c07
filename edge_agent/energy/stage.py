"""One asset's energy path, run by its pipeline beside the model's: its own assembler over the
energy points (so the model's signal set is untouched and a power-factor point need not be a
model input), the meter, and the efficiency judge when the bundle has a model for it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from edge_agent.config import AssetConfig
from edge_agent.energy.efficiency import EfficiencyJudge, EfficiencySpec
from edge_agent.energy.meter import EnergyMeter, EnergySignals, resolve
from edge_agent.energy.spec import AssetEnergyConfig
from edge_agent.sources.profile_base import ProfileBase
from edge_agent.stream.assembler import Assembler
from edge_agent.types import AlertEvent, Batch, EnergyReport

log = logging.getLogger(__name__)


def energy_signals(asset: AssetConfig, profiles: Mapping[str, ProfileBase]) -> EnergySignals | str:
    """The asset's energy signals, or why energy is off for it (said once at start, not an
    error: many assets have no electrical signals). `profiles` by source name."""
    cfg = asset.energy or AssetEnergyConfig()
    if not cfg.enabled:
        return "disabled in the config (energy.enabled: false)"
    sources = [cfg.source] if cfg.source else list(dict.fromkeys(s.source for s in asset.signals))
    for src in sources:
        profile = profiles.get(src)
        if profile is None or profile.energy is None:
            continue
        why = profile.energy.missing()
        if why is not None:
            return f"profile of source {src!r} declares energy but {why}"
        names = profile.point_names()
        return resolve(src, profile.energy, {n: profile.unit_of(n) for n in names})
    return f"no electrical signals: no profile of source(s) {', '.join(sources)} has `energy:`"


def energy_points(
    assets: list[AssetConfig], profiles: Mapping[str, ProfileBase]
) -> dict[str, list[str]]:
    """Points each source must read for the assets' energy (beyond their model signals)."""
    out: dict[str, list[str]] = {}
    for asset in assets:
        sig = energy_signals(asset, profiles)
        if isinstance(sig, EnergySignals):
            out.setdefault(sig.source, []).extend(sig.points)
    return out


@dataclass(frozen=True, slots=True)
class EnergyStep:
    reports: tuple[EnergyReport, ...] = ()
    alerts: tuple[AlertEvent, ...] = ()


class EnergyStage:
    def __init__(
        self,
        asset: AssetConfig,
        signals: EnergySignals,
        efficiency: EfficiencySpec | None,
        model_version: str,
        stuck_after: Mapping[tuple[str, str], int | None] | None = None,
    ) -> None:
        """`stuck_after`: the bundle's stuck limits by (source, point), for the energy points
        that are model signals too: a frozen current reading is unmeasured time, not energy."""
        cfg = asset.energy or AssetEnergyConfig()
        self.signals = signals
        limits = stuck_after or {}
        self.assembler = Assembler(
            {(signals.source, p): i for i, p in enumerate(signals.points)},
            period=asset.sample_period_s,
            max_age=asset.effective_max_age_s,
            stuck_after=[limits.get((signals.source, p)) for p in signals.points],
        )
        self._said_rejected = False
        self.asset = asset.name
        self.period = asset.sample_period_s
        self.use_efficiency = cfg.efficiency
        self.meter = EnergyMeter(asset.name, signals, asset.sample_period_s, cfg.interval_s)
        self.judge: EfficiencyJudge | None = None
        self.use_model(efficiency, model_version)

    def use_model(self, efficiency: EfficiencySpec | None, model_version: str) -> None:
        """Judge efficiency with this bundle's model (none: no judgement); at start and when a
        reload brings a new bundle (the interval in progress and the assembler go on)."""
        judge = None
        if efficiency is not None and self.use_efficiency:
            if tuple(efficiency.features) == self.signals.operating_point_names:
                judge = EfficiencyJudge(self.asset, efficiency, self.period, model_version)
            else:
                log.warning(
                    "asset %s: no efficiency alerts: the bundle's efficiency model is over %s, "
                    "the profile's energy.operating_point is %s",
                    self.asset, efficiency.features, list(self.signals.operating_point_names),
                )  # fmt: skip
        if self.judge is not None and judge is not None and self.judge.active is not None:
            judge.active = self.judge.active  # an open efficiency alert stays the same alert
        self.judge = judge
        self.meter.expected_kw = judge.spec.predictor() if judge is not None else None

    @property
    def sources(self) -> set[str]:
        return self.assembler.sources

    def push(self, batch: Batch) -> EnergyStep:
        reports: list[EnergyReport] = []
        alerts: list[AlertEvent] = []
        for sample in self.assembler.push(batch):
            closed, power, expected = self.meter.push(sample)
            reports.extend(closed)
            if self.meter.rejected == 1 and not self._said_rejected:
                self._said_rejected = True
                log.warning(
                    "asset %s: energy: a valid sample gave no power (power factor outside "
                    "(0, 1] or a negative value); such samples count as unmeasured time",
                    self.asset,
                )
            if self.judge is not None and power is not None and expected is not None:
                event = self.judge.push(sample.ts, power, expected)
                if event is not None:
                    alerts.append(event)
        if not reports and not alerts:
            return _EMPTY
        return EnergyStep(tuple(reports), tuple(alerts))


_EMPTY = EnergyStep()
