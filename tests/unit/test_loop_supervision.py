"""The agent's own background loops (issue 12, guide: nothing may silence detection without an
alarm): a loop that raises is logged, counted, reported upstream as `loop_fault`, shown in
/metrics and /healthz, and started again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.types import Batch, Reading
from tests.conftest import agent_config


async def test_a_loop_that_raises_is_counted_reported_and_restarted(
    tmp_path: Path, trained_bundle: Any
) -> None:
    cfg = load_config(
        agent_config(
            tmp_path / "agent.yaml", sim_port=1, broker_port=1, bundle=trained_bundle.directory
        )
    )
    agent = Agent(cfg, [])
    agent.publisher.open()
    calls = 0
    restarted = asyncio.Event()

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("chunk 7")  # something its authors did not expect
        restarted.set()
        await asyncio.Event().wait()  # runs on, as a healthy loop does

    task = asyncio.create_task(agent._supervise_loop("fleet", flaky))
    try:
        await asyncio.wait_for(restarted.wait(), 10)
    finally:
        task.cancel()
    assert agent.loop_faults == {"fleet": {"KeyError": 1}}
    events = [
        json.loads(s.message.payload)
        for s in agent.publisher.outbox.peek(100)
        if s.message.topic.endswith("/events")
    ]
    (fault,) = [e for e in events if e["type"] == "loop_fault"]
    assert fault["subject"] == "fleet" and fault["details"]["kind"] == "KeyError"
    assert (
        b'edge_agent_loop_faults_total{kind="KeyError",loop="fleet"} 1.0' in agent.metrics.render()
    )
    _, health = agent.monitor.health()
    assert health["loop_faults"] == {"fleet": 1}
    agent.publisher.outbox.close()


async def test_a_pipeline_fault_is_counted_reported_and_the_next_batches_go_on(
    tmp_path: Path, trained_bundle: Any
) -> None:
    """The consumer of every source's batches, run as `Agent.run` runs it: a group whose
    handling raises (a bug in one asset's stages) is a `pipeline` loop fault, and the loop goes
    on to the next group (no restart, whose backoff would hold every asset's batches)."""
    cfg = load_config(
        agent_config(
            tmp_path / "agent.yaml", sim_port=1, broker_port=1, bundle=trained_bundle.directory
        )
    )
    agent = Agent(cfg, [])
    agent.publisher.open()
    handled: list[list[str]] = []
    second = asyncio.Event()

    def flaky(group: list[Batch]) -> None:
        handled.append([b.source for b in group])
        if len(handled) == 1:
            raise ZeroDivisionError("a bug in one asset's stage")
        second.set()

    agent.handle = flaky  # type: ignore[method-assign]
    starts = 0

    async def consumer() -> None:
        nonlocal starts
        starts += 1
        await agent._process()

    task = asyncio.create_task(agent._supervise_loop("pipeline", consumer))
    try:
        agent._queue.put_nowait(Batch("plc", 1.0, (Reading("a", 1.0),)))
        for _ in range(100):  # bounded: the first group is taken within a few loop turns
            await asyncio.sleep(0)
            if handled:
                break
        agent._queue.put_nowait(Batch("plc", 2.0, (Reading("a", 2.0),)))
        await asyncio.wait_for(second.wait(), 10)
    finally:
        task.cancel()
    assert handled == [["plc"], ["plc"]]
    assert starts == 1  # the loop went on; no restart (and its backoff) in between
    assert agent.loop_faults == {"pipeline": {"ZeroDivisionError": 1}}
    events = [
        json.loads(s.message.payload)
        for s in agent.publisher.outbox.peek(100)
        if s.message.topic.endswith("/events")
    ]
    (fault,) = [e for e in events if e["type"] == "loop_fault"]
    assert fault["subject"] == "pipeline" and "goes on" in fault["message"]
    _, health = agent.monitor.health()
    assert health["loop_faults"] == {"pipeline": 1}
    agent.publisher.outbox.close()
