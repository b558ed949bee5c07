"""One asset's path from batches to alert events: assembler → windows → scaler → detector →
policy. No I/O apart from the detector's in-process ONNX Runtime call; `replay` and the live agent
run this very class.

What a push produced comes back as one `StepOutput` (grid samples, scores, alert events,
data-quality transitions); consumers read nothing else back from the pipeline. `stats` are
running counters for the observers (metrics, health), not a way to find out what a push did."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edge_agent.alerts.budget import FalseAlarmBudget
from edge_agent.alerts.policy import AlertPolicy, PolicyParams, SignalInfo
from edge_agent.config import AssetConfig
from edge_agent.energy.meter import EnergySignals
from edge_agent.energy.stage import EnergyStage
from edge_agent.inference.bundle import AlertingSpec, Bundle, BundleError
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
    EnergyReport,
    FloatArray,
    Score,
    StepOutput,
)

if TYPE_CHECKING:
    from edge_agent.forecast.stage import ForecastStage

NORMAL_CLASS = "normal"


def quiet_period(configured: float | str | None, alerting: AlertingSpec | None) -> float:
    """The asset's quiet period: as configured in seconds (0: no episodes beyond the hysteresis),
    else (by default, or "bundle") the bundle's calibrated one (0 when the bundle has none)."""
    if configured is None or configured == "bundle":
        return alerting.quiet_period_s if alerting is not None else 0.0
    return float(configured)


def forecast_stage(
    asset: AssetConfig, bundle_signals: list[str], low: list[float], high: list[float]
) -> ForecastStage | None:
    """The asset's time-to-limit forecast stage (issue 14): None when forecasts are off or no
    signal has a limit. The bundle's normal range of each signal goes into the alert's
    contribution, as in the detector's alerts."""
    f = asset.forecast
    if not f.enabled or not asset.limits:
        return None
    # Imported only for an asset that forecasts (issue 16: unused features stay out of memory).
    from edge_agent.forecast.stage import ForecastParams, ForecastStage

    ranges = dict(zip(bundle_signals, zip(low, high, strict=True), strict=True))
    names = [s.name for s in asset.signals]
    return ForecastStage.build(
        asset.name,
        names,
        asset.limits,
        ForecastParams(
            horizon_s=f.horizon_s,
            bucket_s=f.bucket_s,
            history_s=f.history_s,
            min_history_s=f.min_history_s,
            update_interval_s=f.update_interval_s,
            sample_period_s=asset.sample_period_s,
        ),
        [ranges.get(n, (float("nan"), float("nan"))) for n in names],
    )


# Scores a stack of normalized windows: (scores, per-signal errors), one row per window. The
# detector's `score` by default; the quality benchmark passes others (fp32, teacher).
Scorer = Callable[[FloatArray], tuple[FloatArray, FloatArray]]


@dataclass(slots=True)
class AssetStats:
    samples: int = 0
    invalid_samples: int = 0
    windows: int = 0
    last_score: float = float("nan")
    alerts: int = 0


