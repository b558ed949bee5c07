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


def _predicted(alert_id: str, event: str) -> Any:
    from edge_agent.types import AlertEvent, AlertEventKind, Forecast

    forecast = Forecast(
        "vibration_de", "mm/s", 4.5, "alarm", "high", "zone C/D", 3.6, 1.4, 2300.0,
        (1600.0, 3300.0), 5400.0,
    )  # fmt: skip
    return AlertEvent(
        alert_id, AlertEventKind(event), "pump-1", 1000.0, 3.4, 1.0, "warning", "predicted",
        "pump-1: vibration_de reaches 4.5 mm/s in about 38 min", (), "forecast-trend/2",
        forecast=forecast,
    )  # fmt: skip


def test_side_alerts_held_open_are_cleared_at_start_and_closed_ones_are_not(
    tmp_path: Path, trained_bundle: Any
) -> None:
    """A `predicted` alert cannot continue across a restart (its forecast needs its history
    again): consumers must not hold it forever, so the restarted agent clears it, once."""
    import jsonschema

    from edge_agent.agent import side_alert_change
    from edge_agent.alerts.messages import alert_payload, load_schema

    cfg_path = agent_config(
        tmp_path / "agent.yaml", sim_port=1, broker_port=1, bundle=trained_bundle.directory
    )
    box = Outbox(tmp_path / "state", Limits())
    box.open()
    for alert_id, events in (("held", ["raised", "updated"]), ("over", ["raised", "cleared"])):
        for ev in events:
            e = _predicted(alert_id, ev)
            body = alert_payload(e, "site", "gw")
            change = side_alert_change(e, body)
            box.put(
                Message("a/pump-1", json.dumps(body).encode(), 1, Kind.ALERT, alert_change=change)
            )
    assert set(box.open_side_alerts()) == {"held"}
    box.close()

    cfg = load_config(cfg_path)
    agent = Agent(cfg, build_pipelines(cfg))
    agent.resume_open_alerts()
    box = agent.publisher.outbox
    bodies = [json.loads(s.message.payload) for s in box.peek(100)]
    cleared = [b for b in bodies if b.get("event") == "cleared" and b["alert_id"] == "held"]
    assert len(cleared) == 1
    assert "the agent restarted" in cleared[0]["message"]
    assert cleared[0]["kind"] == "predicted" and cleared[0]["condition_active"] is False
    jsonschema.Draft202012Validator(load_schema("alert")).validate(cleared[0])
    assert not [b for b in bodies if b.get("alert_id") == "over" and b["ts"] != bodies[0]["ts"]]
    assert box.open_side_alerts() == {}  # cleared once: a second restart sends nothing
    assert agent.pipelines[0].policy.active_alert is None  # not the model's alert
    box.close()
