"""Config model of the MQTT source (`type: mqtt`): readings that sensors and gateways publish to
a broker."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from edge_agent.config_base import SourceConfigBase


class MqttInConfig(SourceConfigBase):
    """Consume readings that sensors/gateways publish to an MQTT broker."""

    type: Literal["mqtt"]
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = None
    username: str | None = None
    password_file: Path | None = None
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(30, ge=5, le=3600)