class AssetPipeline:
    def __init__(
        self,
        asset: AssetConfig,
        bundle: Bundle,
        detectors: DetectorPool | None = None,
        energy: EnergySignals | None = None,
    ) -> None:
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
                    # A level heading back within the span the bundle calibrated for an
                    # episode is its recovery, not a new shift (stream/level_shift.py); it is a
                    # property of the asset's data, so an asset that turns episodes off keeps it.
                    anchor_time_constant=(
                        al.quiet_period_s / m.sample_period_s
                        if al is not None and al.quiet_period_s > 0
                        else None
                    ),
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
                # Training never writes a gross cut below raise; a raise threshold edited (and
                # re-signed) above it must not be undercut by it either.
                gross_threshold=max(al.gross, m.threshold.raise_) if al is not None else None,
                quiet_period_s=quiet_period(asset.alert_quiet_period_s, al),
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
        self._unnamed = False  # the open alert's fault class is not known yet (classifier)
        # Raised alerts per hour of valid data against the bundle's calibration (issue 19).
        self.budget = (
            FalseAlarmBudget(al.expected_false_alerts_per_hour) if al is not None else None
        )
        self.quality = DataQualityMonitor(asset.name, [s.name for s in asset.signals])
        self.forecast = forecast_stage(asset, m.signals, m.normal_range.low, m.normal_range.high)
        # Energy and efficiency (edge_agent/energy/), when the asset's profile declares them.
        self.energy = None
        if energy is not None:
            # The model's stuck limits hold for the energy points that are model signals too.
            limits = m.stuck_after_samples or [None] * len(asset.signals)
            stuck = {
                (s.source, s.point_name): n for s, n in zip(asset.signals, limits, strict=True)
            }
            self.energy = EnergyStage(asset, energy, m.efficiency, m.model_version, stuck)

    @property
    def sources(self) -> set[str]:
        if self.energy is not None:
            return self.assembler.sources | self.energy.sources
        return self.assembler.sources

    @property
    def raise_threshold(self) -> float:
        return self.policy.params.raise_threshold

    @property
    def alert_active(self) -> bool:
        """An alert is open (raised, its episode not cleared)."""
        return self.policy.active_alert is not None

    @property
    def condition_active(self) -> bool:
        """An open alert's condition holds now (not returned to normal inside its episode)."""
        return self.policy.condition_active

    def carry_state_from(self, old: AssetPipeline) -> bool:
        """Take over the live state of `old`, the pipeline this one replaces on a reload: the
        assembler, the data-quality monitor, the counters and the alert lifecycle (an alert
        raised under the old model is cleared under this one, with the same alert_id), and the
        window buffer when the window and hop are the same. True when the buffer was kept."""
        self.assembler = old.assembler
        self.quality = old.quality
        if old.energy is not None:
            # Energy settings need a restart; the interval in progress goes on under this
            # bundle's efficiency model.
            old.energy.use_model(self.bundle.manifest.efficiency, self.model_version)
            self.energy = old.energy
        self.stats = old.stats
        if self.forecast is not None and old.forecast is not None:
            self.forecast = old.forecast  # its levels and open `predicted` alerts go on
        # Keep the alert lifecycle; take this model's thresholds, signal ranges and version.
        old.policy.params = self.policy.params
        old.policy.signals = self.policy.signals
        old.policy.model_version = self.policy.model_version
        self.policy = old.policy
        w_old, w_new = old.windows, self.windows
        # Same signals (a reload never changes them), so the same window and hop is the same
        # shape.
        same_shape = (w_old.window, w_old.hop) == (w_new.window, w_new.hop)
        if same_shape:
            self.windows = w_old
        return same_shape

    def budget_exceeded(self, out: StepOutput) -> str | None:
        """Feed the false-alarm budget what a push produced; the message of the one event to
        send when raised alerts come several-fold faster than the calibration expects."""
        if self.budget is None:
            return None
        raised = sum(1 for e in out.alerts if e.event is AlertEventKind.RAISED)
        valid = len(out.valid) - out.invalid_samples
        return self.budget.observe(valid, self.asset.sample_period_s, raised)

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
        # NaN ratios (the stage's first window not complete yet) count as no shift. The maximum
        # is NaN when any is; only then is a cleaned copy needed (this runs for every sample).
        top = float(ratios.max())
        if math.isnan(top):
            ratios = np.nan_to_num(ratios, nan=0.0)
            top = float(ratios.max())
        level = top * (raise_threshold or self._raise)
        if level <= score:
            return score, errors
        return level, ratios.astype(np.float32)

    def push(self, batch: Batch) -> StepOutput:
        """Everything this batch produced: grid samples, scores, alert events and data-quality
        changes. `begin`, the detector on the batch's windows, then `complete`: the agent does
        the same with the detector call shared by the assets whose bundles share a model."""
        step = self.begin(batch)
        ((raw, errors),) = score_together([(self, step)])
        return self.complete(step, raw, errors)

    def begin(self, batch: Batch) -> PendingStep:
        """Every stage before the detector, for one batch: its samples, their windows (scaled,
        stacked for one detector call) and what the other stages produced."""
        acc = _Collected()
        windows = list(self._advance(batch, acc))
        normalized = self._normalize(windows) if windows else _NO_WINDOWS
        return PendingStep(batch, acc, windows, normalized)

    def complete(self, step: PendingStep, raw: FloatArray, errors: FloatArray) -> StepOutput:
        """The batch's output, given the detector's (scores, per-signal errors) for the
        windows of `step`, in their order."""
        scores: list[Score] = []
        alerts: list[AlertEvent] = []
        if step.windows:
            self._judge(step.windows, step.normalized, raw, errors, self.policy, scores, alerts)
        return step.collected.output(scores, alerts)

    def run(
        self,
        batches: Iterable[Batch],
        scorer: Scorer | None = None,
        policy: AlertPolicy | None = None,
        max_batch: int = 1,
    ) -> StepOutput:
        """Push `batches` in order and return what they produced, each part in time order.

        Windows are scored `max_batch` at a time in one detector call (the batched replay
        uses large batches for speed; a score may then differ from the window's score alone in
        the last float bits, from ONNX Runtime's batched kernels, as it always has). The
        alert policy sees the scores in time order either way. `scorer` and `policy` replace
        the bundle's detector and alert policy (the quality benchmark compares detectors on
        identical windows); the data-quality monitor and the level shift always run."""
        acc = _Collected()
        scores: list[Score] = []
        alerts: list[AlertEvent] = []
        pending: list[_Window] = []
        score = scorer or self.detector.score
        pol = policy or self.policy
        for batch in batches:
            for window in self._advance(batch, acc):
                pending.append(window)
                if len(pending) >= max_batch:
                    self._score(pending, score, pol, scores, alerts)
                    pending.clear()
        if pending:
            self._score(pending, score, pol, scores, alerts)
        return acc.output(scores, alerts)

    def _advance(self, batch: Batch, acc: _Collected) -> Iterator[_Window]:
        """Feed one batch through the stages before the detector, collecting their per-sample
        output in `acc`; yields each window due, in time order (scored by the caller)."""
        if self.energy is not None:
            step = self.energy.push(batch)
            acc.energy.extend(step.reports)
            acc.efficiency.extend(step.alerts)
        for sample in self.assembler.push(batch):
            acc.grid.append(sample.ts)
            acc.valid.append(sample.valid)
            self.stats.samples += 1
            if not sample.valid:
                self.stats.invalid_samples += 1
            if (q_event := self.quality.update(sample)) is not None:
                acc.quality.append(q_event)
            if self.forecast is not None:
                acc.predictions.extend(self.forecast.push(sample.ts, sample.values, sample.valid))
            ratios = self.shift_ratio(sample.values, sample.valid)
            window = self.windows.push(sample)
            if window is not None:
                yield _Window(sample.ts, window, ratios)

    def _normalize(self, windows: list[_Window]) -> FloatArray:
        # One window (the live path, nearly always): a view, not a copy, of it as a stack.
        stacked = (
            windows[0].values[np.newaxis]
            if len(windows) == 1
            else np.stack([w.values for w in windows])
        )
        return self.scaler.apply(stacked)

    def _score(
        self,
        windows: list[_Window],
        score: Scorer,
        policy: AlertPolicy,
        scores: list[Score],
        alerts: list[AlertEvent],
    ) -> None:
        """Score `windows` in one detector call, then run them through the alert policy in
        order, appending to `scores` and `alerts`."""
        normalized = self._normalize(windows)
        raw, errors = score(normalized)
        self._judge(windows, normalized, raw, errors, policy, scores, alerts)

    def _judge(
        self,
        windows: list[_Window],
        normalized: FloatArray,
        raw: FloatArray,
        errors: FloatArray,
        policy: AlertPolicy,
        scores: list[Score],
        alerts: list[AlertEvent],
    ) -> None:
        """The detector's output for `windows` through the level shift and the alert policy,
        in order, appending to `scores` and `alerts`."""
        threshold = policy.params.raise_threshold
        for i, w in enumerate(windows):
            value, why = self.combined(float(raw[i]), errors[i], w.ratios, threshold)
            s = Score(self.name, w.ts, value, why, w.values[-1])
            scores.append(s)
            self.stats.windows += 1
            self.stats.last_score = value
            event = policy.update(s)
            if event is not None:
                self.stats.alerts += 1
                classified = self._classified(event, normalized[i])
                # A gross fault raises on its first window, which holds one faulty sample: too
                # few for the classifier. Then the class follows in an `updated` event as soon
                # as a window of the open alert names one.
                self._unnamed = (
                    self.classifier is not None
                    and classified.event is not AlertEventKind.CLEARED
                    and classified.kind == "anomaly"
                )
                alerts.append(classified)
            elif self._unnamed and policy.active_alert is not None:
                named = self._classified(policy.updated(s), normalized[i])
                if named.kind != "anomaly":
                    self._unnamed = False
                    self.stats.alerts += 1
                    alerts.append(named)


