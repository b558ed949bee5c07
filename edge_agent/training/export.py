"""ONNX export and static int8 quantization (QDQ, per-channel weights) with ONNX Runtime."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edge_agent.inference.model_io import BATCH_AXIS, INPUT, OUTPUTS, SCORE
from edge_agent.training.model import Scorer
from edge_agent.types import FloatArray

log = logging.getLogger(__name__)


def export_onnx(scorer: Scorer, window: int, n_signals: int, path: Path) -> None:
    scorer.eval()
    example = torch.zeros(1, window, n_signals)
    torch.onnx.export(
        scorer,
        (example,),
        str(path),
        input_names=[INPUT],
        output_names=list(OUTPUTS),
        dynamic_axes={name: {0: BATCH_AXIS} for name in (INPUT, *OUTPUTS)},
        opset_version=17,
        dynamo=False,
    )


class _Windows(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, windows: FloatArray, batch: int = 64) -> None:
        self._batches = [windows[i : i + batch] for i in range(0, len(windows), batch)]
        self._i = 0

    def get_next(self) -> dict[str, FloatArray] | None:
        if self._i >= len(self._batches):
            return None
        self._i += 1
        return {INPUT: self._batches[self._i - 1]}

    def rewind(self) -> None:
        self._i = 0


def quantize_int8(fp32: Path, int8: Path, calibration: FloatArray) -> None:
    """Static QDQ quantization calibrated on normal windows. Only the convolutions are quantized:
    the error arithmetic at the end stays in float so small errors are not rounded away."""
    prepped = fp32.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=True)
    try:
        quantize_static(
            str(prepped),
            str(int8),
            _Windows(calibration),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "ConvTranspose"],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    finally:
        prepped.unlink(missing_ok=True)


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_scores(sess: ort.InferenceSession, windows: FloatArray, batch: int = 256) -> FloatArray:
    out = [
        sess.run([SCORE], {INPUT: windows[i : i + batch]})[0] for i in range(0, len(windows), batch)
    ]
    return np.concatenate(out).astype(np.float32)
