"""GK201: `golfkit verify` warns, per log, about every version that differs from the pinned image."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from golfkit.cli import run as cli_run
from golfkit.image.pins import image_pins
from record.envinfo import version_lines

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "versions" / "torch_mismatch"
BASE_LOG = REPO / "tests" / "fixtures" / "assemble" / "train_seed1.log"


def _verify(folder: Path) -> list[str]:
    out, err = io.StringIO(), io.StringIO()
    cli_run(["verify", str(folder), "--no-code"], out, err)
    assert err.getvalue() == ""
    return [line for line in out.getvalue().splitlines() if line.startswith("GK201")]


def test_a_log_with_another_torch_is_flagged() -> None:
    (line,) = _verify(FIXTURE)
    assert line.startswith("GK201 WARN versions match the pinned image: train_seed1.log: ")
    # The fixture's log ran the reference record's stack (torch 2.9.1 for CUDA 12.8, Triton 3.5.1, FA3).
    assert "torch 2.9.1+cu128 (image pins 2.11.0+cu130)" in line
    assert "cuda 12.8 (image pins 13.0)" in line
    assert "triton 3.5.1 (image pins 3.6.0)" in line
    assert "flashattention fa3 3.0.0 (image pins fa4 4.0.0b36)" in line
    assert "lrzip" not in line  # 0.651 is the pinned upstream version


def test_a_log_written_in_the_image_passes(tmp_path: Path) -> None:
    pins = image_pins(REPO)
    versions = {
        "Python": "3.12.3",
        "PyTorch": pins["torch"],
        "CUDA": "13.0",
        "Triton": pins["triton"],
        "FlashAttention": f"fa4 {pins['flash-attn-4']}",
        "lrzip": "0.651",
        "GPU": "8x NVIDIA H100 80GB HBM3",
        "Image": f"base={pins['base-image']}@{pins['base-digest']} lock=sha256:{pins.lock_sha256}",
    }
    log = "\n".join(version_lines(versions)) + "\n" + BASE_LOG.read_text()
    (tmp_path / "train_seed1.log").write_text(log)
    (line,) = _verify(tmp_path)
    assert line.startswith("GK201 ok ")


def test_logs_with_the_same_finding_are_named_together(tmp_path: Path) -> None:
    for seed in (1, 2):
        text = (FIXTURE / "train_seed1.log").read_text().replace("  seed: 1\n", f"  seed: {seed}\n")
        (tmp_path / f"train_seed{seed}.log").write_text(text)
    shutil.copyfile(FIXTURE / "train_seed1.log", tmp_path / "train_seed1.log")
    (line,) = _verify(tmp_path)
    assert ": train_seed1.log, train_seed2.log: torch 2.9.1+cu128" in line
