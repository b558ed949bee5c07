"""Upstream config keys (protocol, TLS, password sources, outbox, telemetry) and the message
builders for events and telemetry, validated against their JSON Schemas."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from edge_agent.alerts.messages import (
    EVENT_TYPES,
    event_payload,
    load_schema,
    telemetry_payload,
)
from edge_agent.cli import _read_password
from edge_agent.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "pump-skid.yaml"


def config(tmp_path: Path, **upstream: object) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    for key, value in upstream.items():
        section, _, field = key.partition("__")
        data["upstream"].setdefault(section, {})[field] = value
    p = tmp_path / "agent.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.errors


@pytest.mark.parametrize(("value", "expected"), [(5, "5"), ("5", "5"), ("3.1.1", "3.1.1")])
def test_protocol_accepts_both_spellings(tmp_path, value, expected):
    cfg = load_config(config(tmp_path, mqtt__protocol=value))
    assert cfg.settings.upstream.mqtt.protocol == expected


def test_bad_upstream_values_are_reported_with_their_path(tmp_path):
    errs = errors(
        config(
            tmp_path,
            mqtt__protocol=4,
            mqtt__tls={"ca_file": "ca.pem", "cert_file": "c.pem"},
            outbox__max_messages=3,
            outbox__synchronous="sometimes",
            telemetry__interval_s=0,
        )
    )
    assert any(e.startswith("upstream.mqtt.protocol: ") for e in errs)
    assert any(e.startswith("upstream.mqtt.tls: ") and "go together" in e for e in errs)
    assert any(e.startswith("upstream.outbox.max_messages: ") for e in errs)
    assert any(e.startswith("upstream.outbox.synchronous: ") for e in errs)
    assert any(e.startswith("upstream.telemetry.interval_s: ") for e in errs)


def test_password_from_file_credential_or_env(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("from-file\n")
    cfg = load_config(config(tmp_path, mqtt__password_file="pw"))
    assert _read_password(cfg) == "from-file"

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = load_config(config(tmp_path, mqtt__password_credential="mqtt-password"))
    assert _read_password(cfg) == "from-systemd"

    monkeypatch.setenv("MY_MQTT_PW", "from-env")
    cfg = load_config(config(tmp_path, mqtt__password_env="MY_MQTT_PW"))
    assert _read_password(cfg) == "from-env"


def test_unreadable_password_file_exits_2_naming_the_field_not_the_secret(tmp_path, capsys):
    with pytest.raises(
        ConfigError, match=r"upstream\.mqtt\.password_file: .*missing does not exist"
    ):
        load_config(config(tmp_path, mqtt__password_file="missing"))
    # Gone between validation and start: still the field, never a traceback or the secret.
    (tmp_path / "secret").write_text("hunter2\n")
    cfg = load_config(config(tmp_path, mqtt__password_file="secret"))
    (tmp_path / "secret").unlink()
    with pytest.raises(SystemExit) as exc:
        _read_password(cfg)
    assert exc.value.code == 2
    assert "upstream.mqtt.password_file" in capsys.readouterr().err


def test_credential_without_systemd_is_a_config_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    cfg = load_config(config(tmp_path, mqtt__password_credential="mqtt-password"))
    with pytest.raises(SystemExit) as exc:
        _read_password(cfg)
    assert exc.value.code == 2
    assert "CREDENTIALS_DIRECTORY" in capsys.readouterr().err


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        load_schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_every_event_type_validates_and_the_schema_lists_exactly_them():
    v = validator("event")
    for t in EVENT_TYPES:
        v.validate(event_payload(t, "info", "m", "s", "g", 1.8e9, subject="x", details={"n": 1}))
    assert set(load_schema("event")["properties"]["type"]["enum"]) == set(EVENT_TYPES)
    with pytest.raises(ValueError):
        event_payload("made_up", "info", "m", "s", "g", 1.8e9)
    bad = event_payload("model_loaded", "info", "m", "s", "g", 1.8e9)
    bad["severity"] = "fatal"
    assert not v.is_valid(bad)


def test_telemetry_payload_validates():
    validator("telemetry").validate(telemetry_payload("s", "g", "pump-1", 1.8e9, 0.3, 0.5, "m"))


async def test_agent_turns_source_transitions_into_events(tmp_path):
    import json

    from edge_agent.agent import Agent
    from edge_agent.types import Batch, Quality, Reading

    agent = Agent(load_config(config(tmp_path, outbox__dir=str(tmp_path / "state"))), [])
    good = Batch("pump_plc", 1.0, (Reading("a", 1.0), Reading("b", 2.0)))
    bad = Batch("pump_plc", 2.0, (Reading("a", 1.0), Reading("b", 0.0, Quality.BAD)))
    for up, batch in [(False, good), (True, good), (True, good), (True, bad), (True, bad),
                      (True, good), (False, good)]:  # fmt: skip
        agent._watch_connection("pump_plc", up)
        if up:
            agent._watch_quality(batch)
    events = [json.loads(s.message.payload) for s in agent.publisher.outbox.peek(100)]
    v = validator("event")
    for e in events:
        v.validate(e)
    assert [(e["type"], e["severity"]) for e in events] == [
        ("source_offline", "warning"),
        ("source_online", "info"),
        ("data_quality", "warning"),
        ("data_quality", "info"),
        ("source_offline", "warning"),
    ]
    assert events[2]["details"] == {"points": ["b"]}
    assert all(e["subject"] == "pump_plc" for e in events)
