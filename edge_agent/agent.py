"""Wiring of the running agent: one TaskGroup with a task per source, the pipeline task and the
upstream publisher. SIGTERM/SIGINT publish the offline status and stop everything within seconds."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent import __version__
from edge_agent.alerts.messages import EventType, alert_payload, energy_payload, iso
from edge_agent.alerts.policy import orphan_cleared
from edge_agent.backoff import Backoff
from edge_agent.config import AssetConfig, LoadedConfig
from edge_agent.config_base import BackoffConfig, resolve_path
from edge_agent.energy.stage import energy_points, energy_signals
from edge_agent.eventfold import EventFolder, PendingEvent
from edge_agent.inference.bundle import Bundle, BundleError
from edge_agent.inference.detector import DetectorPool
from edge_agent.logs import RateLimitedLog
from edge_agent.observability.http import HttpEndpoint
from edge_agent.observability.sdnotify import Notifier
from edge_agent.observability.service import ServiceMonitor
from edge_agent.pipeline import AssetPipeline, PendingStep, score_together
from edge_agent.reload import reload_agent
from edge_agent.sources.base import BuildContext, Source
from edge_agent.sources.registry import build_source
from edge_agent.stop_watchdog import StopWatchdog
from edge_agent.stream.quality import SourceQualityMonitor
from edge_agent.types import (
    AlertEvent,
    AlertEventKind,
    Batch,
    DataQualityEvent,
    DataQualityEventKind,
    Quality,
    Reading,
    SourceQualityEvent,
    StepOutput,
)
from edge_agent.upstream.mqtt import MqttPublisher
from edge_agent.upstream.outbox import AlertChange, OpenAlert, SideAlertChange

if TYPE_CHECKING:
    from edge_agent.fleet.agent_side import FleetAgent
    from edge_agent.observability.metrics import AgentMetrics
    from edge_agent.recorder import CsvRecorder
    from edge_agent.upstream.sparkplug.client import SparkplugPublisher

log = logging.getLogger(__name__)
# How long a stop waits for queued alerts to be acknowledged (the unit allows 20 s to stop).
SHUTDOWN_FLUSH_S = 5.0
# Event types folded when they repeat within `observability.event_period_s` (see eventfold.py).
FOLDED_EVENTS = frozenset({EventType.DATA_QUALITY})
# A source or an asset counts as stalled after at least this long (see `source_stall_limits`).
MIN_STALL_S = 30.0
# Batches handled together at most (see `_process`).
MAX_GROUP = 256
# How long the pipeline waits for the rest of an instant's polls once the first has arrived, at
# most, and at most a 20th of the shortest poll interval (see `_gather`).
GATHER_S = 0.01


class _Stop(Exception):
    """Raised inside the TaskGroup to bring all tasks down on a stop request."""


class MetricsStartupError(Exception):
    """The metrics/health endpoint could not be bound (e.g. port in use): a configuration error."""


def build_pipelines(
    cfg: LoadedConfig, detectors: DetectorPool | None = None
) -> list[AssetPipeline]:
    """Load and verify every asset's bundle (raises BundleError naming the problem). Give the
    agent's `detectors` so assets with identical models share one ONNX Runtime session."""
    pipelines = []
    for asset in cfg.settings.assets:
        found = energy_signals(asset, cfg.profiles)
        energy = None if isinstance(found, str) else found
        if energy is None:
            log.info("asset %s: energy off: %s", asset.name, found)
        else:
            log.info(
                "asset %s: energy from source %s (%s)", asset.name, energy.source,
                ", ".join(energy.points),
            )  # fmt: skip
        pipelines.append(AssetPipeline(asset, load_bundle(cfg, asset), detectors, energy))
    return pipelines


def source_periods(cfg: LoadedConfig) -> dict[str, float]:
    """Each configured source's period: its poll interval, or (MQTT: devices publish at their
    own pace) the shortest sample period of the assets it feeds."""
    out: dict[str, float] = {}
    for src in cfg.settings.sources:
        fed = [
            a.sample_period_s
            for a in cfg.settings.assets
            if any(sig.source == src.name for sig in a.signals)
        ]
        poll = getattr(src, "poll_interval_s", None)
        out[src.name] = float(poll) if poll is not None else min(fed, default=1.0)
    return out


