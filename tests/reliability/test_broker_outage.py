"""(a) The broker goes away while alerts keep coming and comes back later: every alert arrives,
each (alert_id, event) once after de-duplication, in order per asset. (d) A flood of 10,000
queued alerts drains completely while the publisher's memory stays bounded.

Real Mosquitto, real SQLite outbox, the real publisher in this process, fed synthetic alerts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from simulators.broker import Mosquitto, free_port
from tests.reliability.helpers import (
    DedupSubscriber,
    persistence,
    publisher,
    synthetic_alerts,
    validate,
    wait_until,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def per_asset(bodies: list[dict[str, object]]) -> dict[str, list[tuple[object, object]]]:
    out: dict[str, list[tuple[object, object]]] = {}
    for b in bodies:
        out.setdefault(str(b["asset"]), []).append((b["alert_id"], b["event"]))
    return out


async def test_every_alert_arrives_once_in_order_across_a_broker_outage(tmp_path: Path) -> None:
    workdir = tmp_path / "broker"
    broker = Mosquitto(workdir, extra_config=persistence(workdir)).start()
    sub = DedupSubscriber(broker.port)
    pub = publisher(broker.port, tmp_path / "state")
    task = asyncio.create_task(pub.run())
    plan = synthetic_alerts(assets=3, per_asset=20)  # 60 events
    try:
        await asyncio.wait_for(pub.connected.wait(), 10)
        for body in plan[:15]:
            pub.submit_alert(str(body["asset"]), body)
            await asyncio.sleep(0.005)  # pacing like a live pipeline, not synchronization
        await asyncio.to_thread(sub.wait_until, lambda s: len(s.unique_alerts()) >= 5, 10)

        await asyncio.to_thread(broker.stop)  # outage starts, possibly mid-batch
        await wait_until(lambda: not pub.connected.is_set(), 10, "the publisher to notice")
        for body in plan[15:]:
            pub.submit_alert(str(body["asset"]), body)
            await asyncio.sleep(0.005)
        assert pub.outbox.stats.queued > 0  # held durably while the broker is away
        assert not pub.connected.is_set()

        await asyncio.to_thread(broker.start)  # same port, sessions restored from disk
        await asyncio.to_thread(sub.wait_until, lambda s: len(s.unique_alerts()) == 60, 30)
        await wait_until(lambda: pub.outbox.stats.queued == 0, 10, "the outbox to empty")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sub.close()
        broker.stop()

    got = sub.unique_alerts()
    assert per_asset(got) == per_asset(plan)  # all of them, in order per asset
    assert pub.stats.connects >= 2
    for _, body in sub.received:
        validate(body)
    # Anything beyond 60 is a redelivery, which de-duplication absorbs.
    assert len(sub.alerts()) >= 60


async def test_a_flood_of_ten_thousand_queued_alerts_drains_with_bounded_memory(
    tmp_path: Path,
) -> None:
    port = free_port()
    pub = publisher(port, tmp_path / "state")
    plan = synthetic_alerts(assets=10, per_asset=1000)
    payload_bytes = sum(len(json.dumps(b)) for b in plan)
    for body in plan:  # no broker yet: all 10,000 go to the outbox on disk
        pub.submit_alert(str(body["asset"]), body)
    assert pub.outbox.stats.queued == 10_000

    with Mosquitto(tmp_path / "broker", port=port) as broker:
        consumer = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
            [sys.executable, str(ROOT / "docs/examples/subscriber.py"), "--port",
             str(broker.port), "--count", "10000", "--quiet"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert consumer.stdout is not None
            assert "subscribed" in await asyncio.to_thread(consumer.stdout.readline)
            tracemalloc.start()
            base, _ = tracemalloc.get_traced_memory()
            task = asyncio.create_task(pub.run())
            try:
                await wait_until(lambda: pub.outbox.stats.queued == 0, 60, "the drain")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            out, _ = await asyncio.to_thread(consumer.communicate, timeout=30)
        finally:
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["unique"] == 10_000
    assert pub.stats.published >= 10_000
    # The old in-memory queue held every payload; the outbox keeps at most a batch in memory.
    assert payload_bytes > 10_000_000
    assert peak - base < 5_000_000, f"peak {peak - base} bytes while draining"
