import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge_agent.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "pump-skid.yaml"


def write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    mutate(data)
    p = tmp_path / "agent.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.errors


def test_example_config_parses():
    cfg = load_config(EXAMPLE)
    assert cfg.settings.sources[0].name == "pump_plc"
    assert cfg.profiles["pump_plc"].model == "PumpGuard 200"


def test_every_error_has_its_field_path(tmp_path):
    def mutate(d):
        d["sources"][0]["port"] = 70000
        d["sources"][0]["timeout_s"] = -1
        d["assets"][0]["sample_period_s"] = 0
        d["upstream"]["mqtt"]["qos"] = 2
        d["identity"]["colour"] = "blue"

    errs = errors_of(write(tmp_path, mutate))
    assert "sources[0].port: Input should be less than or equal to 65535" in errs
    assert any(e.startswith("sources[0].timeout_s: ") for e in errs)
    assert any(e.startswith("assets[0].sample_period_s: ") for e in errs)
    assert any(e.startswith("upstream.mqtt.qos: ") for e in errs)
    assert any(e.startswith("identity.colour: ") for e in errs)


def test_unknown_source_type_and_references(tmp_path):
    errs = errors_of(write(tmp_path, lambda d: d["sources"][0].update(type="profibus")))
    assert any(e.startswith("sources[0]") and "modbus_tcp" in e for e in errs)

    def bad_refs(d):
        d["assets"][0]["signals"][1]["source"] = "nope"
        d["assets"][0]["signals"][2]["name"] = "vibration_xx"

    errs = errors_of(write(tmp_path, bad_refs))
    assert any(e.startswith("assets[0].signals[1].source: unknown source 'nope'") for e in errs)
    assert any(e.startswith("assets[0].signals[2].point: 'vibration_xx'") for e in errs)


def test_missing_profile(tmp_path):
    errs = errors_of(write(tmp_path, lambda d: d["sources"][0].update(profile="no_such_device")))
    assert errs[0].startswith("sources[0].profile: device profile 'no_such_device' not found")


def test_environment_overrides_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_AGENT_UPSTREAM__MQTT__PORT", "1999")
    monkeypatch.setenv("EDGE_AGENT_IDENTITY__GATEWAY", "gw-env")
    cfg = load_config(write(tmp_path, lambda d: None))
    assert cfg.settings.upstream.mqtt.port == 1999
    assert cfg.settings.identity.gateway == "gw-env"
    assert cfg.settings.identity.site == "plant-a"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *args], capture_output=True, text=True, timeout=60
    )


def test_validate_exits_2_with_paths_and_no_traceback(tmp_path):
    path = write(tmp_path, lambda d: d["sources"][0].update(port=70000))
    r = run_cli("validate", "--config", str(path))
    assert r.returncode == 2
    assert "sources[0].port: Input should be less than or equal to 65535" in r.stderr
    assert "Traceback" not in r.stderr


def test_unreadable_and_malformed_files_exit_2(tmp_path):
    r = run_cli("validate", "--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "cannot read config" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("identity: [unclosed\n")
    r = run_cli("run", "--config", str(bad))
    assert r.returncode == 2 and "not valid YAML" in r.stderr and "Traceback" not in r.stderr


def test_validate_reports_missing_bundle(tmp_path):
    r = run_cli("validate", "--config", str(EXAMPLE))
    assert r.returncode == 2
    assert "no manifest" in r.stderr


def test_new_source_types_parse_and_errors_keep_field_paths(tmp_path):
    def three_protocols(d):
        d["sources"] += [
            {"type": "opcua", "name": "ua", "endpoint": "opc.tcp://10.0.0.6:4840",
             "profile": "acme_pump_opcua", "deadband": {"type": "percent", "value": 1}},
            {"type": "mqtt", "name": "hub", "profile": "acme_sensor_gateway_mqtt"},
            {"type": "modbus_rtu", "name": "rtu1", "serial_port": "/dev/ttyUSB0", "unit_id": 1,
             "profile": "acme_pump_plc_fw2"},
        ]  # fmt: skip
        d["assets"][0]["signals"].append({"name": "flow2", "source": "hub", "point": "flow_rate"})

    cfg = load_config(write(tmp_path, three_protocols))
    assert [s.type for s in cfg.settings.sources][1:] == ["opcua", "mqtt", "modbus_rtu"]

    def broken(d):
        three_protocols(d)
        d["sources"][1]["security"] = {"policy": "Basic256Sha256", "mode": "Sign"}
        d["sources"][3]["unit_id"] = 300
        d["sources"].append(dict(d["sources"][3], name="rtu2", unit_id=2, baudrate=9600))

    errs = errors_of(write(tmp_path, broken))
    assert any(e.startswith("sources[1].security: ") and "certificate" in e for e in errs), errs
    assert any(e.startswith("sources[3].unit_id: ") for e in errs), errs


def test_profile_protocol_must_match_source_type_and_rtu_lines_must_agree(tmp_path):
    def wrong(d):
        d["sources"].append({"type": "opcua", "name": "ua", "endpoint": "opc.tcp://h:4840",
                             "profile": "acme_pump_plc_fw1"})  # fmt: skip
        for n, baud in (("r1", 19200), ("r2", 9600)):
            d["sources"].append({"type": "modbus_rtu", "name": n, "serial_port": "/dev/ttyS1",
                                 "profile": "acme_pump_plc_fw2", "baudrate": baud})  # fmt: skip

    errs = errors_of(write(tmp_path, wrong))
    assert any("is a modbus profile; a opcua source needs a opcua profile" in e for e in errs)
    assert any(e.startswith("sources[3]: shares serial port /dev/ttyS1") for e in errs), errs


def test_string_points_are_not_signals(tmp_path):
    def strings(d):
        d["sources"].append({"type": "modbus_tcp", "name": "fw2", "host": "h",
                             "profile": "acme_pump_plc_fw2"})  # fmt: skip
        d["assets"][0]["signals"].append({"name": "sn", "source": "fw2", "point": "serial_number"})

    errs = errors_of(write(tmp_path, strings))
    assert any("serial_number" in e and "strings are not signals" in e for e in errs), errs
