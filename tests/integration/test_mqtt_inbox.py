"""The bounded MQTT inbox against a real Mosquitto: a consumer that falls behind drops the oldest
messages, counted, and memory stays bounded (aiomqtt's own queue is unbounded)."""

from __future__ import annotations

import asyncio

import aiomqtt
import paho.mqtt.client as mqtt
import pytest

from edge_agent.mqtt_inbox import inbox
from simulators.broker import Mosquitto

pytestmark = pytest.mark.integration

LIMIT = 10
SENT = 60


def _publish_burst(port: int, topic: str, n: int) -> None:
    """A flood from an independent client (paho's own, not aiomqtt), QoS 1, waited for."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        infos = [c.publish(topic, str(i).encode(), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(timeout=10)
    finally:
        c.loop_stop()
        c.disconnect()


async def test_a_consumer_that_falls_behind_keeps_the_newest_and_counts_the_rest(
    mosquitto: Mosquitto,
) -> None:
    dropped = 0
    all_dropped = asyncio.Event()

    def on_drop() -> None:
        nonlocal dropped
        dropped += 1
        if dropped == SENT - LIMIT:
            all_dropped.set()

    async with aiomqtt.Client(
        "127.0.0.1",
        mosquitto.port,
        queue_type=inbox(on_drop),
        max_queued_incoming_messages=LIMIT,
    ) as client:
        await client.subscribe("flood/#", qos=1)
        # Nobody reads `client.messages` while the burst arrives: the consumer is behind.
        await asyncio.to_thread(_publish_burst, mosquitto.port, "flood/x", SENT)
        await asyncio.wait_for(all_dropped.wait(), 10)
        assert len(client.messages) == LIMIT
        got = []
        async with asyncio.timeout(10):
            async for msg in client.messages:
                got.append(int(bytes(msg.payload)))  # type: ignore[arg-type]
                if len(got) == LIMIT:
                    break
    assert got == list(range(SENT - LIMIT, SENT))  # the newest, in order
    assert dropped == SENT - LIMIT
