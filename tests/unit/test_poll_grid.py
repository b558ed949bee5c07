"""Polled sources read on one wall-clock grid, and the pipeline handles an instant's batches
together (so assets that share a model are scored in one detector call)."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import pytest
import yaml

from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.sources.base import next_poll
from edge_agent.types import Batch, Reading

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "pump-skid.yaml"
NOW = 1_800_000_000.0


@pytest.mark.parametrize("interval", [1.0, 0.1, 0.05, 0.25, 7.0, 60.0])
def test_polls_land_on_multiples_of_the_interval_one_after_another(interval: float) -> None:
    start = NOW + 0.3 * interval  # a source starts between two instants: reads at once
    ts = next_poll(start, start + 0.001, interval)
    assert ts > start and ts - start <= interval
    for _ in range(1000):
        assert abs(ts / interval - round(ts / interval)) < 1e-6  # on the grid
        nxt = next_poll(ts, ts + 0.002, interval)  # the read took 2 ms
        assert abs(nxt - ts - interval) < 1e-6  # the next one (float64 at 1.8e9 s), not again
        ts = nxt


def test_a_slow_read_skips_the_instants_it_overran() -> None:
    # A read that took 3.5 intervals: the next read is the first instant not yet past.
    assert next_poll(NOW, NOW + 3.5, 1.0) == NOW + 4.0
    # Exactly on an instant (the float rounding of k * interval): read at it, once.
    assert next_poll(NOW, NOW + 2.0, 1.0) == NOW + 2.0
    # Two sources with the same interval, started apart: the same instants from then on.
    a = next_poll(NOW + 0.13, NOW + 0.14, 0.5)
    b = next_poll(NOW + 0.41, NOW + 0.42, 0.5)
    assert a == b == NOW + 0.5


def agent_polling(tmp_path: Path, devices: int) -> Agent:
    """An agent of the example config with `devices` Modbus sources (no pipelines)."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["upstream"].setdefault("outbox", {})["dir"] = str(tmp_path / "state")
    data["observability"] = {"metrics": {"enabled": False}}
    for i in range(2, devices + 1):
        more = copy.deepcopy(data["sources"][0])
        more["name"] = f"pump_plc_{i}"
        data["sources"].append(more)
    p = tmp_path / "agent.yaml"
    p.write_text(yaml.safe_dump(data))
    return Agent(load_config(p), [])


def batch(source: str) -> Batch:
    return Batch(source, NOW, (Reading("a", 1.0),))


async def test_an_instants_batches_are_handled_together_and_none_is_waited_for_long(
    tmp_path: Path,
) -> None:
    agent = agent_polling(tmp_path, 2)
    agent._gather_s = 30.0  # the second batch, not the deadline, must end the gathering
    group = [batch("pump_plc")]
    gathering = asyncio.create_task(agent._gather(group))
    await asyncio.sleep(0)  # it waits for the second polled source
    assert not gathering.done()
    agent._queue.put_nowait(batch("pump_plc_2"))
    await asyncio.wait_for(gathering, 5.0)
    assert [b.source for b in group] == ["pump_plc", "pump_plc_2"]

    # A device that does not answer: the group goes on without it after the deadline.
    agent._gather_s = 0.01
    group = [batch("pump_plc")]
    await asyncio.wait_for(agent._gather(group), 5.0)
    assert [b.source for b in group] == ["pump_plc"]

    # Already queued: taken at once, with anything else waiting (an MQTT source's batches).
    for src in ("pump_plc_2", "hub", "hub"):
        agent._queue.put_nowait(batch(src))
    agent._gather_s = 30.0
    group = [batch("pump_plc")]
    await asyncio.wait_for(agent._gather(group), 5.0)
    assert [b.source for b in group] == ["pump_plc", "pump_plc_2", "hub", "hub"]


async def test_a_stop_while_gathering_still_handles_what_was_taken(tmp_path: Path) -> None:
    agent = agent_polling(tmp_path, 2)
    agent._gather_s = 30.0
    handled: list[list[Batch]] = []
    agent.handle = lambda group: handled.append(list(group))  # type: ignore[method-assign]
    processing = asyncio.create_task(agent._process())
    agent._queue.put_nowait(batch("pump_plc"))
    for _ in range(100):  # bounded: the consumer takes the batch within a few loop turns
        await asyncio.sleep(0)
        if agent._queue.empty():
            break
    assert agent._queue.empty() and not handled  # taken, waiting for the second source
    processing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(processing, 5.0)
    assert [[b.source for b in g] for g in handled] == [["pump_plc"]]


def test_one_polled_source_is_never_waited_for(tmp_path: Path) -> None:
    agent = agent_polling(tmp_path, 1)
    agent._gather_s = 30.0
    group = [batch("pump_plc")]
    gathering = agent._gather(group)
    # Driven by hand: a coroutine that waits for nothing finishes at its first step.
    with pytest.raises(StopIteration):
        gathering.send(None)
    assert [b.source for b in group] == ["pump_plc"]
