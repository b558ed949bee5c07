import contextlib
import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.profiles import load_any_profile
from edge_agent.sources.mqtt.parse import (
    PayloadError,
    find_spec,
    parse_message,
    parse_timestamp,
    point_from_template,
)
from edge_agent.sources.mqtt.profile import MqttTopic
from edge_agent.types import Quality
from simulators.mqtt_gateway import messages
from tests.conftest import ROOT

PROFILE = load_any_profile(ROOT / "firmware_configs" / "acme_sensor_gateway_mqtt.yaml")
T = 1_767_225_600.0


@pytest.mark.parametrize(
    ("flt", "topic", "ok"),
    [
        ("a/+/c", "a/b/c", True), ("a/+/c", "a/b/d", False), ("a/#", "a", True),
        ("a/#", "a/b/c", True), ("+/+", "a", False), ("a/b", "a/b/c", False), ("#", "x/y", True),
        ("#", "$SYS/broker/load", False), ("+/broker/load", "$SYS/broker/load", False),
    ],
)  # fmt: skip
def test_topic_filters(flt: str, topic: str, ok: bool) -> None:
    spec = MqttTopic(filter=flt, parser="number", point="p")
    assert (find_spec([spec], topic) is spec) is ok


def test_point_from_topic_levels():
    assert point_from_template("{2}.{4}", "plant/a/pump-1/raw/flow") == "pump-1.flow"
    with pytest.raises(PayloadError):
        point_from_template("{9}", "a/b")


def test_json_fields_with_paths_and_iso_timestamp():
    spec = MqttTopic(
        filter="x/#", timestamp="meta.ts",
        fields=[{"point": "a", "path": "m.a"}, {"point": "b", "path": "arr.1"},
                {"point": "c", "path": "m.c"}],
    )  # fmt: skip
    doc = {"meta": {"ts": "2026-01-01T00:00:01Z"}, "m": {"a": 1.5, "c": None}, "arr": [0, "7"]}
    [(ts, readings)] = parse_message(spec, "x/y", json.dumps(doc).encode(), arrival=5.0)
    assert ts == T + 1
    got = {r.point: (r.value, r.quality) for r in readings}
    assert got["a"] == (1.5, Quality.GOOD) and got["b"] == (7.0, Quality.GOOD)
    assert math.isnan(got["c"][0]) and got["c"][1] is Quality.BAD  # null: present but unusable


def test_array_of_readings_groups_by_item_timestamp():
    spec = MqttTopic(
        filter="v", items="readings", name_path="sensor", value_path="rms", timestamp="t"
    )
    doc = {"readings": [{"sensor": "de", "rms": 2.0, "t": T * 1000},
                        {"sensor": "nde", "rms": 1.0, "t": T * 1000},
                        {"sensor": "de", "rms": 2.1, "t": (T + 1) * 1000}]}  # fmt: skip
    groups = parse_message(spec, "v", json.dumps(doc).encode(), arrival=0.0)
    assert [(ts, [r.point for r in rs]) for ts, rs in groups] == [
        (T, ["de", "nde"]), (T + 1, ["de"])
    ]  # fmt: skip


def test_plain_number_uses_arrival_time():
    spec = MqttTopic(filter="p/+", parser="number", point="{1}")
    assert parse_message(spec, "p/flow", b" 12.5\n", arrival=42.0)[0][0] == 42.0
    with pytest.raises(PayloadError):
        parse_message(spec, "p/flow", b"twelve", arrival=42.0)


@pytest.mark.parametrize("payload", [b"{", b"[]", b'{"other": 1}', b"\xff\xfe", b'"text"'])
def test_malformed_json_is_a_payload_error(payload: bytes) -> None:
    spec = MqttTopic(filter="x", fields=[{"point": "a", "path": "a"}])
    with pytest.raises(PayloadError):
        parse_message(spec, "x", payload, arrival=0.0)


def test_timestamps():
    assert parse_timestamp(T) == T and parse_timestamp(T * 1000) == T
    assert parse_timestamp("2026-01-01T00:00:00") == T  # no offset: UTC
    for bad in (True, "yesterday", -1, float("nan"), None, [1], 10**400):
        with pytest.raises(PayloadError):
            parse_timestamp(bad)


