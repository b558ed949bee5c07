"""The service monitor pings the watchdog only while the pipeline makes progress, and reports a
stall on STATUS= and /healthz (a real datagram socket stands in for systemd)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from types import SimpleNamespace

from edge_agent.observability.sdnotify import Notifier
from edge_agent.observability.service import ServiceMonitor


class FakeAgent:
    def __init__(self) -> None:
        self.sources = [SimpleNamespace(name="plc", stats=SimpleNamespace(connected=True))]
        self.pipelines: list[object] = []
        self.publisher = SimpleNamespace(
            stats=SimpleNamespace(connected=True),
            outbox=SimpleNamespace(stats=SimpleNamespace(queued=0)),
        )
        self.sources_started = asyncio.Event()
        self.ok = True
        self.queue_depth = 0
        self.last_progress = time.monotonic()
        self.models = {"pump-1": "v1"}
        self.unsigned_models: list[str] = []
        self.loop_faults: dict[str, dict[str, int]] = {}

        self.stalled_sources: dict[str, float] = {}
        self.stalled_assets: dict[str, float] = {}

    def progressing(self) -> bool:
        return self.ok

    def source_stalls(self) -> dict[str, float]:
        return self.stalled_sources

    def asset_stalls(self) -> dict[str, float]:
        return self.stalled_assets


def test_health_names_stalled_sources_and_assets_not_scoring() -> None:
    agent = FakeAgent()
    monitor = ServiceMonitor(agent, Notifier(None, None))  # type: ignore[arg-type]
    assert monitor.health()[0]
    agent.stalled_sources = {"plc": 45.0}
    ok, body = monitor.health()
    assert not ok and body["status"] == "degraded" and body["sources_stalled"] == {"plc": 45.0}
    agent.stalled_sources, agent.stalled_assets = {}, {"pump-1": 61.0}
    ok, body = monitor.health()
    assert not ok and body["assets_not_scoring"] == {"pump-1": 61.0}


def _drain(sock: socket.socket) -> list[dict[str, str]]:
    out = []
    while True:
        try:
            data = sock.recv(4096).decode()
        except BlockingIOError:
            return out
        out.append(dict(line.split("=", 1) for line in data.split("\n")))


def test_watchdog_pings_stop_while_stalled(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.setblocking(False)

    async def main() -> None:
        agent = FakeAgent()
        monitor = ServiceMonitor(agent, Notifier(path, "40000"))  # type: ignore[arg-type]
        task = asyncio.create_task(monitor.run())
        await asyncio.sleep(0.1)
        assert _drain(rx) == [] and not monitor.started  # not READY before the sources run
        agent.sources_started.set()
        await asyncio.sleep(0.2)
        msgs = _drain(rx)
        assert msgs[0]["READY"] == "1"
        assert sum("WATCHDOG" in m for m in msgs) >= 3
        assert monitor.readiness()[0] and monitor.health()[0]

        agent.ok = False
        agent.queue_depth = 7
        await asyncio.sleep(0.2)
        msgs = _drain(rx)
        assert msgs and not any("WATCHDOG" in m for m in msgs)
        assert all(m["STATUS"].startswith("stalled") for m in msgs)
        assert monitor.health()[1]["status"] == "stalled"

        agent.ok = True
        await asyncio.sleep(0.2)
        assert any("WATCHDOG" in m for m in _drain(rx))
        monitor.stopping()
        assert _drain(rx) == [{"STOPPING": "1", "STATUS": "stopping"}]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        rx.close()
