"""The agent as a service: sd_notify to a socket standing in for systemd, /metrics, /healthz and
/readyz scraped over HTTP, `edge-agent status`, SIGHUP reloads (rejected config, new bundle,
broken bundle) observed on a real Mosquitto, and start-up errors that must not be retried."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from simulators.broker import free_port
from simulators.process import start_modbus_sim
from tests.conftest import PROFILE, SEED, SPEED, Subscriber, agent_config
from tests.integration.test_end_to_end import stop, validate

pytestmark = pytest.mark.integration


class FakeSystemd:
    """The receiving end of $NOTIFY_SOCKET: a real AF_UNIX datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.received: list[dict[str, str]] = []

    def wait_for(self, key: str, timeout: float, value: str | None = None) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            msg = dict(line.split("=", 1) for line in data.split("\n"))
            self.received.append(msg)
            if key in msg and (value is None or msg[key] == value):
                return msg
        raise TimeoutError(f"no {key} within {timeout} s; got {self.received}")


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, value = line.rsplit(" ", 1)
        if series.split("{", 1)[0] == name and all(
            f'{k}="{v}"' in series for k, v in labels.items()
        ):
            return float(value)
    raise KeyError(f"{name}{labels} not in metrics")


def write_config(
    path: Path, *, sim_port: int, broker_port: int, bundle: Path, metrics_port: int
) -> Path:
    agent_config(path, sim_port=sim_port, broker_port=broker_port, bundle=bundle)
    cfg = yaml.safe_load(path.read_text())
    cfg["observability"] = {"metrics": {"port": metrics_port}}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_service_lifecycle_metrics_health_and_reload(tmp_path, trained_bundle, mosquitto):
    sim = start_modbus_sim(PROFILE, seed=SEED, speed=SPEED, log=tmp_path / "sim.log")
    sub = Subscriber(mosquitto.port)
    systemd = FakeSystemd(tmp_path / "notify")
    bundle = tmp_path / "bundles" / "pump-1"
    shutil.copytree(trained_bundle.directory, bundle)
    metrics_port = free_port()
    cfg = write_config(
        tmp_path / "agent.yaml", sim_port=sim.port, broker_port=mosquitto.port, bundle=bundle,
        metrics_port=metrics_port,
    )  # fmt: skip
    env = {**os.environ, "NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "1000000"}
    log = tmp_path / "agent.log"
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(cfg)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        ready = systemd.wait_for("READY", timeout=30)
        assert ready["READY"] == "1" and "sources up" in ready["STATUS"]
        # Pings at half of WATCHDOG_USEC while the pipeline keeps up; STATUS with them.
        systemd.wait_for("WATCHDOG", timeout=5)
        ping = systemd.wait_for("WATCHDOG", timeout=5)
        assert "1/1 sources up" in ping["STATUS"] or "0/1 sources up" in ping["STATUS"]

        # Scored windows show up in the metrics.
        deadline = time.monotonic() + 30
        while True:
            code, body = get(metrics_port, "/metrics")
            assert code == 200
            text = body.decode()
            if metric(text, "edge_agent_asset_windows_total", asset="pump-1") >= 2:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.5)
        assert (
            metric(text, "edge_agent_source_readings_total", source="pump_plc", quality="good") > 0
        )
        assert metric(text, "edge_agent_source_connected", source="pump_plc") == 1
        assert metric(text, "edge_agent_inference_seconds_count", asset="pump-1") >= 2
        assert metric(text, "edge_agent_upstream_connected") == 1
        assert metric(text, "edge_agent_outbox_messages") >= 0
        assert metric(text, "edge_agent_outbox_oldest_age_seconds") >= 0
        version = trained_bundle.manifest.model_version
        assert metric(text, "edge_agent_model_info", asset="pump-1", model_version=version) == 1
        assert "edge_agent_asset_score{" in text

        code, body = get(metrics_port, "/healthz")
        assert code == 200 and json.loads(body)["status"] == "ok"
        code, body = get(metrics_port, "/readyz")
        assert code == 200 and json.loads(body)["broker_connected"] is True
        assert get(metrics_port, "/nope")[0] == 404
        status = subprocess.run(
            [sys.executable, "-m", "edge_agent", "status", "--config", str(cfg)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert status.returncode == 0, status.stdout + status.stderr
        assert "source pump_plc: connected" in status.stdout

        def event(kind: str, timeout: float = 20):  # type: ignore[no-untyped-def]
            m = sub.wait_for(lambda m: m.topic.endswith("/events") and m.body["type"] == kind,
                             timeout=timeout)  # fmt: skip
            validate(m.body)
            return m

        # 1. A config that fails validation is rejected; the agent keeps running.
        good = cfg.read_text()
        invalid = yaml.safe_load(good)
        invalid["assets"][0]["sample_period_s"] = -1
        cfg.write_text(yaml.safe_dump(invalid, sort_keys=False))
        agent.send_signal(signal.SIGHUP)
        rejected = event("config_rejected")
        assert rejected.body["severity"] == "error"
        errors = rejected.body["details"]["errors"]
        assert errors == ["assets[0].sample_period_s: Input should be greater than 0"], errors
        assert agent.poll() is None
        assert get(metrics_port, "/healthz")[0] == 200

        # 2. A bundle that fails verification (model file altered) is rejected, the old one kept.
        broken = tmp_path / "bundles" / "broken"
        shutil.copytree(trained_bundle.directory, broken)
        with (broken / "model.onnx").open("ab") as fh:
            fh.write(b"tampered")
        cfg.write_text(good.replace(str(bundle), str(broken)))
        agent.send_signal(signal.SIGHUP)
        model_rejected = event("model_rejected")
        assert model_rejected.body["details"]["kept_model_version"] == version

        # 3. A valid new bundle replaces the old one, the window buffer is kept, scoring goes on.
        windows_before = metric(get(metrics_port, "/metrics")[1].decode(),
                                "edge_agent_asset_windows_total", asset="pump-1")  # fmt: skip
        fresh = tmp_path / "bundles" / "pump-1-v2"
        shutil.copytree(trained_bundle.directory, fresh)
        cfg.write_text(good.replace(str(bundle), str(fresh)))
        agent.send_signal(signal.SIGHUP)
        loaded = event("model_loaded")
        assert loaded.body["subject"] == "pump-1" and loaded.body["details"]["window_kept"] is True
        deadline = time.monotonic() + 20
        while True:
            text = get(metrics_port, "/metrics")[1].decode()
            if metric(text, "edge_agent_asset_windows_total", asset="pump-1") > windows_before:
                break
            assert time.monotonic() < deadline, "no windows scored after the reload"
            time.sleep(0.5)
        for outcome in ("config_rejected", "model_rejected", "applied"):
            assert metric(text, "edge_agent_reloads_total", outcome=outcome) == 1
        assert agent.poll() is None

        agent.send_signal(signal.SIGTERM)
        systemd.wait_for("STOPPING", timeout=10)
        assert agent.wait(10) == 0
    finally:
        stop(agent)
        sim.stop()
        sub.close()
        systemd.sock.close()


def _run(cfg: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(cfg)],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_startup_errors_exit_2_with_a_clear_message(tmp_path, trained_bundle):
    # Nothing listens on these ports: the agent must fail before it would need them.
    cfg = tmp_path / "agent.yaml"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        write_config(
            cfg, sim_port=free_port(), broker_port=free_port(), bundle=trained_bundle.directory,
            metrics_port=busy.getsockname()[1],
        )  # fmt: skip
        r = _run(cfg)
        assert r.returncode == 2
        assert "observability.metrics: cannot listen on 127.0.0.1:" in r.stderr
    finally:
        busy.close()

    # State directory not writable (here: a path below a regular file).
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    data = yaml.safe_load(cfg.read_text())
    data["upstream"]["outbox"]["dir"] = str(blocker / "state")
    data["observability"]["metrics"]["port"] = 0
    cfg.write_text(yaml.safe_dump(data))
    r = _run(cfg)
    assert r.returncode == 2 and "upstream.outbox.dir" in r.stderr

    # Missing config.
    r = _run(tmp_path / "missing.yaml")
    assert r.returncode == 2 and "cannot read config" in r.stderr
    assert "Traceback" not in r.stderr

    # `status` against an agent that is not running: unhealthy, not a crash.
    data["observability"]["metrics"]["port"] = free_port()
    cfg.write_text(yaml.safe_dump(data))
    r = subprocess.run([sys.executable, "-m", "edge_agent", "status", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 1 and "no answer" in r.stdout
