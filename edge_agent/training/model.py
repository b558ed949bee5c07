"""The student model: a small 1-D convolutional autoencoder over (window, signals).

The exported graph computes the anomaly score itself: per-signal mean squared reconstruction
error over the window, and its mean over signals. Scoring inside the graph keeps the runtime
free of model-specific post-processing and lets int8 agreement be measured on the score itself.
These modules are what training fits; the bundle's graph is their exact rewrite for the runtime
(`training/lean.py`: no ConvTranspose, which has no integer kernel in ONNX Runtime).
"""

from __future__ import annotations

import torch
from torch import nn

from edge_agent.training.levels import LevelRelations


class ConvAutoencoder(nn.Module):
    def __init__(self, n_signals: int, window: int, width: int = 32, latent: int | None = None):
        super().__init__()
        if window % 4:
            raise ValueError("window must be a multiple of 4 (two stride-2 stages)")
        # A narrow bottleneck: the model must explain the signals from a few shared factors (load,
        # temperatures), so a signal that leaves its relation to the others is not reproduced.
        self.n_signals = n_signals
        latent = latent or max(2, n_signals // 2)
        self.encoder = nn.Sequential(
            nn.Conv1d(n_signals, width, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(width, width, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(width, latent, 5, stride=2, padding=2),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose1d(latent, width, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose1d(width, width, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(width, n_signals, 5, padding=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, signals, window) → reconstruction of the same shape."""
        out: torch.Tensor = self.decoder(self.encoder(x))
        return out


def demean(window: torch.Tensor) -> torch.Tensor:
    """Remove each signal's level over the window: the networks judge shape and the relations
    between signals' movements, which do not change when ambient or load move the levels."""
    return window - window.mean(dim=1, keepdim=True)


class LevelModel(nn.Module):
    """(batch, window, signals) standardized windows → (batch, signals) level error: squared
    distance, in residual standard deviations, of each signal's window level outside the
    prediction interval of its relation to the other signals' levels (see training/levels.py).
    Zero inside it, so ambient, load and slow drift that move signals together cost nothing."""

    centre: torch.Tensor
    coef_t: torch.Tensor
    resid_mean: torch.Tensor
    resid_scale: torch.Tensor
    half_width: torch.Tensor
    leverage: torch.Tensor

    def __init__(self, n_signals: int) -> None:
        super().__init__()
        n = n_signals
        self.n_signals = n
        self.register_buffer("centre", torch.zeros(n))
        self.register_buffer("coef_t", torch.zeros(n, n))
        self.register_buffer("resid_mean", torch.zeros(n))
        self.register_buffer("resid_scale", torch.ones(n))
        self.register_buffer("half_width", torch.full((n,), 1e6))
        # (i, j·n + k): the per-target quadratic forms laid out for one matmul.
        self.register_buffer("leverage", torch.zeros(n, n * n))

    @torch.no_grad()
    def load(self, rel: LevelRelations) -> LevelModel:
        n = self.n_signals
        f32 = torch.float32
        self.centre.copy_(torch.as_tensor(rel.centre, dtype=f32))
        self.coef_t.copy_(torch.as_tensor(rel.coef.T, dtype=f32))
        self.resid_mean.copy_(torch.as_tensor(rel.resid_mean, dtype=f32))
        self.resid_scale.copy_(torch.as_tensor(rel.resid_scale, dtype=f32))
        self.half_width.copy_(torch.as_tensor(rel.half_width, dtype=f32))
        # leverage[j, i, k] → [i, j, k] → (i, j·n + k)
        lev = torch.as_tensor(rel.leverage, dtype=f32).permute(1, 0, 2).reshape(n, n * n)
        self.leverage.copy_(lev)
        return self

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        n = self.n_signals
        z = window.mean(dim=1) - self.centre
        resid = z - z @ self.coef_t
        # h[b, j] = Σ_ik z[b, i] · L[j, i, k] · z[b, k]
        h = ((z @ self.leverage).reshape(-1, n, n) * z.unsqueeze(1)).sum(dim=2)
        width = self.half_width * torch.sqrt(1.0 + h)
        excess = torch.relu(torch.abs(resid - self.resid_mean) - width) / self.resid_scale
        return excess**2


class Scorer(nn.Module):
    """Export wrapper: (batch, window, signals) → score (batch,), signal_error (batch, signals).

    signal_error = shape error × weight + level error. The shape error is the autoencoder's
    reconstruction error of the de-meaned window; `weights` rescale it by each signal's typical
    error on normal training windows, so every signal counts alike (≈ 1 on normal data). The
    level error comes from `levels` (see `LevelModel`).
    """

    weights: torch.Tensor

    def __init__(self, model: ConvAutoencoder) -> None:
        super().__init__()
        self.model = model
        n = model.n_signals
        self.register_buffer("weights", torch.ones(n))
        self.levels = LevelModel(n)

    def reconstruct(self, shape: torch.Tensor) -> torch.Tensor:
        """De-meaned (batch, window, signals) → its reconstruction."""
        out: torch.Tensor = self.model(shape.transpose(1, 2)).transpose(1, 2)
        return out

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = demean(window)
        err = (self.reconstruct(x) - x) ** 2
        signal_error = err.mean(dim=1) * self.weights + self.levels(window)
        return signal_error.mean(dim=1), signal_error