def source_stall_limits(cfg: LoadedConfig) -> dict[str, float]:
    """How long each source may deliver nothing before /healthz says unhealthy: its `stall_s`,
    or max(10 × its period, 30 s)."""
    periods = source_periods(cfg)
    return {
        src.name: src.stall_s
        if src.stall_s is not None
        else max(10 * periods[src.name], MIN_STALL_S)
        for src in cfg.settings.sources
    }


def clock_limits(cfg: LoadedConfig) -> dict[str, tuple[float, float]]:
    """Per source: how far (s) a reading's timestamp may be ahead of and behind the gateway
    clock. Behind defaults to the largest max age of the assets the source feeds, at least 30 s
    (gateways that buffer a few readings per message)."""
    s = cfg.settings
    out: dict[str, tuple[float, float]] = {}
    for src in s.sources:
        skew = src.clock or s.clock
        ages = [
            a.effective_max_age_s
            for a in s.assets
            if any(sig.source == src.name for sig in a.signals)
        ]
        behind = skew.max_behind_s
        if behind is None:
            behind = max(max(ages, default=0.0), MIN_STALL_S)
        out[src.name] = (skew.max_ahead_s, behind)
    return out


def load_bundle(cfg: LoadedConfig, asset: AssetConfig) -> Bundle:
    """An asset's bundle, verified against the config's trusted keys (BundleError naming the
    asset, the bundle and the reason)."""
    directory = cfg.bundle_dir(asset)
    try:
        bundle = Bundle.load(directory, cfg.bundle_trust)
    except BundleError as exc:
        reason = str(exc).removeprefix(f"{directory}: ")
        raise BundleError(f"asset {asset.name}: bundle {directory} refused: {reason}") from None
    if bundle.unsigned:
        log.warning(
            "INSECURE: asset %s runs the unsigned bundle %s (bundles.allow_unsigned is set; "
            "its model and thresholds are not verified)",
            asset.name,
            directory,
        )
    return bundle


def build_sources(cfg: LoadedConfig) -> list[Source]:
    """One source per configured source that feeds an asset. Protocol libraries are imported only
    when a source needs them, so a Modbus-only agent never loads asyncua or aiomqtt."""
    points: dict[str, list[str]] = {}
    for asset in cfg.settings.assets:
        for sig in asset.signals:
            points.setdefault(sig.source, []).append(sig.point_name)
    for src, extra in energy_points(cfg.settings.assets, cfg.profiles).items():
        have = points.setdefault(src, [])
        have.extend(p for p in dict.fromkeys(extra) if p not in have)
    ctx = BuildContext(base_dir=cfg.path.parent)
    return [
        build_source(src, cfg.profiles[src.name], points[src.name], ctx)
        for src in cfg.settings.sources
        if src.name in points
    ]


def alert_change(event: AlertEvent) -> AlertChange:
    """What an alert message does to the open alerts the outbox keeps."""
    if event.event is AlertEventKind.CLEARED:
        return AlertChange(event.asset, None)
    held = OpenAlert(
        event.asset, event.alert_id, event.ts, event.severity, event.model_version, event.threshold
    )
    return AlertChange(event.asset, held)


def side_alert_change(event: AlertEvent, body: dict[str, Any]) -> SideAlertChange:
    """What a `predicted` or `efficiency` alert message does to the open side alerts."""
    keep = None if event.event is AlertEventKind.CLEARED else json.dumps(body)
    return SideAlertChange(event.alert_id, event.asset, keep)


def side_alert_cleared(held: SideAlertChange, now: float) -> dict[str, Any]:
    """The `cleared` message of a side alert held open from before a restart: its last payload,
    cleared now with the reason (it cannot continue: a forecast needs its history again, an
    efficiency block its samples)."""
    body: dict[str, Any] = json.loads(held.body or "{}")
    kind = body.get("kind", "alert")
    again = (
        "the forecast raises anew once it has its history again"
        if kind == "predicted"
        else "raised anew if the condition still holds"
    )
    return {
        **body,
        "event": AlertEventKind.CLEARED.value,
        "ts": iso(now),
        "condition_active": False,
        "message": f"{held.asset}: {kind} cleared: the agent restarted; {again}",
    }


