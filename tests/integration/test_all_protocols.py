"""One agent, three protocols at once: a Modbus TCP PLC, an OPC UA controller and an MQTT sensor
gateway (all simulators in subprocesses on free ports, a private Mosquitto), each feeding an
asset with the trained pump bundle. Done when every asset gets windows scored."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from edge_agent.agent import Agent, build_pipelines
from edge_agent.config import load_config
from edge_agent.types import Batch
from simulators.broker import Mosquitto
from simulators.process import start_modbus_sim, start_sim
from tests.conftest import PERIOD, PROFILE, ROOT, SIGNALS, signing_keys

pytestmark = pytest.mark.integration

FW = ROOT / "firmware_configs"


class _Watching(Agent):
    """The real agent, plus an event set once every asset has had a window scored."""

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.all_scored = asyncio.Event()
        self.sources_seen: set[str] = set()

    def handle(self, batches: Sequence[Batch]) -> None:
        super().handle(batches)
        self.sources_seen.update(b.source for b in batches)
        if all(p.stats.windows > 0 for p in self.pipelines):
            self.all_scored.set()


def config(tmp_path: Path, bundle: Path, modbus_port: int, opcua: str, broker: int) -> Path:
    def asset(name: str, source: str) -> dict[str, object]:
        # MQTT messages of one instant arrive on three topics with their own stamps: allow a
        # second of jitter on a loaded machine before a signal counts as stale.
        return {"name": name, "sample_period_s": PERIOD, "bundle": str(bundle), "max_age_s": 1.0,
                "signals": [{"name": s, "source": source} for s in SIGNALS]}  # fmt: skip

    backoff = {"initial_s": 0.2, "max_s": 1.0}
    cfg = {
        "identity": {"site": "test-site", "gateway": "gw-1"},
        "sources": [
            {"type": "modbus_tcp", "name": "plc", "host": "127.0.0.1", "port": modbus_port,
             "profile": "acme_pump_plc_fw1", "poll_interval_s": PERIOD, "backoff": backoff},
            {"type": "opcua", "name": "ua", "endpoint": opcua, "profile": "acme_pump_opcua",
             "poll_interval_s": PERIOD, "publishing_interval_ms": 20, "sampling_interval_ms": 20,
             "deadband": {"type": "percent", "value": 0.1}, "backoff": backoff},
            {"type": "mqtt", "name": "hub", "port": broker, "profile": "acme_sensor_gateway_mqtt",
             "backoff": backoff},
        ],
        "assets": [asset("pump-modbus", "plc"), asset("pump-opcua", "ua"),
                   asset("pump-mqtt", "hub")],
        "upstream": {"mqtt": {"port": broker, "backoff": backoff}},
        "bundles": {"trusted_keys": [str(signing_keys()[1])]},
        # Port 0: a fixed port collides with any other agent on the machine.
        "observability": {"metrics": {"port": 0}},
    }  # fmt: skip
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


async def test_agent_reads_modbus_opcua_and_mqtt_in_one_run(
    tmp_path: Path, trained_bundle, mosquitto: Mosquitto
) -> None:
    log = tmp_path / "sims.log"
    sims = [
        start_modbus_sim(PROFILE, port=0, log=log),
        start_sim("opcua", ["--profile", str(FW / "acme_pump_opcua.yaml"), "--port", "0",
                            "--tick", "0.02"], log=log),
        start_sim("mqtt", ["--profile", str(FW / "acme_sensor_gateway_mqtt.yaml"),
                           "--broker-port", str(mosquitto.port), "--period", str(PERIOD)],
                  log=log),
    ]  # fmt: skip
    try:
        path = config(
            tmp_path, trained_bundle.directory, sims[0].port, sims[1].address, mosquitto.port
        )
        cfg = load_config(path)
        agent = _Watching(cfg, build_pipelines(cfg))
        run = asyncio.create_task(agent.run())
        try:
            await asyncio.wait_for(agent.all_scored.wait(), 90)
        finally:
            agent.stop.set()
            await asyncio.wait_for(run, 10)
        assert agent.sources_seen == {"plc", "ua", "hub"}
        for p in agent.pipelines:
            assert p.stats.windows > 0 and not math.isnan(p.stats.last_score), p.name
    finally:
        for s in sims:
            s.stop()


def test_a_modbus_only_agent_does_not_import_opcua_or_mqtt_consumer(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"  # never loaded: only the sources are built
    cfg = {
        "identity": {"site": "s", "gateway": "g"},
        "sources": [{"type": "modbus_tcp", "name": "plc", "host": "127.0.0.1",
                     "profile": "acme_pump_plc_fw1"}],
        "assets": [{"name": "a", "sample_period_s": 1.0, "bundle": str(bundle),
                    "signals": [{"name": "motor_current", "source": "plc"}]}],
    }  # fmt: skip
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from edge_agent.agent import build_sources
        from edge_agent.config import load_config
        sources = build_sources(load_config(Path({str(path)!r})))
        mods = ("asyncua", "edge_agent.sources.opcua.source", "edge_agent.sources.mqtt.source")
        print(len(sources), *(m in sys.modules for m in mods))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # (aiomqtt itself may be loaded: the upstream publisher uses it.)
    assert out.stdout.split() == ["1", "False", "False", "False"], out.stderr
