"""The Sparkplug publisher's queue between the agent and its connection, without a broker: DDATA
in seq order, births replacing the DDATA queued before them, new births when a reload changes an
asset's metrics, nothing after the NDEATH of a clean stop."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from pysparkplug import DBirth, DData

from edge_agent.config import IdentityConfig, MqttConfig
from edge_agent.types import Score
from edge_agent.upstream.sparkplug.client import SparkplugPublisher
from edge_agent.upstream.sparkplug.config import SparkplugConfig


def pipeline(signals: list[str], name: str = "pump-1") -> SimpleNamespace:
    return SimpleNamespace(
        name=name, model_version="v1", raise_threshold=5.0,
        policy=SimpleNamespace(signals=SimpleNamespace(names=signals)),
    )  # fmt: skip


def output(value: float, n: int) -> SimpleNamespace:
    score = Score("pump-1", 1000.0 + value, value, np.ones(n), np.zeros(n))
    return SimpleNamespace(scores=(score,), alerts=())


def queued(pub: SparkplugPublisher) -> list[tuple[str, int | None]]:
    out = []
    while not pub._queue.empty():
        m = pub._queue.get_nowait()
        out.append((m.kind, m.seq))
    return out


def online(tmp_path: Path) -> tuple[SparkplugPublisher, SimpleNamespace]:
    pub = SparkplugPublisher(
        SparkplugConfig(enabled=True), MqttConfig(), IdentityConfig(site="s", gateway="g"),
        "1.0", tmp_path,
    )  # fmt: skip
    p = pipeline(["a", "b"])
    pub.define([p])  # type: ignore[list-item]
    pub.session.connecting(pub.bd_seq.next())
    for m in pub.session.births():
        pub._queue.put_nowait(m)
    return pub, p


async def test_ddata_follow_the_births_in_seq_order(tmp_path):
    pub, p = online(tmp_path)
    for v in (1.0, 2.0):
        pub.observe(p, output(v, 2))  # type: ignore[arg-type]
    assert queued(pub) == [("NBIRTH", 0), ("DBIRTH", 1), ("DDATA", 2), ("DDATA", 3)]
    assert pub.topics.node("NBIRTH") == "spBv1.0/s/NBIRTH/g"
    assert pub.client_id == "edge-agent-s-g-spb"


async def test_a_rebirth_drops_the_ddata_queued_before_it(tmp_path):
    pub, p = online(tmp_path)
    queued(pub)
    pub.observe(p, output(1.0, 2))  # type: ignore[arg-type]
    pub._rebirth("Node Control/Rebirth")
    msgs = []
    while not pub._queue.empty():
        msgs.append(pub._queue.get_nowait())
    assert [(m.kind, m.seq) for m in msgs] == [("NBIRTH", 0), ("DBIRTH", 1)]
    score = {x.name: x.value for x in DBirth.decode(msgs[1].payload).metrics}["Anomaly/Score"]
    assert score == 1.0  # the dropped DDATA's value is in the birth


async def test_a_reload_with_other_signals_sends_new_births(tmp_path):
    pub, p = online(tmp_path)
    queued(pub)
    pub.observe(p, output(1.0, 2))  # type: ignore[arg-type]
    assert queued(pub) == [("DDATA", 2)]
    same = pipeline(["a", "b"])  # a reload's new pipeline, same metrics: no births
    pub.observe(same, output(2.0, 2))  # type: ignore[arg-type]
    assert queued(pub) == [("DDATA", 3)]
    other = pipeline(["a", "b", "c"])
    pub.observe(other, output(3.0, 3))  # type: ignore[arg-type]
    msgs = []
    while not pub._queue.empty():
        msgs.append(pub._queue.get_nowait())
    assert [(m.kind, m.seq) for m in msgs] == [("NBIRTH", 0), ("DBIRTH", 1), ("DDATA", 2)]
    names = {x.name for x in DBirth.decode(msgs[1].payload).metrics}
    assert "Contributions/c" in names
    assert {x.name for x in DData.decode(msgs[2].payload).metrics} >= {"Contributions/c"}


async def test_nothing_after_the_ndeath_of_a_clean_stop(tmp_path):
    pub, p = online(tmp_path)
    queued(pub)
    await pub.close()
    pub.observe(p, output(1.0, 2))  # type: ignore[arg-type]
    assert queued(pub) == []


async def test_a_full_queue_is_replaced_by_births_not_by_a_gap_in_seq(tmp_path, monkeypatch):
    monkeypatch.setattr("edge_agent.upstream.sparkplug.client.QUEUE_LIMIT", 5)
    pub, p = online(tmp_path)  # NBIRTH, DBIRTH queued
    for v in range(4):
        pub.observe(p, output(float(v), 2))  # type: ignore[arg-type]
    assert pub.dropped == 6
    msgs = []
    while not pub._queue.empty():
        msgs.append(pub._queue.get_nowait())
    assert [(m.kind, m.seq) for m in msgs] == [("NBIRTH", 0), ("DBIRTH", 1)]
    latest = {x.name: x.value for x in DBirth.decode(msgs[1].payload).metrics}
    assert latest["Anomaly/Score"] == 3.0
