"""ONNX export and static int8 quantization with ONNX Runtime.

The detector ships as a QOperator graph (`QLinearConv` with uint8 activations, per-channel int8
weights) over the lean rewrite of the student (`training/lean.py`): see `quantize_detector`. The
fault classifier keeps the QDQ form (`quantize_int8`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
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
from torch import nn

from edge_agent.inference.model_io import BATCH_AXIS, INPUT, OUTPUTS, SCORE
from edge_agent.types import FloatArray

log = logging.getLogger(__name__)


def export_onnx(scorer: nn.Module, window: int, n_signals: int, path: Path) -> None:
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
    """Static QDQ quantization calibrated on normal windows: the fault classifier's, and the
    detector's before `quantize_detector` (`bench detector --before` rebuilds it). Only the
    convolutions are quantized: the error arithmetic stays in float."""
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


# Operators that carry int8 tensors between the integer convolutions. Quantized only where
# their input comes from the convolution stack (`_conv_stack`): the window's own transpose and
# the score arithmetic stay float, so small reconstruction errors are not rounded away.
_PASS_THROUGH = ("Relu", "Reshape", "Transpose")


def _conv_stack(path: Path) -> list[str]:
    """Names of the Conv nodes and of the pass-through nodes fed (directly or through others)
    by one: the part of the graph that runs on integers."""
    graph = onnx.load(str(path)).graph
    producer: dict[str, str] = {}
    chosen: list[str] = []
    for node in graph.node:  # ONNX graphs are stored in topological order
        fed = any(producer.get(i) in chosen for i in node.input[:1])
        if node.op_type == "Conv" or (node.op_type in _PASS_THROUGH and fed):
            chosen.append(node.name)
        for o in node.output:
            producer[o] = node.name
    return chosen


def quantize_detector(fp32: Path, int8: Path, calibration: FloatArray) -> None:
    """Static int8 in QOperator form, calibrated on normal windows: the convolutions become
    `QLinearConv` (ReLU folded into their output range), chained on uint8 tensors (the
    interleaves between them included), with one QuantizeLinear after the de-meaning and one
    DequantizeLinear before the error arithmetic. Measured against QDQ form and int8
    activations in docs/BENCHMARKS.md ("detector"): uint8 activations are what the x86 integer
    kernels take; QDQ leaves Q/DQ pairs the runtime does not fuse and feeds the quantized
    input, not the float one, to the error."""
    prepped = fp32.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=True)
    try:
        quantize_static(
            str(prepped),
            str(int8),
            _Windows(calibration),
            quant_format=QuantFormat.QOperator,
            op_types_to_quantize=["Conv", *_PASS_THROUGH],
            nodes_to_quantize=_conv_stack(prepped),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    finally:
        prepped.unlink(missing_ok=True)
    compact(int8)


def compact(path: Path) -> None:
    """Rewrite the model with short tensor names, no node names, no doc strings, no unused
    operator domains and no metadata. The exporter's and quantizer's names
    ("/decoder/decoder.1/conv/Conv_output_0_quantized_scale", ...) took a third of the int8
    file; the graph's inputs and outputs keep theirs (the contract)."""
    model = onnx.load(str(path))
    graph = model.graph
    keep = {i.name for i in graph.input} | {o.name for o in graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.name = short(init.name)
        init.doc_string = ""
    for node in graph.node:
        node.name = ""  # optional in ONNX; the runtime names nodes itself
        node.doc_string = ""
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
    for value in graph.value_info:
        value.name = short(value.name)
    # Intermediate shapes are re-inferred by the runtime; stored they only add bytes.
    del graph.value_info[:]
    model.doc_string = ""
    graph.doc_string = ""
    # The quantizer imports eight operator domains the graph does not use and records its
    # own provenance as metadata: ~250 bytes of a ~23 KB file, shipped in every bundle.
    used = {node.domain for node in graph.node} | {""}
    opsets = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    del model.metadata_props[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


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
