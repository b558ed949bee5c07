"""A graceful stop delivers what is queued (bounded), instead of leaving alerts raised just
before it in the outbox until the next start. Real Mosquitto, the real publisher."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from simulators.broker import Mosquitto
from tests.reliability.helpers import DedupSubscriber, publisher, synthetic_alerts

pytestmark = pytest.mark.integration


async def test_flush_waits_until_everything_queued_is_acknowledged(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    sub = DedupSubscriber(broker.port)
    pub = publisher(broker.port, tmp_path / "state")
    task = asyncio.create_task(pub.run())
    plan = synthetic_alerts(assets=2, per_asset=50)
    try:
        await asyncio.wait_for(pub.connected.wait(), 10)
        for body in plan:  # submitted in one burst, as a stop right after a fault would see
            pub.submit_alert(str(body["asset"]), body)
        assert pub.outbox.stats.queued > 0
        assert await pub.flush(10.0)
        assert pub.outbox.stats.queued == 0
        await asyncio.to_thread(sub.wait_until, lambda s: len(s.unique_alerts()) == 100, 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sub.close()
        broker.stop()


async def test_flush_returns_at_once_without_a_broker(tmp_path: Path) -> None:
    pub = publisher(1, tmp_path / "state")  # nothing listens on port 1: never connected
    pub.submit_alert("pump-1", synthetic_alerts(assets=1, per_asset=1)[0])
    assert not await asyncio.wait_for(pub.flush(30.0), 1.0)
    assert pub.outbox.stats.queued == 1  # still held durably for the next start
    pub.outbox.close()
