"""Prometheus metrics of one agent, in a registry of its own (no module-level global registry,
so two agents in one process, e.g. tests, never share or clash).

Most figures are read from the counters the agent, its sources, pipelines and publisher keep
anyway, at scrape time by a custom collector: nothing on the data path pays for metrics except
the inference-latency histogram."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from edge_agent import __version__
from edge_agent.observability.view import AgentView
from edge_agent.sources.registry import ERROR_COUNTERS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _AgentCollector(Collector):
    def __init__(self, agent: AgentView) -> None:
        self._agent = agent

    def collect(self) -> Iterator[Metric]:
        a = self._agent
        yield InfoMetricFamily("edge_agent_build", "Agent version", {"version": __version__})

        readings = CounterMetricFamily(
            "edge_agent_source_readings",
            "Readings received, by quality",
            labels=["source", "quality"],
        )
        errors = CounterMetricFamily(
            "edge_agent_source_errors", "Source faults by kind", labels=["source", "kind"]
        )
        connected = GaugeMetricFamily(
            "edge_agent_source_connected", "1 while the device is reachable", labels=["source"]
        )
        batch_age = GaugeMetricFamily(
            "edge_agent_source_last_batch_age_seconds",
            "Time since the source last delivered a batch",
            labels=["source"],
        )
        now = time.monotonic()
        for src in a.sources:
            counts = a.source_readings.get(src.name, {})
            for quality, n in sorted(counts.items()):
                readings.add_metric([src.name, quality], n)
            stats = src.stats
            if dataclasses.is_dataclass(stats):
                for name in ERROR_COUNTERS:
                    value = getattr(stats, name, None)
                    if isinstance(value, int) and not isinstance(value, bool):
                        errors.add_metric([src.name, name], value)
                # Sessions a server refused or we refused (OPC UA security), by kind.
                refusals = getattr(stats, "refusals", None)
                if isinstance(refusals, dict):
                    for kind, n in sorted(refusals.items()):
                        errors.add_metric([src.name, f"refused_{kind}"], n)
            # Faults that ended the source's loop (restarted by the agent), by exception class,
            # and readings stamped too far from the gateway clock.
            for kind, n in sorted(a.source_faults.get(src.name, {}).items()):
                errors.add_metric([src.name, f"crash_{kind}"], n)
            for side, n in sorted(a.clock_rejected.get(src.name, {}).items()):
                errors.add_metric([src.name, f"clock_{side}"], n)
            connected.add_metric([src.name], 1.0 if stats.connected else 0.0)
            last = a.source_last_batch.get(src.name)
            if last is not None:
                batch_age.add_metric([src.name], now - last)
        yield from (readings, errors, connected, batch_age)
        loop_faults = CounterMetricFamily(
            "edge_agent_loop_faults",
            "Faults of the agent's own supervised loops (each restarted), by exception class",
            labels=["loop", "kind"],
        )
        for loop, kinds in sorted(a.loop_faults.items()):
            for kind, n in sorted(kinds.items()):
                loop_faults.add_metric([loop, kind], n)
        yield loop_faults

        samples = CounterMetricFamily(
            "edge_agent_asset_samples", "Grid samples assembled", labels=["asset", "valid"]
        )
        windows = CounterMetricFamily(
            "edge_agent_asset_windows", "Windows scored", labels=["asset"]
        )
        alerts = CounterMetricFamily(
            "edge_agent_asset_alert_events",
            "Alert events (raised/updated/cleared)",
            labels=["asset"],
        )
        score = GaugeMetricFamily("edge_agent_asset_score", "Last anomaly score", labels=["asset"])
        threshold = GaugeMetricFamily(
            "edge_agent_asset_raise_threshold", "Score that raises an alert", labels=["asset"]
        )
        active = GaugeMetricFamily(
            "edge_agent_asset_alert_active", "1 while an alert is raised", labels=["asset"]
        )
        condition = GaugeMetricFamily(
            "edge_agent_asset_condition_active",
            "1 while an open alert's condition holds (0 once it returned to normal in its episode)",
            labels=["asset"],
        )
        model = InfoMetricFamily("edge_agent_model", "Model bundle in use", labels=["asset"])
        rate = GaugeMetricFamily(
            "edge_agent_asset_alerts_per_hour",
            "Raised alerts per hour of valid data since the model was loaded",
            labels=["asset"],
        )
        budget = GaugeMetricFamily(
            "edge_agent_asset_alert_budget_per_hour",
            "False alerts per hour the bundle's calibration expects on normal data",
            labels=["asset"],
        )
        for p in a.pipelines:
            st = p.stats
            samples.add_metric([p.name, "true"], st.samples - st.invalid_samples)
            samples.add_metric([p.name, "false"], st.invalid_samples)
            windows.add_metric([p.name], st.windows)
            alerts.add_metric([p.name], st.alerts)
            if not math.isnan(st.last_score):
                score.add_metric([p.name], st.last_score)
            threshold.add_metric([p.name], p.raise_threshold)
            active.add_metric([p.name], 1.0 if p.alert_active else 0.0)
            condition.add_metric([p.name], 1.0 if p.condition_active else 0.0)
            model.add_metric([p.name], {"model_version": p.model_version})
            if (b := p.budget) is not None:
                rate.add_metric([p.name], b.observed_per_hour)
                budget.add_metric([p.name], b.expected_per_hour)
        yield from (
            samples, windows, alerts, score, threshold, active, condition, model, rate, budget,
        )  # fmt: skip

        pub = a.publisher
        ob = pub.outbox.stats
        yield GaugeMetricFamily(
            "edge_agent_upstream_connected",
            "1 while connected to the broker",
            value=pub.stats.connected,
        )
        yield CounterMetricFamily(
            "edge_agent_upstream_published", "Messages acknowledged by the broker",
            value=pub.stats.published,
        )  # fmt: skip
        yield CounterMetricFamily(
            "edge_agent_upstream_rejected", "Publishes the broker refused", value=pub.stats.rejected
        )
        yield CounterMetricFamily(
            "edge_agent_upstream_commands_dropped",
            "Fleet commands dropped because they arrived faster than they were handled",
            value=pub.stats.commands_dropped,
        )
        yield GaugeMetricFamily(
            "edge_agent_outbox_messages",
            "Messages waiting for delivery (in the database and held in memory)",
            value=ob.pending,
        )
        yield GaugeMetricFamily(
            "edge_agent_outbox_memory_messages",
            "Messages held in memory because the outbox database cannot be written",
            value=ob.spilled,
        )
        yield GaugeMetricFamily(
            "edge_agent_outbox_bytes", "Payload bytes queued", value=ob.queued_bytes
        )
        oldest = pub.outbox.oldest_created()
        yield GaugeMetricFamily(
            "edge_agent_outbox_oldest_age_seconds",
            "Age of the oldest queued message (0 when empty)",
            value=0.0 if oldest is None else max(0.0, time.time() - oldest),
        )
        dropped = CounterMetricFamily(
            "edge_agent_outbox_dropped", "Messages dropped by the bounds", labels=["kind"]
        )
        for kind, n in sorted(ob.dropped.items()):
            dropped.add_metric([kind], n)
        yield dropped
        yield CounterMetricFamily(
            "edge_agent_outbox_dead_letters",
            "Messages moved to dead letters",
            value=ob.dead_letters,
        )
        yield GaugeMetricFamily(
            "edge_agent_pipeline_queue", "Batches waiting for the pipeline", value=a.queue_depth
        )
        if a.recorders:
            rows = CounterMetricFamily(
                "edge_agent_record_rows",
                "Rows of `run --record-dir` recordings, written or lost",
                labels=["asset", "outcome"],
            )
            for asset, rec in sorted(a.recorders.items()):
                rows.add_metric([asset, "written"], rec.stats.rows)
                rows.add_metric([asset, "lost"], rec.stats.dropped_rows)
            yield rows
        yield _reloads(a.reload_counts)


def _reloads(counts: Mapping[str, int]) -> CounterMetricFamily:
    fam = CounterMetricFamily("edge_agent_reloads", "SIGHUP reloads by outcome", labels=["outcome"])
    for outcome, n in sorted(counts.items()):
        fam.add_metric([outcome], n)
    return fam


class AgentMetrics:
    def __init__(self, agent: AgentView) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_AgentCollector(agent))
        # Measured in Agent.handle around the pipeline's push of a batch that completed windows
        # (divided among them): assembling and windowing the batch is included, but inference
        # (scaler, ONNX Runtime, policy) dominates; timing inside the pipeline would cost a
        # clock read per window in replay too.
        self.inference_seconds = Histogram(
            "edge_agent_inference_seconds",
            "Time to process a batch per scored window (assembler, scaler, ONNX Runtime, policy)",
            ["asset"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
