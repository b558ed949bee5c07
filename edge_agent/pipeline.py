"""One asset's path from batches to alert events: assembler → windows → scaler → detector →
policy. No I/O apart from the detector's in-process ONNX Runtime call; `replay` and the live agent
run this very class."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from edge_agent.alerts.policy import AlertPolicy, PolicyParams, SignalInfo
from edge_agent.config import Asset
from edge_agent.inference.bundle import Bundle, BundleError
from edge_agent.inference.detector import Detector, DetectorPool, FaultClassifier
from edge_agent.stream.assembler import Assembler
from edge_agent.stream.level_shift import LevelShift, ShiftParams
from edge_agent.stream.normalize import Scaler
from edge_agent.stream.quality import DataQualityMonitor
from edge_agent.stream.windows import WindowBuffer
from edge_agent.types import (
    AlertEvent,
    AlertEventKind,
    Batch,
    DataQualityEvent,
    FloatArray,
    Score,
)

NORMAL_CLASS = "normal"


@dataclass(slots=True)
class AssetStats:
    samples: int = 0
    invalid_samples: int = 0
    windows: int = 0
    last_score: float = float("nan")
    alerts: int = 0


class AssetPipeline:
    def __init__(self, asset: Asset, bundle: Bundle, detectors: DetectorPool | None = None) -> None:
        m = bundle.manifest
        bundle.check_signals([s.name for s in asset.signals])
        if not np.isclose(asset.sample_period_s, m.sample_period_s, rtol=1e-6):
            raise BundleError(
                f"{bundle.directory}: bundle sample period {m.sample_period_s} s differs from "
                f"asset {asset.name!r} sample_period_s {asset.sample_period_s} s"
            )
        if asset.window is not None and asset.window != m.window:
            raise BundleError(
                f"{bundle.directory}: bundle window {m.window} differs from asset {asset.name!r} "
                f"window {asset.window}"
            )
        self.asset = asset
        self.name = asset.name
        self.bundle = bundle
        self.model_version = m.model_version
        self.assembler = Assembler(
            {(s.source, s.point_name): i for i, s in enumerate(asset.signals)},
            period=asset.sample_period_s,
            max_age=asset.effective_max_age_s,
            stuck_after=m.stuck_after_samples,
        )
        al = m.alerting
        # With a gross cut, a window on every sample by default: a gross fault then raises
        # within a sample or two of its onset instead of waiting for the next hop (issue 17);
        # persistence is scaled to the hop so marginal scores wait as many samples as before.
        hop = asset.hop or (1 if al is not None else m.hop)
        self.windows = WindowBuffer(m.window, hop, len(m.signals))
        self.scaler = Scaler(m.scaler.mean, m.scaler.scale)
        ls = m.level_shift
        self.level_shift = (
            LevelShift(
                ShiftParams(
                    ls.window,
                    ls.time_constant,
                    ls.offset,
                    [np.inf if t is None else t for t in ls.tolerance],
                )
            )
            if ls is not None
            else None
        )
        self._raise = m.threshold.raise_
        # The agent passes its pool so assets with identical models share a session.
        self.detector = (
            detectors.get(bundle.model_path, m.model.input, m.model.outputs)
            if detectors is not None
            else Detector(bundle.model_path, m.model.input, m.model.outputs)
        )
        c = m.classifier
        self.classifier = (
            FaultClassifier(bundle.directory / c.file, c.labels, c.input, c.output) if c else None
        )
        self.policy = AlertPolicy(
            asset.name,
            PolicyParams(
                raise_threshold=m.threshold.raise_,
                clear_threshold=m.threshold.clear,
                update_interval_s=asset.alert_update_interval_s,
                gross_threshold=al.gross if al is not None else None,
                quiet_period_s=asset.alert_quiet_period_s
                if asset.alert_quiet_period_s is not None
                else (al.quiet_period_s if al is not None else 0.0),
            ).for_hop(m.hop, hop),
            SignalInfo(
                names=m.signals,
                units=m.units or [""] * len(m.signals),
                normal_low=m.normal_range.low,
                normal_high=m.normal_range.high,
            ),
            m.model_version,
        )
        self.stats = AssetStats()
        self.last_score: Score | None = None
        self.quality = DataQualityMonitor(asset.name, [s.name for s in asset.signals])
        self._quality_events: list[DataQualityEvent] = []

    @property
    def sources(self) -> set[str]:
        return self.assembler.sources

    def take_quality_events(self) -> list[DataQualityEvent]:
        """Data-quality changes found by the pushes since the last call (then forgotten)."""
        events, self._quality_events = self._quality_events, []
        return events

    def _classified(self, event: AlertEvent, normalized: FloatArray) -> AlertEvent:
        """With a classifier in the bundle, name the likely fault on raise and update."""
        if self.classifier is None or event.event is AlertEventKind.CLEARED:
            return event
        probs = self.classifier.classify(normalized)
        label, p = probs[0]
        if label == NORMAL_CLASS:
            return dataclasses.replace(event, probabilities=probs)
        message = event.message.replace(": anomaly", f": {label} suspected (p={p:.2f}), anomaly", 1)
        return dataclasses.replace(event, kind=label, message=message, probabilities=probs)

    def shift_ratio(self, sample_values: FloatArray, valid: bool) -> FloatArray | None:
        """Feed the level-shift stage one sample; its per-signal ratios (None without one)."""
        if self.level_shift is None:
            return None
        if not valid:
            self.level_shift.gap()
            return None
        ratios: FloatArray = self.level_shift.push(self.scaler.apply(sample_values)).astype(
            np.float32
        )
        return ratios

    def combined(
        self,
        score: float,
        errors: FloatArray,
        ratios: FloatArray | None,
        raise_threshold: float | None = None,
    ) -> tuple[float, FloatArray]:
        """The window's score: the model's, or the level shift's scaled to the raise threshold
        (ratio 1 = raise) when that is higher; the signals named are those of the larger one."""
        if ratios is None:
            return score, errors
        r = np.nan_to_num(ratios, nan=0.0)
        level = float(r.max()) * (raise_threshold or self._raise)
        if level <= score:
            return score, errors
        return level, r.astype(np.float32)

    def push(self, batch: Batch) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        for sample in self.assembler.push(batch):
            self.stats.samples += 1
            if not sample.valid:
                self.stats.invalid_samples += 1
            if (q_event := self.quality.update(sample)) is not None:
                self._quality_events.append(q_event)
            ratios = self.shift_ratio(sample.values, sample.valid)
            window = self.windows.push(sample)
            if window is None:
                continue
            self.stats.windows += 1
            normalized = self.scaler.apply(window)
            scores, errors = self.detector.score(normalized)
            value, why = self.combined(float(scores[0]), errors[0], ratios)
            score = Score(self.name, sample.ts, value, why, window[-1])
            self.last_score = score
            self.stats.last_score = score.score
            event = self.policy.update(score)
            if event is not None:
                self.stats.alerts += 1
                events.append(self._classified(event, normalized))
        return events
