"""Detection quality from per-sample alert state against labels. Pure numpy, no I/O.

Two views, because they answer different questions:
- sample level: precision, recall, F1, false alarm rate (share of normal samples under an alert)
  and missed alarm rate (share of fault samples without one);
- episode level: each contiguous run of fault labels is one episode; it is detected if an alert
  is active at some sample of it; the delay is from its first sample to the first alerted sample.
  Alerts raised while the label is normal are false alarms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

NORMAL_LABELS = frozenset({"", "normal", "0", "ok", "none", "false"})


def is_fault(labels: Sequence[str]) -> npt.NDArray[np.bool_]:
    return np.array([lab.strip().lower() not in NORMAL_LABELS for lab in labels], dtype=bool)


@dataclass(frozen=True)
class DetectionQuality:
    samples: int
    fault_samples: int
    precision: float
    recall: float
    f1: float
    false_alarm_rate: float
    missed_alarm_rate: float
    episodes: int
    episodes_detected: int
    mean_delay_s: float
    false_alarms: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, end) index pairs of True runs."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def evaluate(
    ts: npt.NDArray[np.float64],
    alert: npt.NDArray[np.bool_],
    fault: npt.NDArray[np.bool_],
    raised_at: Sequence[float],
) -> DetectionQuality:
    tp = int(np.sum(alert & fault))
    fp = int(np.sum(alert & ~fault))
    fn = int(np.sum(~alert & fault))
    negatives = int(np.sum(~fault))
    precision = tp / (tp + fp) if tp + fp else (1.0 if not fault.any() else 0.0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    delays, detected = [], 0
    for start, end in _runs(fault):
        hits = np.flatnonzero(alert[start:end])
        if hits.size:
            detected += 1
            delays.append(float(ts[start + hits[0]] - ts[start]))
    idx = np.searchsorted(ts, np.asarray(raised_at, dtype=np.float64))
    false_alarms = int(sum(1 for i in idx if i < len(fault) and not fault[i]))
    episodes = len(_runs(fault))
    return DetectionQuality(
        samples=len(ts),
        fault_samples=int(fault.sum()),
        precision=precision,
        recall=recall,
        f1=f1,
        false_alarm_rate=fp / negatives if negatives else 0.0,
        missed_alarm_rate=fn / (tp + fn) if tp + fn else 0.0,
        episodes=episodes,
        episodes_detected=detected,
        mean_delay_s=float(np.mean(delays)) if delays else float("nan"),
        false_alarms=false_alarms,
    )


def evaluate_pooled(
    parts: Sequence[
        tuple[
            npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_], Sequence[float]
        ]
    ],
) -> DetectionQuality:
    """`evaluate` pooled over separate recordings (one part per file: ts, alert, fault, raised):
    sample-level figures from all samples together; episodes counted per part, so a fault at the
    end of one file and one at the start of the next stay two episodes."""
    if not parts:
        return evaluate(np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), [])
    each = [evaluate(*part) for part in parts]
    alert = np.concatenate([p[1] for p in parts])
    fault = np.concatenate([p[2] for p in parts])
    whole = evaluate(np.arange(len(alert), dtype=np.float64), alert, fault, [])
    detected = sum(q.episodes_detected for q in each)
    delay = sum(q.mean_delay_s * q.episodes_detected for q in each if q.episodes_detected)
    return DetectionQuality(
        samples=whole.samples,
        fault_samples=whole.fault_samples,
        precision=whole.precision,
        recall=whole.recall,
        f1=whole.f1,
        false_alarm_rate=whole.false_alarm_rate,
        missed_alarm_rate=whole.missed_alarm_rate,
        episodes=sum(q.episodes for q in each),
        episodes_detected=detected,
        mean_delay_s=delay / detected if detected else float("nan"),
        false_alarms=sum(q.false_alarms for q in each),
    )
