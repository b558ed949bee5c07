"""What the agent tells its service manager and monitoring about itself: READY/STATUS/WATCHDOG/
STOPPING over sd_notify, and the /healthz, /readyz and /metrics answers.

The watchdog is pinged from the event loop, and only while the pipeline keeps up
(`Agent.progressing`): a blocked loop or a pipeline stuck with batches waiting stops the pings,
so systemd restarts the service after `WatchdogSec=`."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from edge_agent.observability.http import Handler, Response, json_response
from edge_agent.observability.sdnotify import Notifier
from edge_agent.observability.view import AgentView

if TYPE_CHECKING:
    # The Prometheus client loads only with metrics on (`observability.metrics.enabled`).
    from edge_agent.observability.metrics import AgentMetrics

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 5.0  # STATUS= refresh (and watchdog ping when no WatchdogSec= is set)


class ServiceMonitor:
    def __init__(
        self, agent: AgentView, notifier: Notifier, metrics: AgentMetrics | None = None
    ) -> None:
        self.agent = agent
        self.notifier = notifier
        self.metrics = metrics
        self.started = False
        self._stalled_since: float | None = None

    def summary(self) -> str:
        """One line for `systemctl status` (STATUS=)."""
        a = self.agent
        up = sum(1 for s in a.sources if s.stats.connected)
        windows = sum(p.stats.windows for p in a.pipelines)
        active = sum(1 for p in a.pipelines if p.alert_active)
        broker = "connected" if a.publisher.stats.connected else "disconnected"
        return (
            f"{up}/{len(a.sources)} sources up, {len(a.pipelines)} assets, {windows} windows, "
            f"{active} active alerts, broker {broker}, outbox {a.publisher.outbox.stats.queued}"
        )

    def health(self) -> tuple[bool, dict[str, object]]:
        """Healthy while the pipeline keeps up, every configured source delivers within its
        stall limit and every asset fed good data keeps scoring windows."""
        a = self.agent
        progressing = a.progressing()
        sources = a.source_stalls()
        assets = a.asset_stalls()
        ok = progressing and not sources and not assets
        status = "ok"
        if not progressing:
            status = "stalled"
        elif sources or assets:
            status = "degraded"
        return ok, {
            "status": status,
            "pipeline_queue": a.queue_depth,
            "last_progress_s": round(time.monotonic() - a.last_progress, 3),
            # name → seconds without a batch (sources) / a scored window (assets with good data)
            "sources_stalled": sources,
            "assets_not_scoring": assets,
            # loop → faults so far (each restarted): visible, though a restarted loop is healthy
            "loop_faults": {n: sum(k.values()) for n, k in a.loop_faults.items()},
        }

    def readiness(self) -> tuple[bool, dict[str, object]]:
        a = self.agent
        sources = {s.name: s.stats.connected for s in a.sources}
        broker = a.publisher.stats.connected
        ok = self.started and broker and (not sources or any(sources.values()))
        return ok, {
            "status": "ready" if ok else "not ready",
            "started": self.started,
            "broker_connected": broker,
            "sources_connected": sources,
            "outbox_messages": a.publisher.outbox.stats.queued,
            "models": dict(a.models),
            "unsigned_models": a.unsigned_models,
        }

    def routes(self) -> dict[str, Handler]:
        out: dict[str, Handler] = {
            "/healthz": lambda: json_response(*self.health()),
            "/readyz": lambda: json_response(*self.readiness()),
        }
        if (metrics := self.metrics) is not None:
            from edge_agent.observability.metrics import CONTENT_TYPE

            out["/metrics"] = lambda: Response(200, metrics.render(), CONTENT_TYPE)
        return out

    async def run(self) -> None:
        a = self.agent
        # Ready once every source has entered its context (strict probes passed) and the
        # publisher task runs with its outbox open; devices and broker may still be unreachable,
        # which is a normal state on a plant network, not a failed start.
        await a.sources_started.wait()
        await asyncio.sleep(
            0
        )  # let the just-created publisher/pipeline tasks take their first step
        self.started = True
        self.notifier.notify("READY=1", f"STATUS={self.summary()}")
        interval = min(self.notifier.watchdog_interval_s or STATUS_INTERVAL_S, STATUS_INTERVAL_S)
        while True:
            fields = [f"STATUS={self.summary()}"]
            if a.progressing():
                if self._stalled_since is not None:
                    log.info("pipeline is making progress again")
                    self._stalled_since = None
                if self.notifier.watchdog_interval_s is not None:
                    fields.insert(0, "WATCHDOG=1")
            else:
                if self._stalled_since is None:
                    self._stalled_since = time.monotonic()
                    log.error(
                        "pipeline stalled: %d batch(es) waiting, none processed for %.0f s; "
                        "withholding watchdog pings",
                        a.queue_depth,
                        time.monotonic() - a.last_progress,
                    )
                fields[0] = f"STATUS=stalled: {self.summary()}"
            self.notifier.notify(*fields)
            await asyncio.sleep(interval)

    def stopping(self) -> None:
        self.notifier.notify("STOPPING=1", "STATUS=stopping")
