"""Hostile input against the whole agent (issue 12), over a real Mosquitto with the sensor-gateway
simulator publishing: one message must never stop a source or an asset, a source that crashes is
reported and restarted, and a flapping condition does not flood the events topic."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.agent import Agent, build_pipelines
from edge_agent.config import load_config
from edge_agent.types import Batch
from simulators.broker import Mosquitto
from simulators.process import start_sim
from tests.conftest import PERIOD, ROOT, SIGNALS, signing_keys
from tests.integration.test_mqtt_source import publish_raw
from tests.reliability.helpers import DedupSubscriber

pytestmark = pytest.mark.integration

FW = ROOT / "firmware_configs"
TELEMETRY = "plant/pump-1/pump-1/telemetry"


class _Watching(Agent):
    """The real agent, plus an event set whenever the asset has scored a window more."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.scored = asyncio.Event()

    def handle(self, batches: Sequence[Batch]) -> None:
        before = self.pipelines[0].stats.windows
        super().handle(batches)
        if self.pipelines[0].stats.windows > before:
            self.scored.set()

    async def windows_go_on(self, n: int, within: float) -> None:
        """Wait until the asset has scored `n` more windows."""
        start = self.pipelines[0].stats.windows

        async def more() -> None:
            while self.pipelines[0].stats.windows < start + n:
                self.scored.clear()
                await self.scored.wait()

        await asyncio.wait_for(more(), within)


def write_config(
    tmp_path: Path, bundle: Path, broker: int, source: dict[str, Any] | None = None, **obs: Any
) -> Path:
    backoff = {"initial_s": 0.1, "max_s": 0.5}
    cfg = {
        "identity": {"site": "hostile", "gateway": "gw-1"},
        "sources": [
            {"type": "mqtt", "name": "hub", "port": broker, "profile": "acme_sensor_gateway_mqtt",
             "backoff": backoff, **(source or {})},
        ],
        "assets": [
            {"name": "pump-mqtt", "sample_period_s": PERIOD, "bundle": str(bundle),
             "max_age_s": 1.0, "signals": [{"name": s, "source": "hub"} for s in SIGNALS]},
        ],
        "upstream": {"mqtt": {"port": broker, "backoff": backoff},
                     "outbox": {"dir": str(tmp_path / "state")}},
        "observability": {"metrics": {"port": 0}, **obs},
        "bundles": {"trusted_keys": [str(signing_keys()[1])]},
    }  # fmt: skip
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@asynccontextmanager
async def running(
    path: Path, before_start: Callable[[], None] | None = None
) -> AsyncIterator[_Watching]:
    cfg = load_config(path)
    if before_start is not None:
        before_start()
    agent = _Watching(cfg, build_pipelines(cfg))
    run = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), 20)
        yield agent
    finally:
        agent.stop.set()
        await asyncio.wait_for(run, 15)


@asynccontextmanager
async def gateway(tmp_path: Path, broker: int) -> AsyncIterator[None]:
    sim = start_sim(
        "mqtt",
        ["--profile", str(FW / "acme_sensor_gateway_mqtt.yaml"), "--broker-port", str(broker),
         "--period", str(PERIOD)],
        log=tmp_path / "sim.log",
    )  # fmt: skip
    try:
        yield
    finally:
        sim.stop()


def events(sub: DedupSubscriber, type_: str, subject: str) -> list[dict[str, Any]]:
    with sub._cond:
        return [
            b
            for t, b in sub.received
            if t.endswith("/events") and b["type"] == type_ and b.get("subject") == subject
        ]


def telemetry(ts: object, current: object = 50.0) -> bytes:
    """The gateway's telemetry document with the timestamp and motor current given, written by
    hand: json.dumps cannot write an integer beyond Python's 4,300-digit limit."""
    return (
        f'{{"ts": {json.dumps(ts)}, "motor": {{"current_a": {current}, "voltage_v": 400.0, '
        '"temperature_c": 60.0}, "fluid": {"temperature_c": 30.0}, '
        '"hydraulics": {"pressure_bar": 5.0, "flow_m3h": 100.0}}'
    ).encode()


