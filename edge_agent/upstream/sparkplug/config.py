"""`upstream.sparkplug`: the Sparkplug B view of the gateway (off by default)."""

from __future__ import annotations

import importlib.util

from pydantic import Field

from edge_agent.config_base import ClientId, StrictModel, TopicLevel

# pysparkplug pins paho-mqtt<2 for its own client, which the agent does not use (it encodes and
# decodes payloads only); aiomqtt needs paho-mqtt 2, so it is installed without its dependencies.
INSTALL_HINT = "pip install --no-deps pysparkplug==0.6.1 'protobuf>=5.28.2'"


class SparkplugConfig(StrictModel):
    """Sparkplug B 3.0 on the broker of `upstream.mqtt` (same host, TLS and credentials), over a
    connection of its own whose will is the NDEATH. Group and edge node ids are MQTT topic levels
    (no `/`, `+`, `#`, spaces), bounded like every name."""

    enabled: bool = False
    # Default: the site (identity.site); the edge node id defaults to the gateway name.
    group_id: TopicLevel | None = None
    edge_node_id: TopicLevel | None = None
    # Default: the JSON upstream's client id with `-spb` appended (two connections, two ids).
    client_id: ClientId | None = None
    # Report by exception: a new score goes out in a DDATA when it moved by more than this since
    # the last one sent (0: every scored window). Alert state changes always go out at once.
    score_deadband: float = Field(0.0, ge=0)


def check_sparkplug(cfg: SparkplugConfig) -> list[str]:
    """Errors (`field.path: message`) `validate` and `run` report for this section."""
    if cfg.enabled and importlib.util.find_spec("pysparkplug") is None:
        return [f"upstream.sparkplug.enabled: needs the pysparkplug package ({INSTALL_HINT})"]
    return []
