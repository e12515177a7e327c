"""The record folder's one figure: training loss and validation BPB of every seed.

Reviewers compare seeds at a glance: a seed whose loss curve departs from the others, or whose
quantization or TTT step moved BPB differently, stands out. The Agg backend keeps this usable on
machines without a display, and fixed metadata keeps the PNG byte-stable for identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from golfkit.check.logparse import RunRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _stage_label(tag: str) -> str:
    """Short x-axis labels for the evaluation lines of a log (e.g. 'quantized_ttt_phased' -> 'ttt')."""
    if "pre-quant" in tag:
        return "pre-quant"
    if "ttt" in tag:
        return "post-TTT"
    if "sliding" in tag:
        return "sliding"
    return "quantized"


def plot_seed_curves(records: Sequence[RunRecord], path: Path) -> Path:
    """Write a two-panel PNG: train loss per step (left), val_bpb per evaluation stage (right)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (loss_ax, bpb_ax) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    try:
        for record in records:
            label = f"seed {record.seed}"
            if record.train_curve:
                steps, losses = zip(*record.train_curve, strict=True)
                loss_ax.plot(steps, losses, marker=".", linewidth=1.2, label=label)
            stages = list(record.evals)
            if stages:
                bpb_ax.plot(
                    [_stage_label(e.tag) for e in stages],
                    [e.val_bpb for e in stages],
                    marker="o",
                    linewidth=1.2,
                    label=label,
                )
            else:
                bpb_ax.plot(["final"], [record.val_bpb], marker="o", label=label)
        loss_ax.set(title="Training loss", xlabel="step", ylabel="train_loss (nats)")
        bpb_ax.set(title="Validation BPB by evaluation stage", xlabel="evaluation", ylabel="val_bpb")
        for ax in (loss_ax, bpb_ax):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", metadata={"Software": "golfkit"})
    finally:
        plt.close(fig)
    return path
