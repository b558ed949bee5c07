"""Training report (PNG): loss curves, score distributions on fit vs held-out normal windows
with the thresholds, and the teacher/student/int8 agreement figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_agent.types import FloatArray


def write_report(
    path: Path,
    title: str,
    student_losses: list[float],
    teacher_losses: list[float],
    fit_scores: FloatArray,
    heldout_scores: FloatArray,
    teacher_heldout: FloatArray | None,
    raise_t: float,
    clear_t: float,
    agreement: dict[str, float],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    if teacher_losses:
        ax.plot(teacher_losses, lw=0.6, label="teacher (masked reconstruction)")
    ax.plot(student_losses, lw=0.6, label="student (reconstruction + distillation)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("training loss")
    ax.legend(fontsize=8)
    ax = axes[1]
    lo = max(1e-3, float(min(fit_scores.min(), heldout_scores.min())))
    hi = float(max(fit_scores.max(), heldout_scores.max(), raise_t)) * 1.2
    bins = np.geomspace(lo, hi, 60)
    ax.hist(fit_scores, bins=bins, alpha=0.5, density=True, label="fit windows (int8)")
    ax.hist(heldout_scores, bins=bins, alpha=0.5, density=True, label="held-out windows (int8)")
    if teacher_heldout is not None:
        ax.hist(
            teacher_heldout, bins=bins, histtype="step", density=True, label="held-out (teacher)"
        )
    ax.axvline(raise_t, color="r", ls="--", label="raise threshold")
    ax.axvline(clear_t, color="orange", ls=":", label="clear threshold")
    ax.set_xscale("log")
    ax.set_title("anomaly score on normal data")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.axis("off")
    lines = [f"{k}: {v:.4g}" for k, v in agreement.items()]
    ax.text(0, 1, "agreement\n\n" + "\n".join(lines), va="top", family="monospace", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
