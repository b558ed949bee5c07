"""Hostile configs (issue 12, item 5): whatever `run` would die on, `validate` refuses first, by
the same code (`load_config`), with exit 2 and the field path; never a traceback or a hang."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.cli import main
from tests.conftest import ROOT

EXAMPLE = ROOT / "deploy" / "examples" / "pump-skid.yaml"
Mutate = Callable[[dict[str, Any], Path], None]


def _config(tmp_path: Path, mutate: Mutate | None = None) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["upstream"]["outbox"] = {"dir": str(tmp_path / "state")}
    if mutate is not None:
        mutate(data, tmp_path)
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _refused(path: Path, command: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run `edge-agent <command>`: it must exit 2 before doing anything; its stderr."""
    with pytest.raises(SystemExit) as exc:
        main([command, "--config", str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _set(section: str, key: str, value: object) -> Mutate:
    def mutate(d: dict[str, Any], tmp_path: Path) -> None:
        target = d
        for part in section.split("."):
            target = target.setdefault(part, {})
        target[key] = value

    return mutate


def _missing_ca(d: dict[str, Any], tmp_path: Path) -> None:
    d["upstream"]["mqtt"]["tls"] = {"ca_file": "certs/ca.pem"}


def _outbox_under_a_file(d: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    d["upstream"]["outbox"]["dir"] = str(tmp_path / "a-file" / "outbox")


def _mqtt_source_without_its_password(d: dict[str, Any], tmp_path: Path) -> None:
    d["sources"].append(
        {"type": "mqtt", "name": "hub", "host": "127.0.0.1", "profile": "acme_sensor_gateway_mqtt",
         "username": "u", "password_file": "hub.password"}
    )  # fmt: skip


CASES: dict[str, tuple[Mutate, str]] = {
    "empty broker host": (_set("upstream.mqtt", "host", ""), "upstream.mqtt.host: "),
    "broker host as a URL": (
        _set("upstream.mqtt", "host", "mqtt://broker:1883"),
        "upstream.mqtt.host: Value error, not a host name or IP address",
    ),
    "70,000-character site": (
        _set("identity", "site", "s" * 70_000),
        "identity.site: String should have at most 128 characters",
    ),
    "NUL in the gateway name": (_set("identity", "gateway", "gw\x00x"), "identity.gateway: "),
    "control character in the topic prefix": (
        _set("upstream.mqtt", "topic_prefix", "edge\x07"),
        "upstream.mqtt.topic_prefix: ",
    ),
    "missing TLS CA file": (_missing_ca, "upstream.mqtt.tls.ca_file: "),
    "outbox folder under a file": (_outbox_under_a_file, "upstream.outbox.dir: "),
    "source password file missing": (
        _mqtt_source_without_its_password,
        "sources[1].password_file: ",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_refused_with_the_field_path(
    case: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutate, expected = CASES[case]
    err = _refused(_config(tmp_path, mutate), command, capsys)
    assert expected in err
    if case == "missing TLS CA file":
        assert str(tmp_path / "certs" / "ca.pem") in err  # names the file, relative to the config


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_outbox_folder_not_writable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    err = _refused(
        _config(tmp_path, _set("upstream.outbox", "dir", str(locked / "q"))), "validate", capsys
    )
    assert "upstream.outbox.dir: " in err and "not writable" in err


def test_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"plant-a", b"plant-\xe4"))
    err = _refused(path, "validate", capsys)
    assert "not UTF-8 text (byte 0xe4" in err


def test_huge_config_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path)
    with path.open("a") as fh:  # 34 MB of comments: valid YAML, far too big for a config
        for _ in range(34):
            fh.write(("# " + "x" * 1021 + "\n") * 1024)
    err = _refused(path, "validate", capsys)  # by its size, before it is read
    assert "a config is at most 1048576 bytes" in err


def test_billion_laughs_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*{chr(96 + i)}"] * 9)
        levels.append(f"{chr(97 + i)}: &{chr(97 + i)} [{refs}]")
    path = tmp_path / "agent.yaml"
    path.write_text("\n".join(levels) + "\n")
    err = _refused(path, "validate", capsys)
    assert "once its aliases (*name) are expanded" in err


def test_a_valid_config_still_validates(tmp_path: Path) -> None:
    """The checks above refuse the bad, not the good: the example passes them (its bundle is
    not there, which validate reports after the config itself is accepted)."""
    from edge_agent.config import load_config

    cfg = load_config(_config(tmp_path))
    assert cfg.settings.identity.site == "plant-a"


def test_deep_nesting_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("profile_dirs: " + "[" * 50_000 + "]" * 50_000 + "\n")
    err = _refused(path, "validate", capsys)
    assert "nested too deeply" in err
