"""What every part of the configuration shares: strict models, name patterns, backoff and clock
settings, and the fields every source has. Protocol packages (`edge_agent/sources/<protocol>/`)
build their source config models on `SourceConfigBase`; `edge_agent.config` assembles the rest."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# MQTT topic levels must not contain wildcards, separators, spaces or control characters (a NUL
# is forbidden in any MQTT string).
TOPIC_LEVEL = r"^[^/#+\s\x00-\x1f\x7f]+$"
# Names end up in topics, payloads and file names: bounded, so a 70,000-character site cannot
# reach the MQTT encoder (whose length prefix is 16 bits).
MAX_NAME = 128
TopicLevel = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=TOPIC_LEVEL)
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=NAME)]
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def _host(value: str) -> str:
    """A DNS name or an IP address, as a socket connect takes it (no scheme, port or spaces)."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if not value or len(value) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"not a host name or IP address: {value[:80]!r}")
    return value


Host = Annotated[str, AfterValidator(_host)]
# MQTT client ids: printable, bounded (brokers may refuse long ones; 23 is the 3.1.1 minimum).
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=r"^[!-~]+$")]


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
    name: Name
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


def check_readable(where: str, path: Path) -> list[str]:
    """A file the config names: there and readable by this user (the agent's, under systemd)."""
    if not path.is_file():
        return [
            f"{where}: {path} does not exist"
            if not path.exists()
            else f"{where}: {path} is not a file"
        ]
    if not os.access(path, os.R_OK):
        return [f"{where}: {path} is not readable by this user"]
    return []


def check_writable_dir(where: str, path: Path) -> list[str]:
    """A folder the agent writes (or creates): the nearest existing folder must take writes."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return [f"{where}: {probe} is not a folder"]
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "" if probe == path else f" (to create {path})"
        return [f"{where}: {probe} is not writable by this user{what}"]
    return []