def score_together(
    steps: Sequence[tuple[AssetPipeline, PendingStep]],
) -> list[tuple[FloatArray, FloatArray]]:
    """The detector's output for each step's windows, with one detector call for all the
    windows of pipelines that share a detector (assets whose bundles carry the same model share
    one through the agent's `DetectorPool`): per call at batch 1 ONNX Runtime costs ~27 µs, per
    window at batch 50 ~4 µs. A score may differ from the window's score alone in the last
    float bits (ONNX Runtime's batched kernels), as in the batched replay. Results in the order
    of `steps`; steps without windows get empty arrays."""
    out: list[tuple[FloatArray, FloatArray]] = [(_NO_SCORES, _NO_SCORES)] * len(steps)
    shared: dict[int, list[int]] = {}
    for k, (pipeline, step) in enumerate(steps):
        if step.windows:
            shared.setdefault(id(pipeline.detector), []).append(k)
    for ks in shared.values():
        detector = steps[ks[0]][0].detector
        if len(ks) == 1:
            out[ks[0]] = detector.score(steps[ks[0]][1].normalized)
            continue
        raw, errors = detector.score(np.concatenate([steps[k][1].normalized for k in ks]))
        start = 0
        for k in ks:
            end = start + len(steps[k][1].windows)
            out[k] = (raw[start:end], errors[start:end])
            start = end
    return out


