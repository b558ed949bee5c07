"""A running agent imports what its configured sources and features need (issue 16): with one
Modbus source, the OPC UA stack (asyncua) and the training stack (torch) stay out of its
memory, and so do the features it is not configured for: fleet commands, the input recorder
and the CSV reader, the development tools' commands, and the Prometheus client when metrics
are off. Checked on the real `edge-agent run` in its own process, polling a real Modbus
simulator: the process writes its `sys.modules` when it exits after SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from simulators.process import start_modbus_sim
from tests.conftest import PROFILE, SEED, SPEED, agent_config

pytestmark = pytest.mark.integration

PROBE = """
import atexit, json, sys
from edge_agent.cli import main
out = sys.argv.pop()
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("metrics", [True, False], ids=["metrics-on", "metrics-off"])
def test_modbus_only_agent_loads_no_opcua_or_torch(  # type: ignore[no-untyped-def]
    tmp_path: Path, mosquitto, trained_bundle, metrics: bool
):
    sim = start_modbus_sim(PROFILE, seed=SEED, port=0, speed=SPEED)
    modules_file = tmp_path / "modules.json"
    cfg = agent_config(
        tmp_path / "agent.yaml", sim_port=sim.port, broker_port=mosquitto.port,
        bundle=trained_bundle.directory,
    )  # fmt: skip
    doc = yaml.safe_load(cfg.read_text())
    doc["observability"]["metrics"]["enabled"] = metrics
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(
        [sys.executable, "-c", PROBE, "run", "--config", str(cfg), str(modules_file)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        # Running for real: the simulator has served this agent's polls.
        deadline = time.monotonic() + 60
        while sim.requests_served() < 5:
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()
            assert time.monotonic() < deadline, "the agent never polled the simulator"
            time.sleep(0.2)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0, (tmp_path / "agent.log").read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(5)
        sim.stop()
    modules = set(json.loads(modules_file.read_text()))
    assert {"pymodbus", "onnxruntime", "edge_agent.sources.modbus"} <= modules
    loaded = {m for m in ("asyncua", "torch") if m in modules}
    assert loaded == set()
    # The OPC UA package's config models belong to the config schema; its client does not.
    opcua = {m for m in modules if m.startswith("edge_agent.sources.opcua")}
    assert opcua <= {f"edge_agent.sources.opcua{m}" for m in ("", ".config", ".profile")}
    assert not any(m.startswith("edge_agent.training") for m in modules)
    # Features this configuration does not use (no fleet, no --record-dir), and the tools'
    # commands (`bench`, `demo`: installed beside the agent in a checkout) that `run` never needs.
    lazy = {
        "edge_agent.fleet.agent_side", "edge_agent.recorder", "edge_agent.csvdata", "tarfile",
        "bench", "simulators",
    }  # fmt: skip
    assert lazy & modules == set()
    # Metrics: the client loads exactly when they are served (so the check can see it).
    assert ("prometheus_client" in modules) is metrics
