"""Anomaly scoring with ONNX Runtime on the CPU, one thread, batched across windows."""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_agent.inference.model_io import INPUT, OUTPUTS
from edge_agent.types import FloatArray


class Detector:
    """Runs a bundle's model: (batch, window, signals) normalized windows →
    (scores (batch,), per-signal errors (batch, signals)). `input_name` and `outputs` come from
    the manifest (`model.input`, `model.outputs`, the contract of `model_io.py`); the defaults
    are the contract's, for tools that run a model file without its manifest."""

    def __init__(
        self,
        model_path: Path,
        input_name: str = INPUT,
        outputs: Sequence[str] = OUTPUTS,
        threads: int = 1,
    ) -> None:
        opts = ort.SessionOptions()
        # One thread: the gateway's cores belong to the plant's other services too, and windows of
        # this size gain nothing from intra-op parallelism.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        # No memory arena: it keeps the largest batch's buffers per session (MBs after a batched
        # replay) and buys nothing measurable for windows this small.
        opts.enable_cpu_mem_arena = False
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
        have = {o.name for o in self._session.get_outputs()}
        if missing := [o for o in outputs if o not in have]:
            raise ValueError(f"{model_path}: model has no output {missing[0]!r} (has {have})")
        self.outputs = list(outputs)

    def score(self, windows: FloatArray) -> tuple[FloatArray, FloatArray]:
        if windows.ndim == 2:
            windows = windows[np.newaxis]
        score, errors = self._session.run(
            self.outputs, {self._input: np.ascontiguousarray(windows, np.float32)}
        )
        return np.asarray(score, np.float32), np.asarray(errors, np.float32)


class FaultClassifier:
    """Runs a bundle's classifier head: normalized windows → class probabilities."""

    def __init__(self, model_path: Path, labels: list[str], input_name: str, output: str) -> None:
        self._detector = Detector(model_path, input_name, [output])
        self._output = output
        self.labels = labels

    def classify(self, window: FloatArray) -> tuple[tuple[str, float], ...]:
        if window.ndim == 2:
            window = window[np.newaxis]
        (probs,) = self._detector.session.run([self._output], {self._detector.input: window})
        p = np.asarray(probs, np.float64)[0]
        order = np.argsort(-p)
        return tuple((self.labels[i], round(float(p[i]), 4)) for i in order)


class DetectorPool:
    """Detectors by (model file content, input and output names, threads): assets whose bundles
    carry the same model bytes share one ONNX Runtime session (about 0.6 MB each) instead of
    loading it per asset. Sessions are stateless between calls, so sharing cannot change any
    score. Weak values: a session goes when the last pipeline using it does (e.g. after a
    reload). One pool per agent, owned by it (no module-level registry: tests and replays get
    their own)."""

    def __init__(self) -> None:
        self._detectors: weakref.WeakValueDictionary[
            tuple[str, str, tuple[str, ...], int], Detector
        ] = weakref.WeakValueDictionary()

    def __len__(self) -> int:
        return len(self._detectors)

    def get(
        self,
        model_path: Path,
        input_name: str = INPUT,
        outputs: Sequence[str] = OUTPUTS,
        threads: int = 1,
    ) -> Detector:
        """A Detector for the model, reused when an identical model file is already loaded."""
        with model_path.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        key = (digest, input_name, tuple(outputs), threads)
        detector = self._detectors.get(key)
        if detector is None:
            detector = Detector(model_path, input_name, outputs, threads)
            self._detectors[key] = detector
        return detector
