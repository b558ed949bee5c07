"""Outbox honesty (issue 12, failure 7): the end of a disk-full episode is reported as an
`outbox_recovered` event and a log line, also when the messages held in memory meanwhile were
delivered from there; `edge_agent_outbox_messages` counts messages held in memory, and
`edge_agent_outbox_memory_messages` shows them on their own."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.config import IdentityConfig, MqttConfig, load_config
from edge_agent.config import OutboxConfig as OutboxConfig
from edge_agent.upstream.mqtt import MqttPublisher
from edge_agent.upstream.outbox import Outbox
from tests.conftest import agent_config


def fill_disk(box: Outbox) -> None:
    """A real SQLITE_FULL from here on: the file capped at its current size."""
    db = box._db
    assert db is not None
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")


def free_disk(box: Outbox) -> None:
    assert box._db is not None
    box._db.execute("PRAGMA max_page_count=1073741823")


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


async def test_recovery_is_published_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pub = MqttPublisher(
        MqttConfig(),
        IdentityConfig(site="s", gateway="g"),
        "v",
        {},
        outbox=OutboxConfig(dir=tmp_path),
    )
    pub.open()
    fill_disk(pub.outbox)
    for i in range(20):
        pub.submit_alert("pump-1", {"n": i, "pad": "x" * 3000})
    # The outbox_error event is queued once the put that found the disk full has returned.
    assert pub.outbox.stats.spilled > 0
    # The broker took everything, straight from memory.
    pub.outbox.ack([s.id for s in pub.outbox.peek(1000)])
    free_disk(pub.outbox)
    with caplog.at_level(logging.WARNING, logger="edge_agent.upstream.outbox"):
        pub.submit_alert("pump-1", {"n": 99})
    assert any("is writable again" in r.getMessage() for r in caplog.records)
    bodies = [json.loads(s.message.payload) for s in pub.outbox.peek(100)]
    events = [b for b in bodies if b.get("type") == "outbox_recovered"]
    assert len(events) == 1 and events[0]["severity"] == "info"
    assert "held in memory" in events[0]["message"]
    pub.outbox.close()


def test_messages_held_in_memory_are_in_the_metrics(tmp_path: Path) -> None:
    cfg = load_config(
        agent_config(tmp_path / "a.yaml", sim_port=1502, broker_port=1883, bundle=tmp_path / "b")
    )
    agent = Agent(cfg, [])
    pub = agent.publisher
    pub.open()
    fill_disk(pub.outbox)
    for i in range(20):
        pub.submit_alert("pump-1", {"n": i, "pad": "x" * 3000})
    held = pub.outbox.stats.spilled
    assert held > 0
    text = agent.metrics.render().decode()
    assert metric(text, "edge_agent_outbox_memory_messages") == held
    # The 20 alerts and the outbox_error event about the full disk (queued as soon as the
    # outbox call that found the problem returned, also before the publisher runs).
    assert metric(text, "edge_agent_outbox_messages") == pub.outbox.stats.queued + held == 21
    pub.outbox.close()
