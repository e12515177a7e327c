"""record/envinfo.py: the versions a training log records, collected on this machine for real."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from golfkit.check.logparse import parse_log
from record.envinfo import (
    attention_version,
    collect_versions,
    image_identity,
    lrzip_version,
    version_lines,
)

REPO = Path(__file__).resolve().parents[2]
BASE_LOG = REPO / "tests" / "fixtures" / "assemble" / "train_seed1.log"


def test_collect_versions_reports_this_interpreter_and_torch(tmp_path: Path) -> None:
    versions = collect_versions("sdpa", image_file=tmp_path / "absent")
    assert list(versions)[:6] == ["Python", "PyTorch", "CUDA", "Triton", "FlashAttention", "lrzip"]
    assert versions["Python"] == platform.python_version()
    assert versions["PyTorch"] == torch.__version__
    assert versions["CUDA"] == (torch.version.cuda or "none")
    assert versions["Image"] == "none"
    if not torch.cuda.is_available():
        assert versions["GPU"] == "none" and "Driver" not in versions


@pytest.mark.skipif(shutil.which("lrzip") is None, reason="lrzip is not installed")
def test_lrzip_version_is_what_the_binary_says() -> None:
    banner = subprocess.run(["lrzip", "-V"], capture_output=True, text=True, check=True)
    expected = re.search(r"lrzip version (\S+)", banner.stdout + banner.stderr)[1]
    assert lrzip_version() == expected
    assert re.fullmatch(r"\d+\.\d+", expected)


def test_a_missing_lrzip_is_reported_not_raised(tmp_path: Path) -> None:
    assert lrzip_version(str(tmp_path / "no-lrzip")) == "not installed"


def test_image_identity_reads_the_file_the_dockerfile_writes(tmp_path: Path) -> None:
    path = tmp_path / "golfkit-image"
    path.write_text("base_image=nvidia/cuda:12.8.1-runtime-ubuntu24.04@sha256:ab\nlock_sha256=cd\n")
    assert image_identity(path) == "base=nvidia/cuda:12.8.1-runtime-ubuntu24.04@sha256:ab lock=sha256:cd"
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "printf 'base_image=%s\\nlock_sha256=%s\\n'" in dockerfile  # the same two keys


def test_attention_is_the_backend_the_trainer_names() -> None:
    assert attention_version("sdpa") == "sdpa"
    assert collect_versions(attention_backend="sdpa")["FlashAttention"] == "sdpa"


def test_lines_read_back_through_the_log_parser(tmp_path: Path) -> None:
    versions = collect_versions(attention_backend="sdpa", image_file=tmp_path / "absent")
    lines = version_lines(versions)
    assert lines[1] == f"Running PyTorch {torch.__version__}"
    log = tmp_path / "train_seed1.log"
    log.write_text("\n".join(lines) + "\n" + BASE_LOG.read_text())
    recorded = parse_log(log).versions
    assert recorded["python"] == platform.python_version()
    assert recorded["torch"] == torch.__version__
    assert recorded["triton"] == versions["Triton"]
    assert recorded["flashattention"] == "sdpa"
    assert recorded["lrzip"] == versions["lrzip"]
    assert recorded["image"] == "none"
