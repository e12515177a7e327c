"""golfkit.pr.plots: the PR folder's training-curve figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from golfkit.check.logparse import RunRecord
from golfkit.pr.plots import PNG_SIGNATURE, plot_seed_curves, seed_curves_figure


def _run(seed: int, curve: list[tuple[int, float]]) -> RunRecord:
    return RunRecord(
        log=Path(f"train_seed{seed}.log"),
        seed=seed,
        val_bpb=1.06,
        val_loss=2.3,
        headline="quantized_ttt_phased",
        steps=curve[-1][0],
        iterations=curve[-1][0],
        step_avg_ms=90.0,
        train_time_s=600.0,
        stop_reason="wallclock_cap",
        eval_time_s=400.0,
        model_bytes=None,
        code_bytes=None,
        artifact_bytes=None,
        peak_mem_mib=None,
        hyperparameters={},
        train_curve=curve,
        val_curve=[],
        versions={},
    )


@pytest.fixture
def three_points() -> list[RunRecord]:
    return [_run(42, [(1, 13.1), (2, 9.4), (3, 7.2)]), _run(314, [(1, 13.0), (2, 9.6), (3, 7.0)])]


def test_loss_is_on_a_log_axis(three_points: list[RunRecord]) -> None:
    from matplotlib import pyplot as plt

    fig = seed_curves_figure(three_points)
    try:
        assert fig.axes[0].get_yscale() == "log"
    finally:
        plt.close(fig)


def test_a_three_point_curve_gets_whole_step_ticks(three_points: list[RunRecord]) -> None:
    from matplotlib import pyplot as plt

    fig = seed_curves_figure(three_points)
    try:
        fig.canvas.draw()
        loss_ax = fig.axes[0]
        low, high = loss_ax.get_xlim()
        ticks = [t for t in loss_ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    finally:
        plt.close(fig)


def test_the_png_is_written_and_byte_stable(three_points: list[RunRecord], tmp_path: Path) -> None:
    first = plot_seed_curves(three_points, tmp_path / "a" / "curves.png").read_bytes()
    second = plot_seed_curves(three_points, tmp_path / "b" / "curves.png").read_bytes()
    assert first.startswith(PNG_SIGNATURE) and first == second
