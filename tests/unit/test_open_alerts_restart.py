"""Alerts held open across a restart (issue 12, item 4), at the agent's start: the outbox knows
which alerts consumers hold open; each continues in its asset's policy, or is cleared with the
reason when its asset is gone from the config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_agent.agent import Agent, build_pipelines
from edge_agent.config import load_config
from edge_agent.upstream.outbox import AlertChange, Kind, Limits, Message, OpenAlert, Outbox
from tests.conftest import agent_config


def _seed(state: Path, *held: OpenAlert) -> None:
    """What an earlier run left: its alerts' messages and their open state, then a crash."""
    box = Outbox(state, Limits())
    box.open()
    for a in held:
        box.put(Message(f"a/{a.asset}", b"{}", 1, Kind.ALERT, alert_change=AlertChange(a.asset, a)))
    box.close()


def test_held_alerts_continue_or_are_cleared_with_the_reason(
    tmp_path: Path, trained_bundle: Any
) -> None:
    cfg_path = agent_config(
        tmp_path / "agent.yaml", sim_port=1, broker_port=1, bundle=trained_bundle.directory
    )
    _seed(
        tmp_path / "state",
        OpenAlert("pump-1", "continues", 100.0, "critical", "m0", 2.0),
        OpenAlert("pump-gone", "orphan", 90.0, "warning", "m0", 3.0),
    )
    cfg = load_config(cfg_path)
    agent = Agent(cfg, build_pipelines(cfg))
    agent.resume_open_alerts()

    assert agent.pipelines[0].policy.active_alert == "continues"
    box = agent.publisher.outbox
    assert set(box.open_alerts()) == {"pump-1"}
    alerts = [s.message for s in box.peek(100) if "/alerts/" in s.message.topic]
    cleared = [json.loads(m.payload) for m in alerts if m.topic.endswith("/pump-gone")]
    assert [(c["alert_id"], c["event"]) for c in cleared] == [("orphan", "cleared")]
    assert "no longer in this gateway's config" in cleared[0]["message"]
    assert cleared[0]["threshold"] == 3.0 and cleared[0]["severity"] == "warning"
    box.close()
