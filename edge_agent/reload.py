"""SIGHUP: re-read the config file and the model bundles without stopping the agent.

What a reload applies: a new or re-trained bundle per asset (verified first; the old one keeps
running if the new one fails), the asset's alert update interval and the log level. What needs a
restart (a warning names it, nothing is half-applied): sources, upstream, identity,
observability, adding or removing assets, or changing an asset's signals or sample period.

A new bundle replaces the asset's detector, scaler and alert thresholds between two batches. The
assembler, the data-quality monitor and the alert state (an alert raised under the old model is
cleared under the new one with the same alert_id) are kept; so is the window buffer when the new
model has the same window and hop, so no data is dropped and scoring continues with the next hop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from edge_agent.alerts.messages import EventType
from edge_agent.config import AgentSettings, AssetConfig, ConfigError, LoadedConfig, load_config
from edge_agent.inference.bundle import Bundle, BundleError
from edge_agent.inference.detector import DetectorPool
from edge_agent.pipeline import AssetPipeline

log = logging.getLogger(__name__)

# Outcomes, also the `outcome` label of the edge_agent_reloads metric.
APPLIED = "applied"
UNCHANGED = "unchanged"
CONFIG_REJECTED = "config_rejected"
MODEL_REJECTED = "model_rejected"


class ReloadHost(Protocol):
    """What a reload needs of the running agent: its config, pipelines and shared detector
    pool to read, and the agent's own methods to swap a pipeline and to report events (the
    reload changes nothing of the agent's from outside)."""

    @property
    def cfg(self) -> LoadedConfig: ...
    @property
    def pipelines(self) -> Sequence[AssetPipeline]: ...
    @property
    def detectors(self) -> DetectorPool: ...

    def report_event(
        self,
        type_: EventType,
        message: str,
        severity: str = ...,
        subject: str | None = ...,
        details: dict[str, Any] | None = ...,
    ) -> None: ...

    def report_model_loaded(
        self, p: AssetPipeline, previous: str | None = ..., **extra: Any
    ) -> None: ...

    def replace_pipeline(self, old: AssetPipeline, new: AssetPipeline) -> None: ...


def _needs_restart(old: AgentSettings, new: AgentSettings) -> list[str]:
    changed = [
        section
        for section in ("identity", "sources", "upstream", "observability", "profile_dirs", "fleet")
        if getattr(old, section) != getattr(new, section)
    ]
    old_assets = {a.name: a for a in old.assets}
    new_assets = {a.name: a for a in new.assets}
    if old_assets.keys() != new_assets.keys():
        changed.append("assets (added or removed)")
    for name in sorted(old_assets.keys() & new_assets.keys()):
        o, n = old_assets[name], new_assets[name]
        if (o.signals, o.sample_period_s, o.max_age_s) != (
            n.signals,
            n.sample_period_s,
            n.max_age_s,
        ):
            changed.append(f"assets[{name}] signals or timing")
    return changed


def needs_restart(old: AgentSettings, new: AgentSettings) -> list[str]:
    """What of `new` a reload would not apply (the sections and assets that need a restart);
    a fleet config push refuses a config that lists any, so a push is applied whole or not."""
    return _needs_restart(old, new)


def _same_model(old: AssetPipeline, asset: AssetConfig, bundle: Bundle) -> bool:
    return (
        old.asset == asset
        and old.bundle.directory == bundle.directory
        and old.bundle.manifest == bundle.manifest
        # Signed since (or re-signed by another key): reported as a new load.
        and (old.bundle.signed_by, old.bundle.unsigned) == (bundle.signed_by, bundle.unsigned)
    )


def reload_agent(agent: ReloadHost) -> str:
    """Apply what can be applied live; returns one of the outcomes above. Never raises for a
    bad config or bundle: those are logged and published as events, the running ones stay."""
    path = agent.cfg.path
    log.info("reload: reading %s", path)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            log.error("reload: %s", line)
        agent.report_event(
            EventType.CONFIG_REJECTED,
            f"config {path} rejected ({len(exc.errors)} problem(s)); keeping the running one",
            "error",
            str(path),
            {"errors": exc.errors[:20]},
        )
        return CONFIG_REJECTED

    restart = _needs_restart(agent.cfg.settings, cfg.settings)
    if restart:
        log.warning("reload: changes that take effect only after a restart: %s", ", ".join(restart))
    level = cfg.settings.logging.level
    if level != logging.getLevelName(logging.getLogger().level):
        logging.getLogger().setLevel(level)
        log.info("reload: log level %s", level)

    outcome = UNCHANGED
    new_assets = {a.name: a for a in cfg.settings.assets}
    for old in list(agent.pipelines):
        asset = new_assets.get(old.name)
        if asset is None or (asset.signals, asset.sample_period_s, asset.max_age_s) != (
            old.asset.signals,
            old.asset.sample_period_s,
            old.asset.max_age_s,
        ):
            continue  # listed above as needing a restart
        bundle_dir = cfg.bundle_dir(asset)
        try:
            # Verified against the trusted keys of the config just read (keys can be rotated
            # by a reload; a bundle no longer trusted is refused and the running one kept).
            bundle = Bundle.load(bundle_dir, cfg.bundle_trust)
            if _same_model(old, asset, bundle):
                continue
            new = AssetPipeline(asset, bundle, agent.detectors)
        except (BundleError, ValueError) as exc:
            log.error("reload: asset %s: %s", old.name, exc)
            agent.report_event(
                EventType.MODEL_REJECTED,
                f"asset {old.name}: bundle {bundle_dir} rejected, keeping model "
                f"{old.model_version}: {exc}",
                "error",
                old.name,
                {
                    "bundle": str(bundle_dir),
                    "kept_model_version": old.model_version,
                    "reason": str(exc),
                },
            )
            outcome = MODEL_REJECTED
            continue
        kept_window = new.carry_state_from(old)
        agent.replace_pipeline(old, new)
        if bundle.unsigned:
            log.warning(
                "INSECURE: asset %s now runs the unsigned bundle %s (bundles.allow_unsigned)",
                new.name,
                bundle_dir,
            )
        agent.report_model_loaded(new, old.model_version, window_kept=kept_window)
        if outcome == UNCHANGED:
            outcome = APPLIED
    log.info("reload: %s", outcome)
    return outcome
