"""The Sparkplug session as pure code (edge_agent/upstream/sparkplug): seq 0–255 wrapping and reset
on every NBIRTH, bdSeq shared by the will and the birth and persisted across restarts, the metric
map and report by exception, and commands from outside treated as hostile."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pysparkplug import DataType, DBirth, DData, Metric, NBirth, NCmd, NDeath

from edge_agent.types import AlertEvent, AlertEventKind, Score
from edge_agent.upstream.sparkplug import metrics as m
from edge_agent.upstream.sparkplug.bdseq import BdSeqStore
from edge_agent.upstream.sparkplug.session import Command, EdgeNodeSession
from edge_agent.upstream.sparkplug.topics import SparkplugTopics

TOPICS = SparkplugTopics("plant-a", "gw-1")
SIGNALS = ["flow", "pressure"]


def session(devices: tuple[str, ...] = ("pump-1",), deadband: float = 0.0) -> EdgeNodeSession:
    s = EdgeNodeSession(TOPICS, "9.9.9", "plant-a", clock_ms=lambda: 1_700_000_000_000)
    for d in devices:
        s.define_device(d, m.device_definitions(SIGNALS, deadband))
    return s


def score(value: float, ts: float = 1000.0, errors: tuple[float, ...] = (3.0, 1.0)) -> Score:
    return Score("pump-1", ts, value, np.array(errors), np.zeros(len(errors)))


def values(msg_payload: bytes, kind: type[NBirth | DBirth | DData]) -> dict[str, object]:
    return {x.name: x.value for x in kind.decode(msg_payload).metrics if x.name is not None}


def ncmd(*metrics: Metric) -> bytes:
    return NCmd(1, metrics).encode(include_dtypes=True)


def test_topics_follow_the_sparkplug_namespace():
    assert TOPICS.node("NBIRTH") == "spBv1.0/plant-a/NBIRTH/gw-1"
    assert TOPICS.device("DDATA", "pump-1") == "spBv1.0/plant-a/DDATA/gw-1/pump-1"
    assert TOPICS.subscriptions == ("spBv1.0/plant-a/NCMD/gw-1", "spBv1.0/plant-a/DCMD/gw-1/+")
    assert TOPICS.command("spBv1.0/plant-a/NCMD/gw-1") == ("NCMD", None)
    assert TOPICS.command("spBv1.0/plant-a/DCMD/gw-1/pump-1") == ("DCMD", "pump-1")
    for other in ("spBv1.0/plant-b/NCMD/gw-1", "spBv1.0/plant-a/NCMD/gw-2",
                  "spBv1.0/plant-a/NDATA/gw-1", "spBv1.0/plant-a/NCMD/gw-1/x", "x"):  # fmt: skip
        assert TOPICS.command(other) is None


def test_will_and_birth_carry_the_same_bdseq_and_births_come_in_order():
    s = session(("pump-1", "pump-2"))
    will = s.connecting(7)
    assert will.kind == "NDEATH" and will.qos == 1
    assert will.topic == "spBv1.0/plant-a/NDEATH/gw-1"
    death = NDeath.decode(will.payload).bd_seq_metric
    assert (death.name, death.datatype, death.value) == ("bdSeq", DataType.INT64, 7)
    out = s.births()
    assert [(o.kind, o.seq, o.qos) for o in out] == [
        ("NBIRTH", 0, 0), ("DBIRTH", 1, 0), ("DBIRTH", 2, 0),
    ]  # fmt: skip
    assert out[1].topic.endswith("/DBIRTH/gw-1/pump-1")
    node = NBirth.decode(out[0].payload)
    assert node.seq == 0
    by_name = {x.name: x for x in node.metrics}
    assert by_name["bdSeq"].value == 7
    assert by_name["Node Control/Rebirth"].datatype is DataType.BOOLEAN
    assert by_name["Node Control/Rebirth"].value is False
    assert s.death().payload == will.payload  # a clean stop publishes the will's NDEATH


def test_dbirth_defines_every_metric_with_its_datatype():
    s = session()
    s.connecting(0)
    dbirth = DBirth.decode(s.births()[1].payload)
    types = {x.name: x.datatype for x in dbirth.metrics}
    assert types == {
        "Anomaly/Score": DataType.DOUBLE, "Anomaly/Threshold": DataType.DOUBLE,
        "Alert/Active": DataType.BOOLEAN, "Alert/Condition Active": DataType.BOOLEAN,
        "Alert/Severity": DataType.STRING, "Alert/Id": DataType.STRING,
        "Model/Version": DataType.STRING,
        "Contributions/flow": DataType.DOUBLE, "Contributions/pressure": DataType.DOUBLE,
    }  # fmt: skip
    got = {x.name: x for x in dbirth.metrics}
    assert got["Anomaly/Score"].is_null  # nothing scored yet: an explicit null
    assert got["Alert/Active"].value is False


def test_seq_wraps_from_255_to_0_and_restarts_at_0_on_every_birth():
    s = session()
    s.connecting(0)
    seqs = [o.seq for o in s.births()]
    for i in range(300):
        msg = s.update("pump-1", m.score_values(score(float(i)), SIGNALS, 5.0, "v1"), 1000 + i)
        assert msg is not None and msg.kind == "DDATA"
        assert DData.decode(msg.payload).seq == msg.seq
        seqs.append(msg.seq)
    assert seqs == [i % 256 for i in range(302)]
    assert seqs[256:258] == [0, 1]  # ... 254, 255, 0, 1
    assert [o.seq for o in s.births()] == [0, 1]  # a rebirth starts over
    assert s.update("pump-1", {m.SCORE: 1234.0}, 5).seq == 2  # type: ignore[union-attr]


def test_ddata_reports_by_exception():
    s = session(deadband=0.5)
    s.connecting(0)
    s.births()
    first = s.update("pump-1", m.score_values(score(2.0), SIGNALS, 5.0, "v1"), 1000)
    assert first is not None
    got = values(first.payload, DData)
    assert got["Anomaly/Score"] == 2.0 and got["Model/Version"] == "v1"
    assert got["Contributions/flow"] == 0.75 and got["Contributions/pressure"] == 0.25
    # Within the deadband and nothing else changed: nothing is sent.
    assert s.update("pump-1", m.score_values(score(2.3), SIGNALS, 5.0, "v1"), 1001) is None
    moved = s.update("pump-1", m.score_values(score(2.6), SIGNALS, 5.0, "v1"), 1002)
    assert moved is not None and values(moved.payload, DData) == {"Anomaly/Score": 2.6}
    alert = AlertEvent("A-1", AlertEventKind.RAISED, "pump-1", 1003.0, 9.0, 5.0, "critical",
                       "anomaly", "", (), "v1")  # fmt: skip
    raised = s.update("pump-1", m.alert_values(alert), 1003_000)
    assert raised is not None
    assert values(raised.payload, DData) == {
        "Alert/Active": True, "Alert/Condition Active": True, "Alert/Severity": "critical",
        "Alert/Id": "A-1",
    }  # fmt: skip
    # Inside its episode the condition returned to normal: the alert stays open.
    calm = dataclasses.replace(alert, event=AlertEventKind.UPDATED, condition_active=False)
    returned = s.update("pump-1", m.alert_values(calm), 1004_000)
    assert returned is not None
    assert values(returned.payload, DData) == {"Alert/Condition Active": False}
    assert DData.decode(raised.payload).metrics[0].timestamp == 1003_000  # data time, ms


def test_values_offline_wait_for_the_next_birth():
    s = session()
    s.connecting(3)
    assert s.update("pump-1", {m.SCORE: 4.5}, 99) is None  # not born yet: nothing to send
    dbirth = DBirth.decode(s.births()[1].payload)
    got = {x.name: x for x in dbirth.metrics}
    assert got["Anomaly/Score"].value == 4.5 and got["Anomaly/Score"].timestamp == 99
    assert s.update("pump-1", {m.SCORE: 4.5}, 100) is None  # already in the birth


def test_new_metric_definitions_need_a_rebirth():
    s = session()
    s.connecting(0)
    s.births()
    assert s.define_device("pump-1", m.device_definitions(SIGNALS)) is False
    assert s.define_device("pump-1", m.device_definitions(["flow"])) is True


def test_rebirth_command():
    s = session()
    s.connecting(0)
    s.births()
    topic = "spBv1.0/plant-a/NCMD/gw-1"
    yes = Metric(1, "Node Control/Rebirth", DataType.BOOLEAN, value=True)
    no = Metric(1, "Node Control/Rebirth", DataType.BOOLEAN, value=False)
    assert s.command(topic, ncmd(yes)) is Command.REBIRTH
    assert s.command(topic, ncmd(no)) is Command.IGNORED
    assert s.stats.rebirths == 1


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xff\xff", b"\x08", b"x" * 70_000, bytes(range(256))],
    ids=["garbage", "truncated", "too-large", "bytes"],
)
def test_hostile_commands_are_counted_and_survived(raw):
    s = session()
    s.connecting(0)
    s.births()
    assert s.command("spBv1.0/plant-a/NCMD/gw-1", raw) is Command.REJECTED
    assert s.stats.decode_errors == 1 and s.stats.rebirths == 0


def test_unknown_metrics_and_device_commands_are_ignored():
    s = session()
    s.connecting(0)
    s.births()
    odd = (
        Metric(1, "Node Control/Reboot", DataType.BOOLEAN, value=True),
        Metric(1, "Node Control/Rebirth", DataType.STRING, value="true"),  # wrong type
    )
    assert s.command("spBv1.0/plant-a/NCMD/gw-1", ncmd(*odd)) is Command.IGNORED
    rebirth = Metric(1, "Node Control/Rebirth", DataType.BOOLEAN, value=True)
    assert s.command("spBv1.0/plant-a/DCMD/gw-1/pump-1", ncmd(rebirth)) is Command.IGNORED
    assert s.command("spBv1.0/plant-a/NCMD/gw-9", ncmd(rebirth)) is Command.REJECTED
    assert s.stats.unknown_metrics == 3 and s.stats.rebirths == 0


def test_bdseq_is_persisted_and_wraps(tmp_path):
    path = tmp_path / "state" / "sparkplug-bdseq"
    assert [BdSeqStore(path).next() for _ in range(3)] == [0, 1, 2]  # a new store per "restart"
    assert path.read_text() == "2\n"
    path.write_text("255\n")
    assert BdSeqStore(path).next() == 0
    assert oct(path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("content", ["", "abc", "256", "-1", "1e3"])
def test_unreadable_bdseq_starts_over_at_zero(tmp_path, content):
    path = tmp_path / "sparkplug-bdseq"
    path.write_text(content)
    assert BdSeqStore(path).next() == 0
