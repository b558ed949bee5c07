"""The contract between a bundle's ONNX models and everything that makes or runs them.

Written down once here because three places must agree on it: training exports the graphs with
these names (`training/export.py`, `training/classifier.py`), training calibrates the thresholds
by reading the outputs back, and the runtime's detector runs them. The manifest records the
names it was exported with (`model.input`, `model.outputs`); the runtime reads them from there
and refuses, on bundle load, a bundle whose outputs are not this contract's (`bundle.py`), so a
model that would be misread is never scored.

Anomaly model (`model.file`):
  input  `window`        float32 (batch, window, signals): windows standardized with the
                         manifest's scaler, oldest sample first.
  output `score`         float32 (batch,): the anomaly score compared with the thresholds.
  output `signal_error`  float32 (batch, signals): each signal's share of it (the score is
                         their mean), named in alerts.

Fault classifier (`classifier.file`, optional): the same input; output `probabilities`, float32
(batch, classes) in the order of `classifier.labels`.

The batch axis is dynamic in every graph: replays score many windows per call, the agent one.
"""

from __future__ import annotations

from collections.abc import Sequence

INPUT = "window"
SCORE = "score"
SIGNAL_ERROR = "signal_error"
# In this order in the manifest and in the graph: the detector unpacks them by position.
OUTPUTS: tuple[str, str] = (SCORE, SIGNAL_ERROR)
CLASSIFIER_OUTPUT = "probabilities"
BATCH_AXIS = "batch"


def check_outputs(outputs: Sequence[str]) -> None:
    """Raise ValueError, naming both, when a manifest's `model.outputs` is not the contract's."""
    if tuple(outputs) != OUTPUTS:
        raise ValueError(
            f"model outputs {list(outputs)} are not the ones this agent runs "
            f"{list(OUTPUTS)} (the score, then the per-signal error)"
        )
