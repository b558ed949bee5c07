"""Submitting to the publisher without a broker: what goes into the outbox, and bad content."""

from __future__ import annotations

import json
import math

from edge_agent.alerts.messages import EventType
from edge_agent.config import IdentityConfig, MqttConfig, TelemetryConfig
from edge_agent.config import OutboxConfig as OutboxConfig
from edge_agent.upstream.mqtt import MqttPublisher
from edge_agent.upstream.outbox import Kind


def make(tmp_path, telemetry=False):
    return MqttPublisher(
        MqttConfig(),
        IdentityConfig(site="s", gateway="g"),
        "v",
        {},
        outbox=OutboxConfig(dir=tmp_path),
        telemetry=TelemetryConfig(enabled=telemetry, interval_s=10),
    )


async def test_non_serializable_alert_is_counted_and_reported_not_raised(tmp_path):
    pub = make(tmp_path)
    pub.submit_alert("pump-1", {"score": math.nan})
    pub.submit_alert("pump-1", {"score": object()})
    # The problem events are queued at once (no loop turn needed).
    assert pub.stats.bad_payloads == 2
    queued = pub.outbox.peek(10)
    assert [s.message.kind for s in queued] == [Kind.EVENT, Kind.EVENT]
    body = json.loads(queued[0].message.payload)
    assert body["type"] == "publish_rejected" and queued[0].message.topic == "edge/s/g/events"


async def test_telemetry_is_off_by_default_and_rate_limited_per_asset(tmp_path):
    off = make(tmp_path / "a")
    off.submit_telemetry("pump-1", 100.0, 0.2, 0.5, "m")
    assert off.outbox.peek(10) == []
    on = make(tmp_path / "b", telemetry=True)
    for ts in (100.0, 105.0, 110.0, 111.0):
        on.submit_telemetry("pump-1", ts, 0.2, 0.5, "m")
    on.submit_telemetry("pump-2", 105.0, 0.2, 0.5, "m")
    sent = [(s.message.topic, s.message.qos, s.message.kind) for s in on.outbox.peek(10)]
    assert sent == [
        ("edge/s/g/telemetry/pump-1", 0, Kind.TELEMETRY),
        ("edge/s/g/telemetry/pump-1", 0, Kind.TELEMETRY),
        ("edge/s/g/telemetry/pump-2", 0, Kind.TELEMETRY),
    ]


def test_a_dead_lettered_alert_is_reported_but_a_dead_lettered_event_is_not(tmp_path):
    # The outbox says which kind of message it dead-lettered; an event about a refused event
    # could be refused in turn, forever, so only other kinds are reported.
    pub = MqttPublisher(
        MqttConfig(), IdentityConfig(site="s", gateway="g"), "v", {},
        outbox=OutboxConfig(dir=tmp_path, max_message_bytes=1024),
    )  # fmt: skip
    pub.submit_alert("pump-1", {"pad": "x" * 2000})
    queued = pub.outbox.peek(10)
    assert [json.loads(s.message.payload)["type"] for s in queued] == ["publish_rejected"]
    pub.outbox.ack([s.id for s in queued])
    pub.submit_event(EventType.MODEL_LOADED, "y" * 2000)
    assert pub.outbox.peek(10) == []
    assert pub.outbox.stats.dead_letters == 2
