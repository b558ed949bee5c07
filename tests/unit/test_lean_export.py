"""The lean rewrite of the student (`training/lean.py`) computes what the training module
computes, and the int8 export (`training/export.py`) quantizes only the convolution stack and
writes a compact file that keeps the model I/O contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_agent.inference.model_io import INPUT, OUTPUTS

torch = pytest.importorskip("torch")

from edge_agent.training.export import (  # noqa: E402
    _conv_stack,
    compact,
    export_onnx,
    quantize_detector,
    session,
)
from edge_agent.training.lean import SubPixelUp, lean_scorer  # noqa: E402
from edge_agent.training.model import ConvAutoencoder, Scorer  # noqa: E402


@pytest.mark.parametrize("relu", [False, True])
def test_sub_pixel_upsampling_is_the_transposed_convolution(relu: bool) -> None:
    torch.manual_seed(3)
    up = torch.nn.ConvTranspose1d(5, 7, 4, stride=2, padding=1)
    x = torch.randn(3, 5, 9)
    want = up(x)
    if relu:
        want = torch.relu(want)
    got = SubPixelUp(up, relu)(x)
    assert got.shape == want.shape == (3, 7, 18)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_sub_pixel_refuses_other_transposed_convolutions() -> None:
    with pytest.raises(ValueError, match="not a kernel-4 stride-2"):
        SubPixelUp(torch.nn.ConvTranspose1d(2, 2, 3, stride=2, padding=1), relu=False)


def scorer(seed: int = 0) -> Scorer:
    """A student with every part of the score in play: level errors outside their band too."""
    torch.manual_seed(seed)
    s = Scorer(ConvAutoencoder(6, 16)).eval()
    lv = s.levels
    with torch.no_grad():
        lv.centre.normal_()
        lv.coef_t.normal_(std=0.3)
        lv.resid_mean.normal_(std=0.1)
        lv.resid_scale.uniform_(0.5, 2)
        lv.half_width.fill_(0.3)
        lv.leverage.normal_(std=0.05).abs_()
        s.weights.uniform_(0.5, 2)
    return s


def test_lean_scorer_scores_like_the_training_module() -> None:
    s = scorer()
    x = torch.randn(64, 16, 6) * 2
    with torch.no_grad():
        want, got = s(x), lean_scorer(s)(x)
    assert float(want[1].gt(0).float().mean()) > 0  # non-trivial errors
    with torch.no_grad():
        assert float(s.levels(x).gt(0).float().mean()) > 0.1  # levels outside their band
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_int8_export_quantizes_only_the_convolutions_and_stays_close(tmp_path: Path) -> None:
    s = scorer(1)
    fp32, int8 = tmp_path / "f.onnx", tmp_path / "q.onnx"
    export_onnx(lean_scorer(s), 16, 6, fp32)
    stack = _conv_stack(fp32)
    nodes = {n.name: n for n in onnx.load(str(fp32)).graph.node}
    assert sorted(nodes[n].op_type for n in stack if nodes[n].op_type == "Conv") == ["Conv"] * 6
    # The window's own transpose and the score arithmetic are not in the stack.
    assert all(INPUT not in nodes[n].input for n in stack)
    assert not any(nodes[n].op_type in ("Sub", "Mul", "ReduceMean", "MatMul") for n in stack)
    cal = np.random.default_rng(0).normal(size=(256, 16, 6)).astype(np.float32)
    quantize_detector(fp32, int8, cal)
    x = np.random.default_rng(1).normal(size=(128, 16, 6)).astype(np.float32)
    s32, e32 = session(fp32).run(list(OUTPUTS), {INPUT: x})
    s8, e8 = session(int8).run(list(OUTPUTS), {INPUT: x})
    assert np.corrcoef(s8, s32)[0, 1] > 0.999
    assert np.median(np.abs(s8 - s32) / s32) < 0.02
    assert e8.shape == e32.shape == (128, 6)
    graph = onnx.load(str(int8)).graph
    assert [i.name for i in graph.input] == [INPUT]
    assert tuple(o.name for o in graph.output) == OUTPUTS


def test_compact_keeps_the_contract_and_the_scores(tmp_path: Path) -> None:
    path = tmp_path / "f.onnx"
    export_onnx(lean_scorer(scorer(2)), 16, 6, path)
    x = np.random.default_rng(2).normal(size=(8, 16, 6)).astype(np.float32)
    before_bytes, before = path.stat().st_size, session(path).run(list(OUTPUTS), {INPUT: x})
    compact(path)
    after = session(path).run(list(OUTPUTS), {INPUT: x})
    for a, b in zip(after, before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert path.stat().st_size < before_bytes
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == [INPUT]
    assert tuple(o.name for o in graph.output) == OUTPUTS
    assert all(not n.name and not n.doc_string for n in graph.node)
    model = onnx.load(str(path))
    assert {o.domain for o in model.opset_import} <= {"", *(n.domain for n in graph.node)}
    assert not model.metadata_props
