"""Anomaly scoring with ONNX Runtime on the CPU, one thread, batched across windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_agent.types import FloatArray


class Detector:
    """Runs a bundle's model: (batch, window, signals) normalized windows →
    (scores (batch,), per-signal errors (batch, signals))."""

    def __init__(self, model_path: Path, input_name: str = "window", threads: int = 1) -> None:
        opts = ort.SessionOptions()
        # One thread: the gateway's cores belong to the plant's other services too, and windows of
        # this size gain nothing from intra-op parallelism.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ValueError(f"{model_path}: ONNX Runtime cannot load the model: {exc}") from None
        self._input = input_name
        self.session = self._session
        self.input = input_name
        names = {i.name for i in self._session.get_inputs()}
        if input_name not in names:
            raise ValueError(f"{model_path}: model has no input {input_name!r} (has {names})")

    def score(self, windows: FloatArray) -> tuple[FloatArray, FloatArray]:
        if windows.ndim == 2:
            windows = windows[np.newaxis]
        score, errors = self._session.run(
            ["score", "signal_error"], {self._input: np.ascontiguousarray(windows, np.float32)}
        )
        return np.asarray(score, np.float32), np.asarray(errors, np.float32)


class FaultClassifier:
    """Runs a bundle's classifier head: normalized windows → class probabilities."""

    def __init__(self, model_path: Path, labels: list[str], input_name: str, output: str) -> None:
        self._detector = Detector(model_path, input_name)
        self._output = output
        self.labels = labels

    def classify(self, window: FloatArray) -> tuple[tuple[str, float], ...]:
        if window.ndim == 2:
            window = window[np.newaxis]
        (probs,) = self._detector.session.run([self._output], {self._detector.input: window})
        p = np.asarray(probs, np.float64)[0]
        order = np.argsort(-p)
        return tuple((self.labels[i], round(float(p[i]), 4)) for i in order)
