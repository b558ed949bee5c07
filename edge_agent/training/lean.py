"""The graph the bundle ships: the trained `Scorer` rewritten, exactly, into operators that ONNX
Runtime runs fast and that its int8 kernels cover.

Why a rewrite rather than the training module itself (measured with ONNX Runtime's profiler,
docs/BENCHMARKS.md "detector"): ONNX Runtime has no integer kernel for `ConvTranspose`, so in the
int8 graph each of the decoder's two upsampling stages stayed float between a DequantizeLinear of
its weights (re-done on every call) and a QuantizeLinear of its output; those Q/DQ nodes and the
float `ConvTranspose` kernel cost more than int8 saved elsewhere. A stride-2 transposed
convolution with kernel 4 and padding 1 is the same function as an ordinary convolution with
kernel 3 into twice the channels followed by interleaving the two halves ("sub-pixel"
upsampling), and ordinary convolutions run as `QLinearConv`. The score arithmetic is also
laid out with fewer nodes: the window stays channel-first, the window mean is taken once and
serves both the de-meaning and the level model, and the level model's affine steps are folded.

Training is unchanged; `lean_scorer(scorer)` computes the same scores as `scorer` up to float
rounding (checked at export: `onnx_fp32_vs_torch_max_abs_diff` in the manifest's agreement).
"""

from __future__ import annotations

import torch
from torch import nn

from edge_agent.training.model import ConvAutoencoder, LevelModel, Scorer


class SubPixelUp(nn.Module):
    """`ConvTranspose1d(kernel 4, stride 2, padding 1)`, optionally followed by ReLU, as
    Conv1d(kernel 3, padding 1) into 2 × out channels, ReLU, and an interleave of the halves.

    The transposed convolution gives y[2m] = w₁·x[m] + w₃·x[m−1] and
    y[2m+1] = w₂·x[m] + w₀·x[m+1] (wₖ: its kernel taps); the convolution's taps see
    x[m−1], x[m], x[m+1], so each phase is one half of its output channels with one tap zero.
    The ReLU is applied before the interleave (elementwise, so the same) to let the runtime
    fuse it into the convolution."""

    def __init__(self, up: nn.ConvTranspose1d, relu: bool) -> None:
        super().__init__()
        if (
            up.kernel_size != (4,)
            or up.stride != (2,)
            or up.padding != (1,)
            or up.output_padding != (0,)
            or up.dilation != (1,)
            or up.groups != 1
        ):
            raise ValueError(f"not a kernel-4 stride-2 padding-1 upsampling: {up}")
        c_in, c_out = up.in_channels, up.out_channels
        self.c_out = c_out
        self.relu = relu
        self.conv = nn.Conv1d(c_in, 2 * c_out, 3, padding=1)
        with torch.no_grad():
            w = up.weight.detach().permute(1, 0, 2)  # (out, in, 4)
            weight = torch.zeros(2, c_out, c_in, 3)
            weight[0, :, :, 0], weight[0, :, :, 1] = w[..., 3], w[..., 1]  # even outputs
            weight[1, :, :, 1], weight[1, :, :, 2] = w[..., 2], w[..., 0]  # odd outputs
            self.conv.weight.copy_(weight.reshape(2 * c_out, c_in, 3))
            bias = up.bias.detach() if up.bias is not None else torch.zeros(c_out)
            self.conv.bias.copy_(torch.cat([bias, bias]))  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z: torch.Tensor = self.conv(x)
        if self.relu:
            z = torch.relu(z)
        # Interleaved in channels-last layout, where it is a plain reshape: (batch, m, [even |
        # odd] × out) → (batch, 2m, out). The runtime runs the integer convolutions
        # channels-last and cancels these transposes against its own.
        b, _, length = z.shape
        z = z.transpose(1, 2).reshape(b, 2 * length, self.c_out)
        return z.transpose(1, 2)


def _lean_layers(layers: nn.Sequential) -> nn.Sequential:
    """The layers with every transposed convolution (and the ReLU after it) rewritten."""
    out: list[nn.Module] = []
    items = list(layers)
    i = 0
    while i < len(items):
        layer = items[i]
        if isinstance(layer, nn.ConvTranspose1d):
            relu = i + 1 < len(items) and isinstance(items[i + 1], nn.ReLU)
            out.append(SubPixelUp(layer, relu))
            i += 2 if relu else 1
            continue
        out.append(layer)
        i += 1
    return nn.Sequential(*out)


class LeanLevels(nn.Module):
    """`LevelModel` on the window means (batch, signals), taken once for both uses, with
    z − z·coefᵀ as one product z·(I − coefᵀ) and the division by the residual scale as a
    product (see `LevelModel.forward`)."""

    centre: torch.Tensor
    a: torch.Tensor
    offset: torch.Tensor
    half_width: torch.Tensor
    inv_scale: torch.Tensor
    leverage: torch.Tensor

    def __init__(self, levels: LevelModel) -> None:
        super().__init__()
        n = levels.n_signals
        self.n = n
        with torch.no_grad():
            a = torch.eye(n) - levels.coef_t
            centre = levels.centre
            self.register_buffer("centre", centre.clone())
            self.register_buffer("a", a.clone())
            self.register_buffer("offset", (levels.resid_mean).clone())
            self.register_buffer("half_width", levels.half_width.clone())
            self.register_buffer("inv_scale", (1.0 / levels.resid_scale).clone())
            self.register_buffer("leverage", levels.leverage.clone())

    def forward(self, mean: torch.Tensor) -> torch.Tensor:
        z = mean - self.centre
        resid = z @ self.a - self.offset
        h = ((z @ self.leverage).reshape(-1, self.n, self.n) * z.unsqueeze(1)).sum(dim=2)
        width = self.half_width * torch.sqrt(1.0 + h)
        excess = torch.relu(torch.abs(resid) - width) * self.inv_scale
        return excess * excess


class LeanScorer(nn.Module):
    """Same contract as `Scorer`: (batch, window, signals) → score (batch,), signal_error."""

    weights: torch.Tensor

    def __init__(self, scorer: Scorer) -> None:
        super().__init__()
        model: ConvAutoencoder = scorer.model
        self.encoder = _lean_layers(model.encoder)
        self.decoder = _lean_layers(model.decoder)
        self.register_buffer("weights", scorer.weights.detach().clone())
        self.levels = LeanLevels(scorer.levels)

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = window.transpose(1, 2)  # (batch, signals, window): the convolutions' layout
        mean = x.mean(dim=2)
        shape = x - mean.unsqueeze(2)
        diff = self.decoder(self.encoder(shape)) - shape
        signal_error = (diff * diff).mean(dim=2) * self.weights + self.levels(mean)
        return signal_error.mean(dim=1), signal_error


def lean_scorer(scorer: Scorer) -> LeanScorer:
    return LeanScorer(scorer).eval()
