"""The versions a run used, collected once at start-up and written at the top of the training log.

A reproduction is exact only if Python, torch, its CUDA, Triton, the attention kernels, lrzip (whose
version changes the artifact's bytes) and the image match. Each goes on its own `Running NAME VALUE`
line (`record.logkeys.fmt_version_line`), the form the reference logs already use for Python and
PyTorch, so `golfkit verify` can hold them against the pinned image. Nothing here raises: a missing
component is logged as such, never a reason to stop a run.

Write these lines before the nvidia-smi table, so the `CUDA` read back is torch's, not the driver's.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from record.logkeys import fmt_version_line

ENVINFO_IMAGE_FILE = "/etc/golfkit-image"  # written by docker/Dockerfile: base image ref and lock sha256
ENVINFO_NOT_INSTALLED = "not installed"
ENVINFO_ATTENTION_PACKAGES = {
    "fa3": ("flash_attn_3", "flash-attn-3"),
    "fa4": ("flash-attn-4",),
    "torch": ("torch",),  # torch.nn.attention.varlen ships with torch itself
}  # sdpa: part of torch, no version of its own
_ENVINFO_LRZIP_VERSION = re.compile(r"lrzip version (\S+)")


def _envinfo_dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _envinfo_run(command: list[str]) -> str | None:
    """stdout+stderr of a short command, or None when it is missing or fails."""
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout + done.stderr) if done.returncode == 0 else None


def attention_version(backend: str) -> str:
    """`fa3 3.0.0b1`, `fa4 4.0.0b36` or `sdpa`: the backend and its package version."""
    version = _envinfo_dist_version(*ENVINFO_ATTENTION_PACKAGES.get(backend, ()))
    return f"{backend} {version}" if version else backend


def lrzip_version(executable: str = "lrzip") -> str:
    output = _envinfo_run([executable, "-V"])
    if output is None:
        return ENVINFO_NOT_INSTALLED
    match = _ENVINFO_LRZIP_VERSION.search(output)
    return match[1] if match else output.strip().splitlines()[0]


def image_identity(path: str | Path = ENVINFO_IMAGE_FILE) -> str:
    """`base=REF lock=sha256:HEX` inside the golfkit image, `none` elsewhere."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return "none"
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return f"base={fields.get('base_image', '?')} lock=sha256:{fields.get('lock_sha256', '?')}"


def collect_versions(attention_backend: str, image_file: str | Path = ENVINFO_IMAGE_FILE) -> dict[str, str]:
    """Log name -> value, in the order they are logged. `attention_backend` is what the model really
    uses (`record.attention.pick_attention_backend`: "fa4", "fa3", "torch" or "sdpa")."""
    versions = {"Python": platform.python_version()}
    try:
        import torch
    except ImportError:
        torch = None
    versions["PyTorch"] = torch.__version__ if torch is not None else ENVINFO_NOT_INSTALLED
    versions["CUDA"] = (torch.version.cuda or "none") if torch is not None else "none"
    versions["Triton"] = _envinfo_dist_version("triton") or ENVINFO_NOT_INSTALLED
    versions["FlashAttention"] = attention_version(attention_backend)
    versions["lrzip"] = lrzip_version()
    if torch is not None and torch.cuda.is_available():
        versions["GPU"] = f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
        smi = _envinfo_run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        versions["Driver"] = smi.strip().splitlines()[0] if smi and smi.strip() else "unknown"
    else:
        versions["GPU"] = "none"
    versions["Image"] = image_identity(image_file)
    return versions


def version_lines(versions: Mapping[str, str]) -> list[str]:
    """One `Running NAME VALUE` log line per entry of `collect_versions()`."""
    return [fmt_version_line(name, value) for name, value in versions.items()]