async def test_a_number_of_4301_digits_does_not_stop_the_mqtt_source(
    tmp_path: Path, trained_bundle: Any, mosquitto: Mosquitto
) -> None:
    path = write_config(tmp_path, trained_bundle.directory, mosquitto.port)
    async with gateway(tmp_path, mosquitto.port), running(path) as agent:
        await agent.windows_go_on(1, 60)
        hostile = telemetry(time.time(), "9" * 4301)
        await asyncio.to_thread(publish_raw, mosquitto.port, [(TELEMETRY, hostile)])
        # Today's parser raised ValueError out of the source task: no more windows, ever.
        await agent.windows_go_on(20, 30)
        stats = agent.sources[0].stats
        assert getattr(stats, "malformed", 0) >= 1
        assert agent.source_faults == {}


async def test_a_missing_password_file_is_reported_and_retried_until_it_appears(
    tmp_path: Path, trained_bundle: Any, mosquitto: Mosquitto
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("anything\n")
    path = write_config(
        tmp_path, trained_bundle.directory, mosquitto.port,
        {"username": "edge", "password_file": str(secret)},
    )  # fmt: skip
    sub = DedupSubscriber(mosquitto.port, client_id="hostile-pw", topic="edge/+/+/events")
    try:
        # Validation found the file (a missing one is a config error, exit 2); it is gone by the
        # time the source connects (a credential store not mounted yet, a file rotated away).
        async with gateway(tmp_path, mosquitto.port), running(path, secret.unlink) as agent:
            await asyncio.to_thread(
                sub.wait_until, lambda s: bool(events(s, "source_offline", "hub")), 20
            )
            offline = events(sub, "source_offline", "hub")[0]
            assert "secret" in offline["details"]["reason"]
            assert sum(agent.source_faults["hub"].values()) >= 1
            # The supervisor keeps retrying: once the file is there, the source comes back.
            secret.write_text("anything\n")
            await agent.windows_go_on(5, 60)
            await asyncio.to_thread(
                sub.wait_until, lambda s: bool(events(s, "source_online", "hub")), 20
            )
            assert b'kind="crash_FileNotFoundError"' in agent.metrics.render()
    finally:
        sub.close()


async def test_one_message_stamped_in_2100_does_not_freeze_the_asset(
    tmp_path: Path, trained_bundle: Any, mosquitto: Mosquitto
) -> None:
    path = write_config(tmp_path, trained_bundle.directory, mosquitto.port)
    async with gateway(tmp_path, mosquitto.port), running(path) as agent:
        await agent.windows_go_on(1, 60)
        samples = agent.pipelines[0].stats.samples
        future = telemetry("2100-01-01T00:00:00Z")
        await asyncio.to_thread(publish_raw, mosquitto.port, [(TELEMETRY, future)])
        # Today the asset's clock jumped to 2100: every later reading was "out of order".
        await agent.windows_go_on(20, 30)
        assert agent.pipelines[0].stats.samples > samples + 20
        assert agent.clock_rejected["hub"]["ahead"] == 6  # the six readings of that message


async def test_readings_alternating_good_and_bad_are_folded_into_few_events(
    tmp_path: Path, trained_bundle: Any, mosquitto: Mosquitto
) -> None:
    path = write_config(tmp_path, trained_bundle.directory, mosquitto.port, event_period_s=2.0)
    sub = DedupSubscriber(mosquitto.port, client_id="hostile-storm", topic="edge/+/+/events")
    try:
        async with running(path) as agent:
            await asyncio.wait_for(agent.sources[0].subscribed.wait(), 20)  # type: ignore[attr-defined]
            flips = 300
            now = time.time()
            storm = [
                (TELEMETRY, telemetry(now, "null" if i % 2 == 0 else 50.0)) for i in range(flips)
            ]
            await asyncio.to_thread(publish_raw, mosquitto.port, storm)

            def stands_for(s: DedupSubscriber) -> int:
                return sum(
                    int((e.get("details") or {}).get("folded", 1))
                    for e in events(s, "data_quality", "hub")
                )

            # Every flip is accounted for (raised, cleared, raised, ...), in a handful of events.
            await asyncio.to_thread(sub.wait_until, lambda s: stands_for(s) >= flips, 30)
            got = events(sub, "data_quality", "hub")
            assert stands_for(sub) == flips
            assert len(got) <= 6, [e["message"] for e in got]
            assert got[-1]["severity"] == "info"  # the last state: all readings good again
            assert any("folded" in (e.get("details") or {}) for e in got)
    finally:
        sub.close()
