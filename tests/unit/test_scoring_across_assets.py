"""Assets whose bundles share a model share one detector call per group of batches (issue 16):
`begin` for every asset, `score_together`, then `complete` gives what each asset's own `push`
gives (the scores to ONNX Runtime's batched-kernel rounding, the alerts exactly), with one
detector call per group for the assets that share a session."""

from __future__ import annotations

import numpy as np

from edge_agent.config import AssetConfig, SignalConfig
from edge_agent.csvdata import read_table
from edge_agent.inference.bundle import Bundle
from edge_agent.inference.detector import DetectorPool
from edge_agent.pipeline import AssetPipeline, score_together
from edge_agent.types import Batch, FloatArray, Reading, StepOutput


def pipelines(bundle: Bundle, pool: DetectorPool | None) -> list[AssetPipeline]:
    """pump-1 and pump-2 (from the pool when given: one shared session), and pump-3 with a
    session of its own; each reads its own source."""
    m = bundle.manifest

    def asset(name: str, source: str) -> AssetConfig:
        return AssetConfig(
            name=name, sample_period_s=m.sample_period_s, bundle=bundle.directory,
            signals=[SignalConfig(name=s, source=source) for s in m.signals],
        )  # fmt: skip

    return [
        AssetPipeline(asset("pump-1", "plc1"), bundle, pool),
        AssetPipeline(asset("pump-2", "plc2"), bundle, pool),
        AssetPipeline(asset("pump-3", "plc3"), bundle),
    ]


def ticks(bundle: Bundle, n: int) -> list[list[Batch]]:
    """Per grid instant, one batch per source: normal data; pump-2 gets a gross step in its
    drive-end vibration after two thirds (so alerts are raised and go through the policy)."""
    table = read_table(bundle.directory.parent / "normal.csv")
    cols = [table.columns.index(s) for s in bundle.manifest.signals]
    out = []
    for i in range(n):
        row = table.values[i, cols]
        batches = []
        for k, source in enumerate(("plc1", "plc2", "plc3")):
            values = row.copy()
            if source == "plc2" and i > 2 * n // 3:
                values[bundle.manifest.signals.index("vibration_de")] += 5.0
            # Different data per asset: the shared call must keep each asset's windows apart.
            values = values * (1.0 + 0.001 * k)
            readings = tuple(
                Reading(s, float(v)) for s, v in zip(bundle.manifest.signals, values, strict=True)
            )
            batches.append(Batch(source, float(table.ts[i]), readings))
        out.append(batches)
    return out


def same(a: StepOutput, b: StepOutput) -> None:
    assert a.grid == b.grid and a.valid == b.valid
    assert [s.ts for s in a.scores] == [s.ts for s in b.scores]
    np.testing.assert_allclose(
        [s.score for s in a.scores], [s.score for s in b.scores], rtol=1e-5, atol=1e-6
    )
    key = [(e.event, e.kind, e.severity, e.ts) for e in a.alerts]
    assert key == [(e.event, e.kind, e.severity, e.ts) for e in b.alerts]


def test_shared_detector_calls_give_what_each_asset_alone_gives(trained_bundle: Bundle) -> None:
    together = pipelines(trained_bundle, DetectorPool())
    alone = pipelines(trained_bundle, None)
    shared = together[0].detector
    assert together[1].detector is shared and together[2].detector is not shared
    calls: list[int] = []
    score = shared.score

    def counted(x: FloatArray) -> tuple[FloatArray, FloatArray]:
        calls.append(len(x))
        return score(x)

    shared.score = counted  # type: ignore[method-assign]
    n = 400
    raised = 0
    for group in ticks(trained_bundle, n):
        steps = [(p, p.begin(b)) for b in group for p in together if b.source in p.sources]
        results = score_together(steps)
        for (p, step), (raw, errors), b, own in zip(steps, results, group, alone, strict=True):
            out = p.complete(step, raw, errors)
            same(out, own.push(b))
            raised += len(out.alerts)
    # Once windows are due (every sample, from the window's length on), pump-1 and pump-2 go
    # through one call of two windows a tick.
    window = trained_bundle.manifest.window
    assert len(calls) == n - window + 1 and set(calls) == {2}
    assert raised >= 1  # the step on pump-2 went through the policy of the shared path


def test_steps_without_windows_and_single_users(trained_bundle: Bundle) -> None:
    p = pipelines(trained_bundle, DetectorPool())[:1]
    first = ticks(trained_bundle, 1)[0][0]
    step = p[0].begin(first)
    assert not step.windows
    ((raw, errors),) = score_together([(p[0], step)])
    assert raw.size == 0 and errors.size == 0
    out = p[0].complete(step, raw, errors)
    assert len(out.grid) == 1 and not out.scores


def test_the_agent_handles_what_arrived_together_in_one_group() -> None:
    """`_process` takes every batch already queued (bounded) and hands them to `handle` at once."""
    import asyncio
    import contextlib

    from edge_agent import agent as agent_module

    handled: list[int] = []

    class Fake:
        _queue: asyncio.Queue[int]
        last_progress = 0.0
        _polled = 1  # gathering beyond what is queued: tests/unit/test_poll_grid.py
        _gather = agent_module.Agent._gather

        def handle(self, group: list[int]) -> None:
            handled.append(len(group))
            if sum(handled) == 600:
                raise asyncio.CancelledError

    async def main() -> None:
        fake = Fake()
        fake._queue = asyncio.Queue()
        for i in range(600):
            fake._queue.put_nowait(i)
        with contextlib.suppress(asyncio.CancelledError):
            await agent_module.Agent._process(fake)  # type: ignore[arg-type]

    asyncio.run(main())
    assert handled == [
        agent_module.MAX_GROUP,
        agent_module.MAX_GROUP,
        600 - 2 * agent_module.MAX_GROUP,
    ]


def test_one_assets_failure_costs_only_its_batch(trained_bundle: Bundle) -> None:
    """A pipeline that raises in a group: the other assets' batches of the group are still
    scored and published, then the failure goes on to the supervisor."""
    import pytest

    from edge_agent.agent import Agent

    together = pipelines(trained_bundle, DetectorPool())
    published: list[tuple[str, float, int]] = []

    class Stub:  # the parts of the agent that `handle` uses
        _complete = Agent._complete

        def __init__(self) -> None:
            self._routes = {p.asset.signals[0].source: (p,) for p in together}
            self.recorders: dict[str, object] = {}

        def _publish_step(self, p: AssetPipeline, b: Batch, out: StepOutput, t: float) -> None:
            published.append((p.name, b.ts, len(out.scores)))

    groups = ticks(trained_bundle, trained_bundle.manifest.window + 2)
    for group in groups[:-2]:
        Agent.handle(Stub(), group)  # type: ignore[arg-type]
    broken = groups[-2][0].ts
    begin = together[1].begin

    def failing(batch: Batch) -> object:
        if batch.ts == broken:
            raise RuntimeError("a bug in one asset's stages")
        return begin(batch)

    together[1].begin = failing  # type: ignore[method-assign]
    published.clear()
    with pytest.raises(RuntimeError, match="a bug"):
        Agent.handle(Stub(), groups[-2])  # type: ignore[arg-type]
    assert published == [("pump-1", broken, 1), ("pump-3", broken, 1)]
    Agent.handle(Stub(), groups[-1])  # type: ignore[arg-type]
    assert [name for name, *_ in published[2:]] == ["pump-1", "pump-2", "pump-3"]
