"""Fault classification head: trained only when labelled fault data is given.

A small 1-D CNN over the standardized window (levels kept: a fault class is often told by which
signals moved and which way) → class probabilities, `normal` included so a window that merely
looks unusual is not forced into a fault class. Exported to ONNX and quantized like the student.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edge_agent.inference.model_io import BATCH_AXIS, CLASSIFIER_OUTPUT, INPUT
from edge_agent.types import FloatArray

NORMAL = "normal"


class FaultClassifier(nn.Module):
    def __init__(self, n_signals: int, n_classes: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(n_signals, width, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(width, width, 5, stride=2, padding=2),
            nn.ReLU(),
        )
        # Mean and spread over time: level shifts and noise bursts both name faults.
        self.head = nn.Linear(2 * width, n_classes)

    def logits(self, window: torch.Tensor) -> torch.Tensor:
        h = self.features(window.transpose(1, 2))
        pooled = torch.cat([h.mean(dim=2), h.std(dim=2)], dim=1)
        out: torch.Tensor = self.head(pooled)
        return out

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(window), dim=1)


def train_classifier(
    windows: FloatArray,
    labels: np.ndarray,
    classes: list[str],
    steps: int,
    seed: int,
    progress: bool = False,
) -> FaultClassifier:
    """Class-balanced mini-batches, so a short fault stretch weighs as much as hours of normal."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = FaultClassifier(windows.shape[2], len(classes))
    optim = torch.optim.Adam(model.parameters(), lr=2e-3)
    by_class = [np.flatnonzero(labels == c) for c in range(len(classes))]
    data = torch.from_numpy(windows)
    model.train()
    per_class = max(4, 128 // len(classes))
    for _ in tqdm(range(steps), desc="classifier", unit="step", disable=not progress):
        idx = np.concatenate([rng.choice(ix, size=per_class) for ix in by_class if len(ix)])
        y = torch.from_numpy(labels[idx].astype(np.int64))
        loss = nn.functional.cross_entropy(model.logits(data[idx]), y)
        optim.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optim.step()
    model.eval()
    return model


def export_classifier(model: FaultClassifier, window: int, n_signals: int, path: Path) -> None:
    model.eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, window, n_signals),),
        str(path),
        input_names=[INPUT],
        output_names=[CLASSIFIER_OUTPUT],
        dynamic_axes={INPUT: {0: BATCH_AXIS}, CLASSIFIER_OUTPUT: {0: BATCH_AXIS}},
        opset_version=17,
        dynamo=False,
    )
