"""What the observers of a running agent (metrics, health, the service monitor) may see of it:
read-only protocols the `Agent` satisfies structurally. They depend on this narrow view rather
than on the agent module, so the agent can own its observers without an import circle, and a test
can hand them a small fake."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from edge_agent.alerts.budget import FalseAlarmBudget
from edge_agent.pipeline import AssetStats
from edge_agent.upstream.mqtt import PublisherStats
from edge_agent.upstream.outbox import OutboxStats

if TYPE_CHECKING:
    # The recorder (and the CSV module it writes with) loads only with `run --record-dir`.
    from edge_agent.recorder import RecorderStats


class SourceStatsView(Protocol):
    """A source's counters: `connected` always; protocol-specific counters (a dataclass) are
    read by name."""

    @property
    def connected(self) -> bool: ...


class SourceView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def stats(self) -> SourceStatsView: ...


class PipelineView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def model_version(self) -> str: ...
    @property
    def stats(self) -> AssetStats: ...
    @property
    def raise_threshold(self) -> float: ...
    @property
    def alert_active(self) -> bool: ...
    @property
    def condition_active(self) -> bool: ...
    @property
    def budget(self) -> FalseAlarmBudget | None: ...


class OutboxView(Protocol):
    @property
    def stats(self) -> OutboxStats: ...

    def oldest_created(self) -> float | None: ...


class PublisherView(Protocol):
    @property
    def stats(self) -> PublisherStats: ...
    @property
    def outbox(self) -> OutboxView: ...


class RecorderView(Protocol):
    @property
    def stats(self) -> RecorderStats: ...


class AgentView(Protocol):
    """The figures `AgentMetrics` and `ServiceMonitor` read (mappings by source, asset or
    outcome; all maintained by the agent)."""

    @property
    def sources(self) -> Sequence[SourceView]: ...
    @property
    def pipelines(self) -> Sequence[PipelineView]: ...
    @property
    def publisher(self) -> PublisherView: ...
    @property
    def source_readings(self) -> Mapping[str, Mapping[str, int]]: ...
    @property
    def source_faults(self) -> Mapping[str, Mapping[str, int]]: ...
    @property
    def loop_faults(self) -> Mapping[str, Mapping[str, int]]: ...
    @property
    def clock_rejected(self) -> Mapping[str, Mapping[str, int]]: ...
    @property
    def source_last_batch(self) -> Mapping[str, float]: ...
    @property
    def recorders(self) -> Mapping[str, RecorderView]: ...
    @property
    def reload_counts(self) -> Mapping[str, int]: ...
    @property
    def queue_depth(self) -> int: ...
    @property
    def last_progress(self) -> float: ...
    @property
    def models(self) -> Mapping[str, str]: ...
    @property
    def unsigned_models(self) -> list[str]: ...
    @property
    def sources_started(self) -> asyncio.Event: ...

    def progressing(self) -> bool: ...
    def source_stalls(self) -> dict[str, float]: ...
    def asset_stalls(self) -> dict[str, float]: ...