@dataclass(slots=True)
class _Collected:
    """What the stages before the detector produced, per part, in time order."""

    grid: list[float] = field(default_factory=list)
    valid: list[bool] = field(default_factory=list)
    quality: list[DataQualityEvent] = field(default_factory=list)
    predictions: list[AlertEvent] = field(default_factory=list)
    energy: list[EnergyReport] = field(default_factory=list)
    efficiency: list[AlertEvent] = field(default_factory=list)

    def output(self, scores: list[Score], alerts: list[AlertEvent]) -> StepOutput:
        return StepOutput(
            tuple(self.grid), tuple(self.valid), tuple(scores), tuple(alerts),
            tuple(self.quality), tuple(self.predictions), tuple(self.energy),
            tuple(self.efficiency),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class PendingStep:
    """A batch between `begin` and `complete`: what it produced so far, and its windows
    waiting for the detector (`normalized`: scaled, stacked as the detector takes them)."""

    batch: Batch
    collected: _Collected
    windows: list[_Window]
    normalized: FloatArray


@dataclass(frozen=True, slots=True)
class _Window:
    """A window waiting to be scored: its end, raw values and the level-shift ratios then."""

    ts: float
    values: FloatArray
    ratios: FloatArray | None


_NO_SCORES: FloatArray = np.zeros(0, np.float32)
_NO_WINDOWS: FloatArray = np.zeros((0, 0, 0), np.float32)
