"""The record folder's one figure: training loss and validation BPB of every seed.

Reviewers compare seeds at a glance: a seed whose loss curve departs from the others, or whose
quantization or TTT step moved BPB differently, stands out. The loss axis is logarithmic, so the
first steps (~13 nats at step 1) do not flatten the part of the curves that differs between seeds, and
its step ticks are whole numbers however few points a curve has. The Agg backend keeps this usable on
machines without a display, and fixed metadata keeps the PNG byte-stable for identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from golfkit.check.logparse import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def seed_curves_figure(records: Sequence[RunRecord]) -> Figure:
    """The two-panel figure: train loss per step (left, log axis), val_bpb per evaluation stage (right)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

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
        loss_ax.set(title="Training loss", xlabel="step", ylabel="train_loss (nats, log scale)")
        loss_ax.set_yscale("log")
        loss_ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        bpb_ax.set(title="Validation BPB by evaluation stage", xlabel="evaluation", ylabel="val_bpb")
        for ax in (loss_ax, bpb_ax):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return fig


def plot_seed_curves(records: Sequence[RunRecord], path: Path) -> Path:
    """Write `seed_curves_figure` as a PNG at `path`."""
    from matplotlib import pyplot as plt

    fig = seed_curves_figure(records)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", metadata={"Software": "golfkit"})
    finally:
        plt.close(fig)
    return path