class Agent:
    def __init__(
        self,
        cfg: LoadedConfig,
        pipelines: list[AssetPipeline],
        password: str | None = None,
        on_alert: Callable[[AlertEvent], None] | None = None,
        on_data_quality: Callable[[DataQualityEvent], None] | None = None,
        record_dir: Path | None = None,
        detectors: DetectorPool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        s = cfg.settings
        self.cfg = cfg
        # The gateway clock that judges the readings' timestamps (tests pass their own).
        self.clock = clock
        # Shared ONNX Runtime sessions for the pipelines it builds on reload (pass the pool the
        # initial pipelines were built with).
        self.detectors = detectors if detectors is not None else DetectorPool()
        self.pipelines = pipelines
        self.sources = build_sources(cfg)
        # Polled sources read on one wall-clock grid (`sources.base.next_poll`); the pipeline
        # gathers an instant's batches so that assets sharing a model are scored in one call.
        intervals = [i for c in s.sources if (i := getattr(c, "poll_interval_s", None)) is not None]
        self._polled = len(intervals)
        self._gather_s = min([GATHER_S] + [i / 20 for i in intervals])
        # Shared with the publisher (birth/status message), updated in place on a reload.
        self.models = {p.name: p.model_version for p in pipelines}
        self.publisher = MqttPublisher(
            s.upstream.mqtt,
            s.identity,
            __version__,
            self.models,
            password=password,
            outbox=s.upstream.outbox,
            telemetry=s.upstream.telemetry,
            base_dir=cfg.path.parent,
        )
        self.publisher.unsigned_models = lambda: self.unsigned_models
        # Fleet commands (fleet.enabled, docs/FLEET.md): taken through the publisher's session.
        self.fleet: FleetAgent | None = None
        if s.fleet.enabled:
            # Imported only when enabled, as the optional features below are (issue 16: what a
            # configuration does not use stays out of the agent's memory).
            from edge_agent.fleet.agent_side import FleetAgent

            state = resolve_path(cfg.path.parent, s.upstream.outbox.dir) / "fleet"
            self.fleet = FleetAgent(
                self, s.identity, s.upstream.mqtt.topic_prefix, s.fleet, state,
                on_model_change=self.publisher.submit_status,
            )  # fmt: skip
            self.publisher.subscriptions = self.fleet.subscriptions
            self.publisher.on_message = self.fleet.offer
        # Sparkplug B beside the JSON topics (upstream.sparkplug, docs/FLEET.md), on its own
        # connection; pysparkplug is imported only when it is enabled.
        self.sparkplug: SparkplugPublisher | None = None
        if s.upstream.sparkplug.enabled:
            from edge_agent.upstream.sparkplug.client import SparkplugPublisher

            self.sparkplug = SparkplugPublisher(
                s.upstream.sparkplug, s.upstream.mqtt, s.identity, __version__,
                resolve_path(cfg.path.parent, s.upstream.outbox.dir), password, cfg.path.parent,
            )  # fmt: skip
            self.sparkplug.define(pipelines)
        self._source_up: dict[str, bool] = {}
        self._source_quality = SourceQualityMonitor()
        self._source_reason: dict[str, str | None] = {}
        self._routes: dict[str, list[AssetPipeline]] = {}
        for p in pipelines:
            for src in p.sources:
                self._routes.setdefault(src, []).append(p)
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=10_000)
        # `run --record-dir`: each asset's input as a CSV that `replay` turns into the same alerts.
        # By asset name, so a pipeline swapped by a reload keeps recording to the same file.
        self.recorders: dict[str, CsvRecorder] = {}
        if record_dir is not None:
            from edge_agent.recorder import CsvRecorder

            self.recorders = {
                p.name: CsvRecorder(record_dir / f"{p.name}.csv", p.asset.signals)
                for p in pipelines
            }
        self._on_alert = on_alert
        # Hook for data-quality events (e.g. publishing them on a system-events topic).
        self.on_data_quality = on_data_quality
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        # Observability: per-source counters the metrics read, the service monitor (sd_notify,
        # watchdog, health) and the HTTP endpoint, all owned by this agent.
        self.source_readings: dict[str, dict[str, int]] = {}
        self.source_last_batch: dict[str, float] = {}
        self.reload_counts: dict[str, int] = {}
        self.last_progress = time.monotonic()
        self.sources_started = asyncio.Event()
        self._entered: set[str] = set()
        # Supervision: faults that ended a source's loop, by source and kind (exception class).
        self.source_faults: dict[str, dict[str, int]] = {}
        # Faults of the agent's own supervised loops (fleet commands), by loop and exception class.
        self.loop_faults: dict[str, dict[str, int]] = {}
        self._fault_log = RateLimitedLog(log)
        self.source_stall_s = source_stall_limits(cfg)
        self._clock_limits = clock_limits(cfg)
        # Readings whose timestamps were too far from the gateway clock, by source and side.
        self.clock_rejected: dict[str, dict[str, int]] = {}
        self.events = EventFolder(s.observability.event_period_s, time.monotonic)
        # Per asset (monotonic times): the last batch with a good reading routed to it, the last
        # scored window (or the start) and the last invalid sample, for /healthz.
        self.started_at = time.monotonic()
        self.asset_last_input: dict[str, float] = {}
        self.asset_last_window: dict[str, float] = {}
        self.asset_last_invalid: dict[str, float] = {}
        self.reload_requested = asyncio.Event()
        m = s.observability.metrics
        # Prometheus metrics only when they are served: the client library is ~2 MB resident.
        self.metrics: AgentMetrics | None = None
        if m.enabled:
            from edge_agent.observability.metrics import AgentMetrics

            self.metrics = AgentMetrics(self)
        self.monitor = ServiceMonitor(self, Notifier.from_environment(), self.metrics)
        self.http = HttpEndpoint(m.host, m.port, self.monitor.routes()) if m.enabled else None

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    async def _supervise(self, source: Source) -> None:
        """Run a source for as long as the agent runs: whatever ends its loop (not a stop) is
        logged with its name (rate-limited), counted, reported as `source_offline` with the
        reason, and the source is started again after a backoff. Only a strict source's startup
        check (SourceStartupError) or any failure of its first start ends the agent, as a
        configuration error."""
        cfg = next((c for c in self.cfg.settings.sources if c.name == source.name), None)
        backoff = Backoff.from_config(cfg.backoff if cfg is not None else BackoffConfig())
        while True:
            delivered = [False]
            try:
                await self._pump(source, delivered)
                raise RuntimeError("batches() ended")  # a source's batches never end
            except Exception as exc:
                if source.name not in self._entered:
                    # Its first start failed (a strict source's startup check, a certificate
                    # that cannot be read): a configuration error that ends the agent, as before.
                    raise
                self._source_failed(source.name, *_describe(exc))
            if delivered[0]:
                backoff.reset()
            await asyncio.sleep(backoff.next_delay())

    def _mark_entered(self, name: str) -> None:
        self._entered.add(name)
        if len(self._entered) >= len(self.sources):
            self.sources_started.set()

    def _source_failed(self, name: str, kind: str, reason: str) -> None:
        faults = self.source_faults.setdefault(name, {})
        faults[kind] = faults.get(kind, 0) + 1
        self._fault_log.log(
            logging.ERROR,
            f"fault:{name}:{kind}",
            "source %s stopped: %s (restarting with backoff)",
            name,
            reason,
        )
        self._watch_connection(name, False, reason)

    async def _pump(self, source: Source, delivered: list[bool] | None = None) -> None:
        async with source:
            if source.name not in self._entered:
                self._mark_entered(source.name)
            counts = self.source_readings.setdefault(source.name, {})
            async for batch in source.batches():
                self.source_last_batch[source.name] = time.monotonic()
                if delivered is not None:
                    delivered[0] = True
                batch, skew = self.judge_time(batch)
                for r in batch.readings:
                    q = r.quality.name.lower()
                    counts[q] = counts.get(q, 0) + 1
                # A source may say why it is offline (an OPC UA session refused, and why).
                reason: str | None = getattr(source.stats, "offline_reason", None)
                self._watch_connection(source.name, source.stats.connected, reason)
                if source.stats.connected:
                    self._watch_quality(batch, skew)
                # Back-pressure instead of loss: a source waits if the pipeline falls behind.
                await self._queue.put(batch)

    def judge_time(self, batch: Batch) -> tuple[Batch, str | None]:
        """The gateway judges time: a batch stamped further ahead of the gateway clock, or
        further behind it, than the source's limits is bad data. Its readings become bad, it is
        restamped at the gateway time (so it never moves an asset's clock: one message stamped
        in 2100 must not stop the asset), counted, and the reason returned."""
        ahead, behind = self._clock_limits.get(batch.source, (math.inf, math.inf))
        now = self.clock()
        if now - behind <= batch.ts <= now + ahead:
            return batch, None
        side = "ahead" if batch.ts > now else "behind"
        limit = ahead if side == "ahead" else behind
        counts = self.clock_rejected.setdefault(batch.source, {})
        counts[side] = counts.get(side, 0) + len(batch.readings)
        reason = (
            f"timestamp {_iso(batch.ts)} is {abs(batch.ts - now):.0f} s {side} of the gateway "
            f"clock (limit {limit:g} s)"
        )
        bad = tuple(Reading(r.point, math.nan, Quality.BAD, r.source_ts) for r in batch.readings)
        return Batch(batch.source, now, bad), reason

    def report_event(
        self,
        type_: EventType,
        message: str,
        severity: str = "warning",
        subject: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Publish a system event (edge-agent/event/1) upstream; never blocks. Repeats of a
        folded type about one subject within `observability.event_period_s` are held and sent
        as one event with a count (see eventfold.py)."""
        event = PendingEvent(type_, message, severity, subject, details)
        out = self.events.offer(event) if type_ in FOLDED_EVENTS else [event]
        for ev in out:
            self._emit(ev)

    def _emit(self, ev: PendingEvent) -> None:
        log.log(
            logging.INFO if ev.severity == "info" else logging.WARNING,
            "event %s: %s",
            ev.type,
            ev.message,
        )
        self.publisher.submit_event(ev.type, ev.message, ev.severity, ev.subject, ev.details)

    async def _flush_folded_events(self) -> None:
        period = self.events.period
        if period <= 0:
            return
        while True:
            await asyncio.sleep(min(period / 4, 1.0))
            for ev in self.events.due():
                self._emit(ev)

    def report_model_loaded(
        self, p: AssetPipeline, previous: str | None = None, **extra: Any
    ) -> None:
        """`model_loaded`, saying how the bundle was verified; an unsigned one (allowed by
        bundles.allow_unsigned) is a warning and named insecure."""
        b = p.bundle
        was = f" (was {previous})" if previous is not None else ""
        details: dict[str, Any] = {
            "signature": "verified" if b.signed_by else "unsigned" if b.unsigned else "not checked"
        }
        if b.signed_by:
            details["key_id"] = b.signed_by
        if previous is not None:
            details["previous_model_version"] = previous
        details.update(extra)
        text = f"asset {p.name}: model {p.model_version}{was}, {b.describe_signature()}"
        severity = "warning" if b.unsigned else "info"
        self.report_event(EventType.MODEL_LOADED, text, severity, p.name, details)

    @property
    def unsigned_models(self) -> list[str]:
        """Assets running an unsigned bundle (allowed by bundles.allow_unsigned)."""
        return [p.name for p in self.pipelines if p.bundle.unsigned]

    def _watch_connection(self, source: str, up: bool, reason: str | None = None) -> None:
        # Only transitions become events (the first observation counts as one), and a new
        # reason while offline (e.g. the server now refuses our certificate).
        was_up = self._source_up.get(source)
        old_reason = self._source_reason.get(source)
        if was_up is up and (up or reason is None or reason == old_reason):
            return
        self._source_up[source] = up
        self._source_reason[source] = None if up else reason
        if up:
            self.report_event(EventType.SOURCE_ONLINE, f"source {source} connected", "info", source)
        elif reason is None:
            self.report_event(
                EventType.SOURCE_OFFLINE, f"source {source} is not reachable", "warning", source
            )
        else:
            self.report_event(
                EventType.SOURCE_OFFLINE,
                f"source {source} is not reachable: {reason}",
                "warning",
                source,
                {"reason": reason},
            )

    def _watch_quality(self, batch: Batch, reason: str | None = None) -> None:
        # Bad readings from a connected device (exception responses, undecodable values,
        # timestamps off the gateway clock): one event when they start, one when they stop.
        if (event := self._source_quality.update(batch, reason)) is not None:
            self._report_quality(event)

    def handle(self, batches: Sequence[Batch]) -> None:
        """Batches taken from the queue together, in arrival order: each asset's stages before
        the detector, one detector call for the windows of all assets that share a model
        (issue 16: one call per tick for every asset due), then each asset's alert policy and
        its output, in the order the batches came."""
        steps: list[tuple[AssetPipeline, PendingStep]] = []
        spent: list[float] = []
        failure: Exception | None = None
        for batch in batches:
            for pipeline in self._routes.get(batch.source, ()):
                if (recorder := self.recorders.get(pipeline.name)) is not None:
                    recorder.add(batch)
                started = time.perf_counter()
                try:
                    step = pipeline.begin(batch)
                except Exception as exc:
                    # One asset's failure costs that asset this batch, as when batches were
                    # handled one by one: the group goes on, then the failure goes to the
                    # supervisor (logged, counted, reported, the loop restarted).
                    failure = failure or exc
                    continue
                steps.append((pipeline, step))
                spent.append(time.perf_counter() - started)
        self._complete(steps, spent)
        if failure is not None:
            raise failure

    def _complete(self, steps: list[tuple[AssetPipeline, PendingStep]], spent: list[float]) -> None:
        started = time.perf_counter()
        results = score_together(steps)
        # The shared detector calls' time, spread over the windows scored.
        windows = sum(len(step.windows) for _, step in steps)
        per_window = (time.perf_counter() - started) / windows if windows else 0.0
        for (pipeline, step), (raw, errors), before in zip(steps, results, spent, strict=True):
            started = time.perf_counter()
            out = pipeline.complete(step, raw, errors)
            elapsed = before + time.perf_counter() - started + per_window * len(step.windows)
            self._publish_step(pipeline, step.batch, out, elapsed)

    def _publish_step(
        self, pipeline: AssetPipeline, batch: Batch, out: StepOutput, elapsed: float
    ) -> None:
        """Publish and account for what one batch produced in one asset's pipeline."""
        s = self.cfg.settings
        now = time.monotonic()
        if any(r.quality is Quality.GOOD for r in batch.readings):
            self.asset_last_input[pipeline.name] = now
        if out.invalid_samples:
            self.asset_last_invalid[pipeline.name] = now
        if out.scores:
            self.asset_last_window[pipeline.name] = now
            # A batch usually completes at most one window; spread the time if it did more.
            if self.metrics is not None:
                per_window = elapsed / len(out.scores)
                hist = self.metrics.inference_seconds.labels(pipeline.name)
                for _ in out.scores:
                    hist.observe(per_window)
        for event in out.alerts:
            log.warning("alert %s %s: %s", event.event.value, event.alert_id, event.message)
            body = alert_payload(event, s.identity.site, s.identity.gateway)
            self.publisher.submit_alert(event.asset, body, alert_change(event))
            if self._on_alert is not None:
                self._on_alert(event)
        for event in out.predictions:
            # A forecast has its own lifecycle beside the detector's alert: it is not the
            # asset's open alert (`change` None), so a restart does not carry it over.
            log.warning("predicted %s %s: %s", event.event.value, event.alert_id, event.message)
            body = alert_payload(event, s.identity.site, s.identity.gateway)
            self.publisher.submit_alert(event.asset, body, side_alert_change(event, body))
        for report in out.energy:
            body = energy_payload(report, s.identity.site, s.identity.gateway)
            self.publisher.submit_energy(report.asset, body)
        for event in out.efficiency:
            # Kept as a side alert (several per asset), not as the asset's model alert.
            log.warning("alert %s %s: %s", event.event.value, event.alert_id, event.message)
            body = alert_payload(event, s.identity.site, s.identity.gateway)
            self.publisher.submit_alert(event.asset, body, side_alert_change(event, body))
            if self._on_alert is not None:
                self._on_alert(event)
        if out.scores:
            # Telemetry carries the latest score (the publisher rate-limits it further).
            score = out.scores[-1]
            self.publisher.submit_telemetry(
                pipeline.name,
                score.ts,
                score.score,
                pipeline.raise_threshold,
                pipeline.model_version,
            )
        if self.sparkplug is not None:
            self.sparkplug.observe(pipeline, out)
        for q_event in out.quality:
            self.handle_data_quality(q_event)
        if (budget := pipeline.budget_exceeded(out)) is not None:
            b = pipeline.budget
            assert b is not None
            self.report_event(
                EventType.ALERT_BUDGET_EXCEEDED, f"{pipeline.name}: {budget}", "warning",
                pipeline.name,
                {"observed_per_hour": round(b.observed_per_hour, 4),
                 "budget_per_hour": round(b.expected_per_hour, 4), "alerts": b.raised},
            )  # fmt: skip

    def handle_data_quality(self, event: DataQualityEvent) -> None:
        """An asset's windows stopped (or resumed) because of stale or bad data: published once
        per episode on the events topic."""
        self._report_quality(event)
        if self.on_data_quality is not None:
            self.on_data_quality(event)

    def _report_quality(self, event: DataQualityEvent | SourceQualityEvent) -> None:
        """The one place `data_quality` events are made: from the transitions of the asset
        monitors (in the pipelines' output) and of the source monitor, each about its own
        subject (the asset or the source), each reported once per change."""
        raised = event.event is DataQualityEventKind.RAISED
        self.report_event(
            EventType.DATA_QUALITY,
            event.describe(),
            "warning" if raised else "info",
            event.subject,
            event.details(),
        )

    async def _process(self) -> None:
        while True:
            group = [await self._queue.get()]
            try:
                await self._gather(group)
            except asyncio.CancelledError:
                self.handle(group)  # taken from the queue: not lost when the agent stops
                raise
            self.handle(group)
            self.last_progress = time.monotonic()

    async def _gather(self, group: list[Batch]) -> None:
        """Add to `group` what else has arrived (bounded, so progress stays visible) and, while
        fewer batches than polled sources are in it, what arrives within `GATHER_S`: polls of
        many devices land within milliseconds of each other, and handled together, assets
        sharing a model share one detector call (`score_together`)."""
        queue = self._queue
        while len(group) < MAX_GROUP and not queue.empty():
            group.append(queue.get_nowait())
        if len(group) >= self._polled:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._gather_s):
                while len(group) < min(self._polled, MAX_GROUP):
                    group.append(await queue.get())
                    while len(group) < MAX_GROUP and not queue.empty():
                        group.append(queue.get_nowait())

    def progressing(self) -> bool:
        """The pipeline is keeping up: nothing waits in its queue (idle but healthy: devices
        quiet or offline) or it handled a batch within `observability.stall_s`."""
        stall = self.cfg.settings.observability.stall_s
        return self._queue.empty() or time.monotonic() - self.last_progress < stall

    def source_stalls(self) -> dict[str, float]:
        """Sources that have delivered nothing for longer than their stall limit (since the
        start when they never did): name → seconds without a batch."""
        now = time.monotonic()
        out: dict[str, float] = {}
        for src in self.sources:
            last = self.source_last_batch.get(src.name, self.started_at)
            limit = self.source_stall_s.get(src.name, MIN_STALL_S)
            if now - last > limit:
                out[src.name] = round(now - last, 1)
        return out

    def asset_stall_limit(self, pipeline: AssetPipeline) -> float:
        """How long an asset fed good data may go without a scored window: twice its window
        plus a hop of data time, at least 30 s."""
        w = pipeline.windows
        return max((2 * w.window + w.hop) * pipeline.asset.sample_period_s, MIN_STALL_S)

    def asset_stalls(self) -> dict[str, float]:
        """Assets whose data is good (a good reading within the limit, no invalid sample within
        it) but that have scored no window for longer than `asset_stall_limit`: name → seconds
        since the last window."""
        now = time.monotonic()
        out: dict[str, float] = {}
        for p in self.pipelines:
            limit = self.asset_stall_limit(p)
            last_input = self.asset_last_input.get(p.name)
            if last_input is None or now - last_input > limit:
                continue  # no good data: the data_quality and source checks speak for it
            if now - self.asset_last_invalid.get(p.name, -math.inf) <= limit:
                continue
            last_window = self.asset_last_window.get(p.name, self.started_at)
            if now - last_window > limit:
                out[p.name] = round(now - last_window, 1)
        return out

    def replace_pipeline(self, old: AssetPipeline, new: AssetPipeline) -> None:
        """Swap an asset's pipeline between two batches (the event loop runs one at a time)."""
        self.pipelines[self.pipelines.index(old)] = new
        for routed in self._routes.values():
            for i, p in enumerate(routed):
                if p is old:
                    routed[i] = new
        self.models[new.name] = new.model_version

    async def _supervise_loop(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a loop of the agent's own (not a source) for as long as the agent runs: a fault
        is logged (rate-limited), counted (`edge_agent_loop_faults_total`, /healthz
        `loop_faults`), reported upstream as `loop_fault`, and the loop started again after a
        backoff."""
        backoff = Backoff.from_config(BackoffConfig())
        while True:
            try:
                await loop()
            except Exception as exc:
                kind, reason = _describe(exc)
                faults = self.loop_faults.setdefault(name, {})
                faults[kind] = faults.get(kind, 0) + 1
                self._fault_log.log(
                    logging.ERROR, f"fault:{name}:{kind}", "%s stopped: %s (restarting)",
                    name, reason,
                )  # fmt: skip
                self.report_event(
                    EventType.LOOP_FAULT, f"{name} loop stopped: {reason} (restarting)", "error",
                    name, {"kind": kind, "reason": reason},
                )  # fmt: skip
            await asyncio.sleep(backoff.next_delay())

    async def _reload_on_request(self) -> None:
        while True:
            await self.reload_requested.wait()
            self.reload_requested.clear()
            outcome = reload_agent(self)
            self.reload_counts[outcome] = self.reload_counts.get(outcome, 0) + 1

    async def _wait_stop(self) -> None:
        await self.stop.wait()
        self.monitor.stopping()
        for ev in self.events.drain():  # folded events still held: the last state goes out
            self._emit(ev)
        log.info("stopping: delivering queued messages, publishing offline status")
        await self.publisher.flush(SHUTDOWN_FLUSH_S)
        if self.sparkplug is not None:
            await self.sparkplug.close()
        await self.publisher.close()
        raise _Stop

    def resume_open_alerts(self) -> None:
        """Alerts that consumers hold open from the previous run (the outbox keeps them): each
        continues under its id in its asset's policy, or, when the asset is gone from the
        config, is cleared now with the reason."""
        self.publisher.open()
        by_name = {p.name: p for p in self.pipelines}
        s = self.cfg.settings
        for asset, held in sorted(self.publisher.outbox.open_alerts().items()):
            pipeline = by_name.get(asset)
            if pipeline is not None:
                pipeline.policy.resume(held.alert_id, held.raised_ts, held.severity)
                log.info("alert %s of %s held open from before: continued", held.alert_id, asset)
                continue
            event = orphan_cleared(
                asset, held.alert_id, held.severity, held.threshold, held.model_version,
                time.time(), "the asset is no longer in this gateway's config",
            )  # fmt: skip
            log.warning("alert cleared %s: %s", event.alert_id, event.message)
            body = alert_payload(event, s.identity.site, s.identity.gateway)
            self.publisher.submit_alert(asset, body, alert_change(event))
        for alert_id, side in sorted(self.publisher.outbox.open_side_alerts().items()):
            body = side_alert_cleared(side, time.time())
            log.warning("alert cleared %s: %s", alert_id, body["message"])
            self.publisher.submit_alert(
                side.asset, body, SideAlertChange(alert_id, side.asset, None)
            )

    async def run(self) -> None:
        self.resume_open_alerts()
        if self.http is not None:
            try:
                await self.http.start()
            except OSError as exc:
                m = self.cfg.settings.observability.metrics
                raise MetricsStartupError(
                    f"observability.metrics: cannot listen on {m.host}:{m.port}: "
                    f"{exc.strerror or exc}"
                ) from None
            log.info("metrics and health on http://%s:%d/metrics", self.http.host, self.http.port)
        try:
            async with asyncio.TaskGroup() as tg:
                for src in self.sources:
                    tg.create_task(self._supervise(src), name=f"source:{src.name}")
                tg.create_task(self._process(), name="pipeline")
                tg.create_task(self._flush_folded_events(), name="events")
                tg.create_task(self.publisher.run(), name="upstream:mqtt")
                tg.create_task(self._wait_stop(), name="stop")
                tg.create_task(self.monitor.run(), name="service-monitor")
                tg.create_task(self._reload_on_request(), name="reload")
                if self.fleet is not None:
                    tg.create_task(self._supervise_loop("fleet", self.fleet.run), name="fleet")
                if self.sparkplug is not None:
                    sp = self.sparkplug.run
                    tg.create_task(self._supervise_loop("sparkplug", sp), name="upstream:sparkplug")
                if self.http is not None:
                    tg.create_task(self.http.serve_forever(), name="http")
                if not self.sources:
                    self.sources_started.set()
                for p in self.pipelines:
                    self.report_model_loaded(p)
                self.ready.set()
                log.info(
                    "agent running: %d source(s), %d asset(s)",
                    len(self.sources),
                    len(self.pipelines),
                )
        except* _Stop:
            pass
        finally:
            # Whatever stopped the agent: the rows of every batch the pipelines took are written.
            for recorder in self.recorders.values():
                recorder.close()
            # An MQTT client interrupted mid-connect (a strict source failing at start) is left
            # in a reference cycle; collected here, while the event loop still runs, its
            # finalizer closes its sockets quietly instead of printing a traceback at exit.
            gc.collect()
        log.info("stopped")


def _describe(exc: BaseException) -> tuple[str, str]:
    """(kind, reason) of a fault: the exception's class and its text, bounded."""
    text = str(exc) or type(exc).__name__
    if len(text) > 300:
        text = text[:300] + "…"
    return type(exc).__name__, text


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return f"{ts:g}"


async def run_until_signal(agent: Agent, watchdog: StopWatchdog | None = None) -> None:
    """Run until SIGTERM/SIGINT (then stop, within `watchdog`'s deadline when given)."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        agent.stop.set()
        if watchdog is not None:
            watchdog.arm(loop)

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, agent.reload_requested.set)
    await agent.run()
