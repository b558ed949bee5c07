"""The teacher: a PatchTST transformer (Hugging Face `transformers`) trained self-supervised by
masked reconstruction on the asset's normal windows.

Two kinds of masks are mixed in training: random patches (learn each signal's dynamics) and whole
signals (learn to infer a signal from the others at the same time). At scoring time every signal
is masked in turn and reconstructed from the others, so the teacher's reconstruction of a window
is what the *other* signals say that signal should be — a break in the relation between signals
(bearing vibration rising at constant load) shows up even when each signal alone looks smooth.
PatchTST's channel attention is on so patches attend across signals.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from transformers import PatchTSTConfig, PatchTSTModel

from edge_agent.training.model import LevelModel, demean
from edge_agent.types import FloatArray


def _patch_length(window: int) -> int:
    for p in (8, 4, 2):
        if window % p == 0 and window // p >= 2:
            return p
    return 1


class PatchTeacher(nn.Module):
    def __init__(self, n_signals: int, window: int, d_model: int = 64, layers: int = 3) -> None:
        super().__init__()
        self.losses: list[float] = []
        self.n_signals = n_signals
        self.window = window
        self.patch = _patch_length(window)
        cfg = PatchTSTConfig(
            num_input_channels=n_signals,
            context_length=window,
            patch_length=self.patch,
            patch_stride=self.patch,
            d_model=d_model,
            num_attention_heads=4,
            num_hidden_layers=layers,
            ffn_dim=2 * d_model,
            attention_dropout=0.1,
            ff_dropout=0.1,
            channel_attention=True,
            do_mask_input=False,  # masking is ours, so scoring can mask deterministically
            scaling=None,  # inputs are already standardized with the bundle's scaler
            use_cls_token=False,
        )
        self.backbone = PatchTSTModel(cfg)
        self.head = nn.Linear(d_model, self.patch)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x, mask: (batch, window, signals); masked values are hidden (set to the mean, 0)."""
        h = self.backbone(past_values=x.masked_fill(mask, 0.0)).last_hidden_state
        b, s, p, _ = h.shape
        out: torch.Tensor = self.head(h).reshape(b, s, p * self.patch).transpose(1, 2)
        return out

    def random_mask(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        s, w, p = self.n_signals, self.window, self.patch
        patches = torch.rand(batch, s, w // p, generator=gen) < 0.4
        mask = patches.repeat_interleave(p, dim=2).transpose(1, 2)  # (batch, window, signals)
        whole = torch.rand(batch, generator=gen) < 0.5
        pick = torch.randint(0, s, (batch,), generator=gen)
        mask[whole, :, pick[whole]] = True
        return mask

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Each signal reconstructed from all the others (one pass per signal)."""
        self.eval()
        out = torch.empty_like(x)
        for c in range(self.n_signals):
            mask = torch.zeros_like(x, dtype=torch.bool)
            mask[:, :, c] = True
            out[:, :, c] = self(x, mask)[:, :, c]
        return out


def train_teacher(
    windows: FloatArray, steps: int, seed: int, batch: int = 64, progress: bool = False
) -> PatchTeacher:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    teacher = PatchTeacher(windows.shape[2], windows.shape[1])
    optim = torch.optim.AdamW(teacher.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=1e-3, total_steps=max(steps, 1))
    data = demean(torch.from_numpy(windows))
    teacher.train()
    bar = tqdm(range(steps), desc="teacher", unit="step", disable=not progress)
    for _ in bar:
        idx = torch.from_numpy(rng.integers(0, len(data), size=min(batch, len(data))))
        x = data[idx]
        mask = teacher.random_mask(len(x), gen)
        err = (teacher(x, mask) - x) ** 2
        loss = (err * mask).sum() / mask.sum().clamp(min=1)
        optim.zero_grad()
        loss.backward()
        teacher.losses.append(float(loss.detach()))
        optim.step()
        sched.step()
    teacher.eval()
    return teacher


def teacher_scores(
    teacher: PatchTeacher,
    windows: FloatArray,
    weights: FloatArray,
    levels: LevelModel | None,
    batch: int = 256,
) -> tuple[FloatArray, FloatArray]:
    """(scores, reconstructions of the de-meaned windows), scored like the student: weighted
    shape error plus the same level error (none when `levels` is None)."""
    recs, scores = [], []
    w = torch.from_numpy(weights)
    for i in range(0, len(windows), batch):
        raw = torch.from_numpy(windows[i : i + batch])
        x = demean(raw)
        rec = teacher.reconstruct(x)
        recs.append(rec.numpy())
        err = ((rec - x) ** 2).mean(dim=1) * w
        if levels is not None:
            err = err + levels(raw)
        scores.append(err.mean(dim=1).numpy())
    return np.concatenate(scores).astype(np.float32), np.concatenate(recs).astype(np.float32)
