"""Config model of the MQTT source (`type: mqtt`): readings that sensors and gateways publish to
a broker."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from edge_agent.config_base import (
    ClientId,
    Host,
    SourceConfigBase,
    check_readable,
    resolve_path,
)


class MqttInConfig(SourceConfigBase):
    """Consume readings that sensors/gateways publish to an MQTT broker."""

    type: Literal["mqtt"]
    host: Host = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: ClientId | None = None
    username: str | None = None
    password_file: Path | None = None
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(30, ge=5, le=3600)


def check_sources(
    sources: Sequence[tuple[int, SourceConfigBase]], base_dir: Path | None
) -> list[str]:
    """The password files the sources name are there and readable."""
    errors: list[str] = []
    if base_dir is None:
        return errors
    for i, src in sources:
        if isinstance(src, MqttInConfig) and src.password_file is not None:
            path = resolve_path(base_dir, src.password_file)
            errors += check_readable(f"sources[{i}].password_file", path)
    return errors
