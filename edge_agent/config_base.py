"""What every part of the configuration shares: strict models, name patterns, backoff and clock
settings, and the fields every source has. Protocol packages (`edge_agent/sources/<protocol>/`)
build their source config models on `SourceConfigBase`; `edge_agent.config` assembles the rest."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# MQTT topic levels must not contain wildcards or separators.
TOPIC_LEVEL = r"^[^/#+\s]+$"


class StrictModel(BaseModel):
    """Unknown keys are errors, so a typo cannot turn into a default."""

    model_config = ConfigDict(extra="forbid")


class BackoffConfig(StrictModel):
    initial_s: float = Field(0.5, gt=0)
    max_s: float = Field(30.0, gt=0)
    jitter: float = Field(0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> BackoffConfig:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self


class ClockSkewConfig(StrictModel):
    """How far a reading's own timestamp may be from the gateway clock. A reading stamped further
    ahead or further behind is bad data (counted, reported, restamped at the gateway time) and
    never moves an asset's clock: one message stamped in 2100 must not stop an asset scoring."""

    max_ahead_s: float = Field(5.0, gt=0)
    # None: the largest `max_age_s` of the assets the source feeds (older data is stale anyway).
    max_behind_s: float | None = Field(None, gt=0)


class SourceConfigBase(StrictModel):
    """The fields of every source, whatever its protocol. `type` names the protocol's kind of
    source (the registry in `edge_agent.sources.registry` maps it to its package)."""

    type: str
    name: str = Field(pattern=NAME)
    # A device profile: a path relative to the config's folder, or a bare name looked up in
    # `profile_dirs`, ./firmware_configs and the packaged profiles.
    profile: str
    # /healthz turns unhealthy when the source has delivered nothing for this long. None:
    # max(10 × its poll interval (or the shortest sample period of the assets it feeds), 30 s).
    stall_s: float | None = Field(None, gt=0)
    # Per-source clock skew limits; None: the agent-wide `clock` section.
    clock: ClockSkewConfig | None = None
    backoff: BackoffConfig = BackoffConfig()


def resolve_path(base: Path, p: Path) -> Path:
    """A path from the config, relative to the config file's folder unless absolute."""
    return p if p.is_absolute() else base / p
