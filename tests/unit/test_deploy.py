"""deploy/: the systemd unit passes `systemd-analyze verify` and rates "OK" or better in
`systemd-analyze security` (dev.sh installs systemd's tools; these checks work offline, without
systemd running); install.sh in --dry-run and into a --root prefix, twice, then uninstalled."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "edge-agent.service"
INSTALL = ROOT / "deploy" / "install.sh"
EXEC = "/opt/edge-agent/venv/bin/edge-agent"

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    analyze is None, reason="systemd-analyze missing (dev.sh installs the systemd package)"
)


def _unit_for_verify(tmp_path: Path) -> Path:
    """The unit with ExecStart= pointing at a stand-in executable: verify checks that the
    binary exists, and /opt/edge-agent is not installed here. Nothing else changes."""
    exe = tmp_path / "edge-agent"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = tmp_path / "edge-agent.service"
    text = UNIT.read_text()
    assert EXEC in text
    unit.write_text(text.replace(EXEC, str(exe)))
    return unit


@needs_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    r = subprocess.run(
        [str(analyze), "verify", str(_unit_for_verify(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # Unknown or misspelt directives are only warnings (exit 0): any output is a failure.
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


@needs_analyze
def test_unit_security_exposure_is_ok_or_better() -> None:
    r = subprocess.run(
        [str(analyze), "security", "--offline=true", "--threshold=29", str(UNIT)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for edge-agent\.service: ([\d.]+) (\w+)", r.stdout)
    assert found, r.stdout + r.stderr
    assert float(found.group(1)) <= 2.9 and found.group(2) in ("OK", "SAFE"), found.group(0)
    assert r.returncode == 0, r.stderr  # --threshold=29: exposure above 2.9 fails


def test_unit_has_the_service_contract() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=2",
        "DynamicUser=yes", "SupplementaryGroups=dialout", "StateDirectory=edge-agent",
        "ConfigurationDirectory=edge-agent", "LoadCredential=mqtt-password:",
        "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "ExecReload=/bin/kill -HUP $MAINPID",
    ):  # fmt: skip
        assert line in text, line


def _install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60)


def test_install_dry_run_prints_and_changes_nothing(tmp_path: Path) -> None:
    r = _install("--dry-run", "--root", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert list(tmp_path.iterdir()) == []
    out = r.stdout
    for expected in (
        f"would run: install -d -m 0755 {tmp_path}/opt/edge-agent {tmp_path}/etc/edge-agent",
        f"-m venv {tmp_path}/opt/edge-agent/venv",
        f"{tmp_path}/opt/edge-agent/venv/bin/python -m pip install --quiet --upgrade {ROOT}",
        f"{tmp_path}/etc/edge-agent/agent.yaml",
        f"{tmp_path}/var/lib/edge-agent/bundles",
        f"{tmp_path}/etc/systemd/system/edge-agent.service",
    ):
        assert expected in out, (expected, out)
    r = _install("--dry-run", "--root", str(tmp_path), "--uninstall", "--purge")
    assert r.returncode == 0 and list(tmp_path.iterdir()) == []


def test_install_into_a_root_is_idempotent_and_uninstalls(tmp_path: Path) -> None:
    r = _install("--root", str(tmp_path), "--skip-python")
    assert r.returncode == 0, r.stdout + r.stderr
    config = tmp_path / "etc/edge-agent/agent.yaml"
    unit = tmp_path / "etc/systemd/system/edge-agent.service"
    credential = tmp_path / "etc/edge-agent/credentials/mqtt-password"
    assert unit.read_text() == UNIT.read_text()
    assert config.exists() and (tmp_path / "var/lib/edge-agent/bundles").is_dir()
    assert credential.stat().st_mode & 0o777 == 0o600
    profile = tmp_path / "etc/edge-agent/firmware_configs/acme_pump_plc_fw1.yaml"
    assert profile.read_text() == (ROOT / "firmware_configs/acme_pump_plc_fw1.yaml").read_text()
    if shutil.which("systemctl"):
        assert (
            tmp_path / "etc/systemd/system/multi-user.target.wants/edge-agent.service"
        ).is_symlink()

    # Again, after the operator edited the config and set the password: both are kept.
    config.write_text("# edited\n")
    credential.write_text("secret\n")
    profile.write_text("# local edit\n")
    r = _install("--root", str(tmp_path), "--skip-python")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "keeping existing" in r.stdout
    assert config.read_text() == "# edited\n" and credential.read_text() == "secret\n"
    assert profile.read_text() == "# local edit\n"

    r = _install("--root", str(tmp_path), "--uninstall")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not unit.exists() and not (tmp_path / "opt/edge-agent").exists()
    assert config.exists() and (tmp_path / "var/lib/edge-agent").is_dir()
    r = _install("--root", str(tmp_path), "--uninstall", "--purge")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (tmp_path / "etc/edge-agent").exists()
    assert not (tmp_path / "var/lib/edge-agent").exists()


def test_install_rejects_unknown_options() -> None:
    r = _install("--frobnicate")
    assert r.returncode == 2 and "unknown option" in r.stderr


def test_container_files_are_consistent(tmp_path: Path) -> None:
    """No container engine here: check what can be checked without one. The compose file's
    agent config validates against the shipped profiles, and every file they name exists."""
    import yaml

    from edge_agent.config import load_config

    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    assert set(compose["services"]) == {"mosquitto", "pump-sim", "agent"}
    build = compose["services"]["pump-sim"]["build"]
    assert (ROOT / "deploy" / build["context"] / build["dockerfile"]).is_file()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and not source.endswith("bundles"):
                assert (ROOT / "deploy" / source).is_file(), source
    containerfile = (ROOT / "deploy/Containerfile").read_text()
    for copied in ("pyproject.toml", "README.md", "edge_agent", "simulators", "firmware_configs"):
        copy_lines = [ln.split() for ln in containerfile.splitlines() if ln.startswith("COPY ")]
        assert any(copied in words for words in copy_lines), copied
        assert (ROOT / copied).exists(), copied
    # Stages: the gateway image (the last, default one) and the stage it copies its venv from
    # hold no tooling; the simulators are their own target, the one compose builds pump-sim from.
    stages = {}
    for chunk in containerfile.split("\nFROM ")[1:]:
        head, _, body = chunk.partition("\n")
        stages[head.split(" AS ")[-1] if " AS " in head else "gateway"] = body
    assert build["target"] == "simulators" and "simulators" in stages
    for name in ("build", "gateway"):
        copies = [ln for ln in stages[name].splitlines() if ln.startswith("COPY ")]
        assert not [ln for ln in copies if any(t in ln for t in ("simulators", "bench", "tools"))]

    shutil.copy(ROOT / "deploy/container/agent.yaml", tmp_path / "agent.yaml")
    shutil.copytree(ROOT / "firmware_configs", tmp_path / "firmware_configs")
    cfg = load_config(tmp_path / "agent.yaml")
    assert cfg.settings.observability.metrics.port == 9810
    assert cfg.settings.upstream.mqtt.host == "mosquitto"
