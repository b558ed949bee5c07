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