def test_profile_and_simulator_agree():
    values = {p: float(i) for i, p in enumerate(PROFILE.point_names())}
    seen = {}
    for topic, payload in messages(PROFILE, values, "pump-1", T):
        spec = find_spec(PROFILE.topics, topic)
        assert spec is not None, topic
        for _ts, readings in parse_message(spec, topic, payload, arrival=T):
            seen.update({r.point: r.value for r in readings})
    assert seen == values


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=10,
)


@given(
    payload=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()))
)
def test_fuzz_every_parser_either_parses_or_raises_payload_error(payload: bytes) -> None:
    for spec in PROFILE.topics:
        topic = "plant/s/pump-1/raw/run_hours" if spec.parser == "number" else "plant/s/pump-1/x"
        try:
            groups = parse_message(spec, topic, payload, arrival=T)
        except PayloadError:
            continue
        for ts, readings in groups:
            assert math.isfinite(ts)
            assert all(r.quality is Quality.BAD or math.isfinite(r.value) for r in readings)


@given(value=st.one_of(st.text(max_size=40), st.floats(), st.integers(), st.datetimes().map(str)))
def test_fuzz_timestamps_parse_or_raise_payload_error(value: object) -> None:
    with contextlib.suppress(PayloadError):
        assert math.isfinite(parse_timestamp(value))


# The widest inputs: numbers far beyond Python's 4,300-digit str→int limit, floats of any
# magnitude (inf, nan), huge strings, JSON of any shape, arbitrary bytes. Nothing may escape
# `parse_message` but PayloadError (issue 12: a 4,301-digit number stopped the MQTT source).
# json.dumps cannot write such numbers: they travel as marked strings, unquoted after dumping.
huge_number_text = st.integers(min_value=4_290, max_value=20_000).flatmap(
    lambda n: st.sampled_from(
        ["9" * n, "-" + "1" * n, "1" * n + ".5", "1e" + "9" * n, "0." + "3" * n]
    )
)
wide_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text()
    | st.text(min_size=1).map(lambda s: s * 999)
    | huge_number_text.map(lambda d: "\x00HUGE" + d + "\x00"),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=20,
)
_HUGE = re.compile(r'"\\u0000HUGE([-0-9.e]+)\\u0000"')


def _json_text(value: object) -> bytes:
    return _HUGE.sub(lambda m: m.group(1), json.dumps(value)).encode()


SPECS = [
    *PROFILE.topics,
    MqttTopic(filter="#", timestamp="ts", fields=[{"point": "a", "path": "a"}]),
    MqttTopic(filter="#", items="r", timestamp="ts"),
    MqttTopic(filter="#", parser="number", point="{0}"),
]


def _json_text(value: object) -> bytes:
    # json.dumps writes huge ints digit by digit only when the limit allows: write them by hand.
    try:
        return json.dumps(value).encode()
    except ValueError:
        return b'{"a": ' + b"9" * 5000 + b', "ts": ' + b"1" * 5000 + b"}"


def _parses_or_payload_error(payload: bytes) -> None:
    for spec in SPECS:
        topic = "plant/s/pump-1/raw/run_hours" if spec.parser == "number" else "plant/s/pump-1/x"
        try:
            groups = parse_message(spec, topic, payload, arrival=T)
        except PayloadError:
            continue
        for ts, readings in groups:
            assert math.isfinite(ts)
            assert all(r.quality is Quality.BAD or math.isfinite(r.value) for r in readings)


@given(
    payload=st.one_of(
        st.binary(max_size=5000),
        wide_json.map(_json_text),
        st.dictionaries(st.sampled_from(["a", "ts", "r", "value", "name"]), wide_json).map(
            _json_text
        ),
        st.text(max_size=100_000).map(str.encode),
        huge_number_text.map(str.encode),
    )
)
@settings(max_examples=200, deadline=None)
def test_fuzz_widest_inputs_never_raise_anything_but_payload_error(payload: bytes) -> None:
    _parses_or_payload_error(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a": ' + b"1" * 4301 + b"}",
        b'{"a": 1, "ts": ' + b"1" * 4301 + b"}",
        b'{"a": 1, "ts": -' + b"1" * 4301 + b"}",
        b'{"r": [{"name": "a", "value": ' + b"7" * 10_000 + b"}]}",
        b"9" * 5000,
        b'{"a": 1e999999, "ts": 1e400}',
    ],
)
def test_numbers_beyond_the_digit_limit_are_payload_errors_or_bad(payload: bytes) -> None:
    _parses_or_payload_error(payload)
