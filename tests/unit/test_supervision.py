"""Issue 12 in the small: the agent supervises its sources, judges readings' time by its own
clock, and folds repeated events (eventfold.py, pure)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from edge_agent.agent import Agent, clock_limits, source_stall_limits
from edge_agent.config import load_config
from edge_agent.eventfold import EventFolder, PendingEvent
from edge_agent.types import Batch, Quality, Reading

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "pump-skid.yaml"
NOW = 1_800_000_000.0


def config(tmp_path: Path, **extra: Any) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["upstream"].setdefault("outbox", {})["dir"] = str(tmp_path / "state")
    data["observability"] = {"metrics": {"enabled": False}}
    for key, value in extra.items():
        data[key] = value
    p = tmp_path / "agent.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def published(agent: Agent) -> list[dict[str, Any]]:
    return [json.loads(s.message.payload) for s in agent.publisher.outbox.peek(1000)]


# -- folding -----------------------------------------------------------------------------------


def test_an_episode_goes_out_at_once_a_storm_is_folded_with_its_count() -> None:
    t = [0.0]
    f = EventFolder(10.0, lambda: t[0])
    raised = PendingEvent("data_quality", "bad", "warning", "plc")
    cleared = PendingEvent("data_quality", "good again", "info", "plc")
    assert f.offer(raised) == [raised] and f.offer(cleared) == [cleared]  # one episode: at once
    assert f.offer(PendingEvent("data_quality", "x", "warning", "other")) != []  # own subject
    for i in range(1000):
        t[0] = i * 0.009
        assert f.offer(raised if i % 2 == 0 else cleared) == []
    assert f.due() == []
    t[0] = 10.0
    [folded] = f.due()
    assert folded.severity == "info" and folded.details == {"folded": 1000, "folded_period_s": 10.0}
    assert "1000 event(s)" in folded.message
    # Still storming: one event per period, none at once.
    t[0] = 11.0
    assert f.offer(raised) == []
    t[0] = 20.0
    [again] = f.due()
    assert again.details is not None and again.details["folded"] == 1
    # A quiet period ends the storm: the next episode goes out at once again.
    t[0] = 30.0
    assert f.due() == []
    t[0] = 41.0
    assert f.offer(raised) == [raised]
    # On stop, whatever is held goes out.
    assert f.offer(cleared) == [cleared]
    assert f.offer(raised) == []
    [last] = f.drain()
    assert last.message.startswith("bad") and f.drain() == []


def test_period_zero_folds_nothing() -> None:
    f = EventFolder(0.0, lambda: 0.0)
    e = PendingEvent("data_quality", "bad", "warning", "plc")
    assert all(f.offer(e) == [e] for _ in range(10))


def test_agent_folds_a_flapping_source_into_few_events(tmp_path: Path) -> None:
    agent = Agent(load_config(config(tmp_path)), [])
    good = Batch("pump_plc", NOW, (Reading("a", 1.0),))
    bad = Batch("pump_plc", NOW, (Reading("a", math.nan, Quality.BAD),))
    for i in range(1250):
        agent._watch_quality(bad if i % 2 == 0 else good)
    dq = [e for e in published(agent) if e["type"] == "data_quality"]
    assert len(dq) == 2 and agent.events.folded == 1248


# -- time --------------------------------------------------------------------------------------


def test_readings_stamped_off_the_gateway_clock_are_bad_and_restamped(tmp_path: Path) -> None:
    agent = Agent(load_config(config(tmp_path)), [], clock=lambda: NOW)
    assert clock_limits(agent.cfg)["pump_plc"] == (5.0, 30.0)
    ok = Batch("pump_plc", NOW + 4.0, (Reading("a", 1.0),))
    assert agent.judge_time(ok) == (ok, None)
    for ts, side in [(4_102_444_800.0, "ahead"), (NOW - 31.0, "behind"), (0.0, "behind")]:
        batch, reason = agent.judge_time(Batch("pump_plc", ts, (Reading("a", 1.0, source_ts=ts),)))
        assert batch.ts == NOW and reason is not None and side in reason
        [r] = batch.readings
        assert r.quality is Quality.BAD and math.isnan(r.value) and r.source_ts == ts
    assert agent.clock_rejected["pump_plc"] == {"ahead": 1, "behind": 2}


def test_clock_limits_per_source_override_the_agent_wide_ones(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["sources"][0]["clock"] = {"max_ahead_s": 1.0, "max_behind_s": 2.0}
    data["sources"][0]["stall_s"] = 7.0
    p = tmp_path / "a.yaml"
    p.write_text(yaml.safe_dump(data))
    cfg = load_config(p)
    assert clock_limits(cfg)["pump_plc"] == (1.0, 2.0)
    assert source_stall_limits(cfg)["pump_plc"] == 7.0
    data["sources"][0].pop("stall_s")
    data["clock"] = {"max_ahead_s": 3.0}
    p.write_text(yaml.safe_dump(data))
    cfg = load_config(p)
    assert source_stall_limits(cfg)["pump_plc"] == 30.0  # max(10 x 1 s poll, 30 s)
    assert clock_limits(load_config(config(tmp_path, clock={"max_ahead_s": 3.0})))["pump_plc"] == (
        3.0,
        30.0,
    )


# -- supervision -------------------------------------------------------------------------------


class _Flaky:
    """A source whose loop fails twice (as a source's background task would), then delivers."""

    name = "pump_plc"

    def __init__(self) -> None:
        self.stats = SimpleNamespace(connected=True)
        self.entered = 0
        self.delivered = asyncio.Event()

    async def __aenter__(self) -> _Flaky:
        self.entered += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def batches(self) -> AsyncIterator[Batch]:
        if self.entered <= 2:
            raise FileNotFoundError(2, "No such file or directory", "/etc/secret")
        yield Batch("pump_plc", NOW, (Reading("a", 1.0),))
        self.delivered.set()
        await asyncio.Event().wait()


async def test_a_failing_source_is_reported_counted_and_restarted(tmp_path: Path) -> None:
    data = yaml.safe_load(config(tmp_path).read_text())
    data["sources"][0]["backoff"] = {"initial_s": 0.01, "max_s": 0.02}
    # The metrics are read below, so they are on (the agent loads them only then); the HTTP
    # endpoint is never started here.
    data["observability"] = {"metrics": {"port": 0}}
    p = tmp_path / "b.yaml"
    p.write_text(yaml.safe_dump(data))
    agent = Agent(load_config(p), [], clock=lambda: NOW)
    flaky = _Flaky()
    agent.sources = [flaky]  # type: ignore[list-item]
    task = asyncio.create_task(agent._supervise(flaky))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(flaky.delivered.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert flaky.entered == 3
    assert agent.source_faults == {"pump_plc": {"FileNotFoundError": 2}}
    events = [(e["type"], (e.get("details") or {}).get("reason")) for e in published(agent)]
    # Reported once (the same reason again is no news), online again once it delivers.
    assert events[0][0] == "source_offline" and "/etc/secret" in events[0][1]
    assert [t for t, _ in events] == ["source_offline", "source_online"]
    assert b'kind="crash_FileNotFoundError"' in agent.metrics.render()


async def test_a_first_start_that_fails_still_ends_the_agent(tmp_path: Path) -> None:
    class Broken(_Flaky):
        async def __aenter__(self) -> Broken:
            raise RuntimeError("cannot read the certificate")

    agent = Agent(load_config(config(tmp_path)), [])
    broken = Broken()
    try:
        await asyncio.wait_for(agent._supervise(broken), 5)  # type: ignore[arg-type]
    except RuntimeError as exc:
        assert "certificate" in str(exc)
    else:
        raise AssertionError("a failing first start must end the agent")


def test_health_stalls_for_sources_and_assets(tmp_path: Path) -> None:
    agent = Agent(load_config(config(tmp_path)), [])
    assert agent.source_stalls() == {}
    agent.started_at -= 31.0  # never delivered for longer than max(10 x 1 s, 30 s)
    assert list(agent.source_stalls()) == ["pump_plc"]
    agent.source_last_batch["pump_plc"] = agent.started_at + 30.0
    assert agent.source_stalls() == {}
