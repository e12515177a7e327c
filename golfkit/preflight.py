"""Checks that run in seconds before an hour of GPU time is spent.

Each check looks at one thing (GPUs, disk, lrzip, attention backend, data, tokenizer, config
consistency across seeds) and returns a one-line problem or None. `run_preflight` runs them all and
reports every problem at once, so a broken box is fixed in one pass rather than one error per launch.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from golfkit.runplan import RunPlan

MIN_FREE_BYTES = {"record": 5 * 1024**3, "demo": 200 * 1024**2}


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    ok: bool
    detail: str


def _check_gpus(plan: RunPlan, cfg: object) -> Finding:
    if plan.preset == "demo":
        return Finding("gpus", True, "demo runs on the CPU")
    try:
        import torch
    except ImportError:
        return Finding(
            "gpus", False, "torch is not installed (install the GPU image or `pip install -e .[train]`)"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return Finding(
            "gpus", False, "no CUDA GPU visible (the record preset needs GPUs; try --preset demo on CPU)"
        )
    if count < plan.nproc:
        return Finding("gpus", False, f"--nproc {plan.nproc} but only {count} GPU(s) visible (lower --nproc)")
    names = sorted({torch.cuda.get_device_name(i) for i in range(plan.nproc)})
    note = "" if all("H100" in n for n in names) else " (the record's timings are for 8xH100 SXM)"
    return Finding("gpus", True, f"{plan.nproc} x {', '.join(names)}{note}")


def _check_disk(plan: RunPlan, cfg: object) -> Finding:
    plan.runs_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(plan.runs_dir).free
    need = MIN_FREE_BYTES[plan.preset]
    if free < need:
        return Finding("disk", False, f"{plan.runs_dir}: {free / 1e9:.1f} GB free, need {need / 1e9:.1f} GB")
    return Finding("disk", True, f"{free / 1e9:.1f} GB free in {plan.runs_dir}")


def _check_lrzip(plan: RunPlan, cfg: object) -> Finding:
    compressor = getattr(cfg, "compressor", "pergroup")
    if compressor != "pergroup":
        return Finding("lrzip", True, f"not needed (COMPRESSOR={compressor})")
    path = shutil.which("lrzip")
    if path is None:
        return Finding(
            "lrzip", False, "the lrzip binary is missing (apt-get install lrzip) and COMPRESSOR=pergroup"
        )
    return Finding("lrzip", True, path)


def _check_attention(plan: RunPlan, cfg: object) -> Finding:
    from record.attention import describe_attention_backend

    return Finding("attention", True, describe_attention_backend(want_cuda=plan.preset != "demo"))


def _check_data(plan: RunPlan, cfg: object) -> Finding:
    from record.data import check_dataset

    return Finding("data", True, check_dataset(cfg))


def _check_same_config(plan: RunPlan, cfg: object) -> Finding:
    """Seeds already complete must have run with the configuration this run would use."""
    from golfkit.logparse import parse_log
    from golfkit.seedrun import final_log_path
    from record.config import config_differences

    for seed in plan.seeds:
        log = final_log_path(plan.runs_dir, seed)
        if plan.force or not log.exists():
            continue
        diffs = config_differences(parse_log(log).hyperparameters, cfg)
        if diffs:
            first = diffs[0]
            return Finding(
                "config",
                False,
                f"{log} ran with {first} ({len(diffs)} setting(s) differ; rerun with --force "
                "or the same overrides)",
            )
    return Finding("config", True, f"{len(plan.seeds)} seed(s) share one configuration")


CHECKS: tuple[Callable[[RunPlan, object], Finding], ...] = (
    _check_gpus,
    _check_disk,
    _check_lrzip,
    _check_attention,
    _check_data,
    _check_same_config,
)


def load_run_config(plan: RunPlan, base_env: Mapping[str, str]) -> object:
    """The record's Config as every seed will see it (overrides applied, SEED left to each run)."""
    from record.config import Config

    return Config.from_overrides({**base_env, **plan.overrides})


def run_preflight(plan: RunPlan, cfg: object) -> list[Finding]:
    """Run every check; a check that raises a user-facing error becomes a failed finding."""
    from golfkit.errors import GolfkitError
    from record.errors import RecordError

    findings = []
    for check in CHECKS:
        name = check.__name__.removeprefix("_check_")
        try:
            findings.append(check(plan, cfg))
        except (GolfkitError, RecordError) as exc:
            findings.append(Finding(name, False, str(exc)))
    return findings


def data_dir_of(cfg: object) -> Path:
    return Path(getattr(cfg, "data_dir", "data"))
