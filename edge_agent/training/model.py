"""The student model: a small 1-D convolutional autoencoder over (window, signals).

The exported graph computes the anomaly score itself: per-signal mean squared reconstruction
error over the window, and its mean over signals. Scoring inside the graph keeps the runtime
free of model-specific post-processing and lets int8 agreement be measured on the score itself.
"""

from __future__ import annotations

import torch
from torch import nn


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


def level_error(window: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """(batch, signals): squared distance, in standard deviations, of each signal's window mean
    outside the band of normal operation; 0 inside it. Drift inside the normal range costs
    nothing; a level beyond anything seen in normal operation does."""
    level = window.mean(dim=1)
    excess = torch.relu(level - high) + torch.relu(low - level)
    return excess**2


class Scorer(nn.Module):
    """Export wrapper: (batch, window, signals) → score (batch,), signal_error (batch, signals).

    signal_error = shape error × weight + level error. The shape error is the autoencoder's
    reconstruction error of the de-meaned window; `weights` rescale it by each signal's typical
    error on normal training windows, so every signal counts alike (≈ 1 on normal data). The
    level error (see `level_error`) uses `low`/`high`, the normal band in standardized units.
    """

    weights: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, model: ConvAutoencoder) -> None:
        super().__init__()
        self.model = model
        n = model.n_signals
        self.register_buffer("weights", torch.ones(n))
        self.register_buffer("low", torch.full((n,), -1e6))
        self.register_buffer("high", torch.full((n,), 1e6))

    def reconstruct(self, shape: torch.Tensor) -> torch.Tensor:
        """De-meaned (batch, window, signals) → its reconstruction."""
        out: torch.Tensor = self.model(shape.transpose(1, 2)).transpose(1, 2)
        return out

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = demean(window)
        err = (self.reconstruct(x) - x) ** 2
        signal_error = err.mean(dim=1) * self.weights + level_error(window, self.low, self.high)
        return signal_error.mean(dim=1), signal_error
