"""Checks that run in seconds before an hour of GPU time is spent.

Each check looks at one thing (the seed list, GPUs, disk, the compressor, the attention backend, the
shards, the tokenizer against the shards, config consistency across seeds) and returns a `Finding`.
`run_preflight` runs them all and reports every problem at once, so a broken box is fixed in one pass
rather than one error per launch. Every check reads headers, metadata or one shard, so the whole
preflight stays within a few seconds even on the full dataset.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golfkit.runs import presets
from golfkit.runs.runplan import RunPlan

MIN_FREE_BYTES = {"record": 5 * 1024**3, "demo": 200 * 1024**2}
# How many tokens of the first training shard are checked against the vocabulary (a few MB of reading).
TRAIN_IDS_CHECKED = 1 << 20


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    ok: bool
    detail: str
    skipped: bool = False  # the check did not apply here (e.g. no GPU to try a backend on)


def _ok(check: str, detail: str) -> Finding:
    return Finding(check, True, detail)


def _fail(check: str, detail: str) -> Finding:
    return Finding(check, False, detail)


def _skip(check: str, detail: str) -> Finding:
    return Finding(check, True, detail, skipped=True)


def _check_seeds(plan: RunPlan, cfg: Any) -> Finding:
    if not plan.seeds:
        return _fail("seeds", "the seed list is empty (e.g. `seeds 42 314 999`)")
    duplicates = sorted({s for s in plan.seeds if plan.seeds.count(s) > 1})
    if duplicates:
        return _fail("seeds", f"seed {duplicates[0]} is listed twice (list each seed once)")
    return _ok("seeds", " ".join(str(s) for s in plan.seeds))


# Runs in a child process: probing a GPU (and trying the attention kernels on it) creates a CUDA context,
# and one held by this process would sit on GPU 0 for the whole run.
_GPU_PROBE = """
import json, torch
count = torch.cuda.device_count() if torch.cuda.is_available() else 0
names = [torch.cuda.get_device_name(i) for i in range(count)]
backend = None
if count:
    from record.attention import pick_attention_backend
    backend = pick_attention_backend("cuda", 0)
print(json.dumps({"count": count, "names": names, "backend": backend}))
"""
GPU_PROBE_TIMEOUT_S = 120


@dataclass(frozen=True, slots=True)
class GpuProbe:
    count: int
    names: list[str]
    backend: str | None  # the attention backend record.attention picks on GPU 0; None without a GPU
    problem: str = ""  # why the probe itself failed


@functools.cache
def probe_gpus() -> GpuProbe:
    """The visible GPUs and the attention backend, read by a short child process (cached)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _GPU_PROBE], capture_output=True, text=True, timeout=GPU_PROBE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return GpuProbe(0, [], None, f"the GPU probe did not answer in {GPU_PROBE_TIMEOUT_S} s")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return GpuProbe(0, [], None, f"the GPU probe failed: {last}")
    found = json.loads(lines[-1])
    return GpuProbe(int(found["count"]), list(found["names"]), found["backend"])


def _check_gpus(plan: RunPlan, cfg: Any) -> Finding:
    if plan.preset == "demo":
        return _ok("gpus", "the demo runs on the CPU")
    probe = probe_gpus()
    if probe.problem:
        return _fail("gpus", f"{probe.problem} (check the CUDA install with `nvidia-smi`)")
    if probe.count == 0:
        return _fail("gpus", "no CUDA GPU visible (the record preset needs GPUs; `golfkit demo` runs on CPU)")
    if probe.count < plan.nproc:
        return _fail("gpus", f"--nproc {plan.nproc} but only {probe.count} GPU(s) visible (lower --nproc)")
    names = sorted(set(probe.names[: plan.nproc]))
    note = "" if all("H100" in n for n in names) else " (the record's timings are for 8xH100 SXM)"
    return _ok("gpus", f"{plan.nproc} x {', '.join(names)}{note}")


def _check_disk(plan: RunPlan, cfg: Any) -> Finding:
    plan.runs_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(plan.runs_dir).free
    need = MIN_FREE_BYTES[plan.preset]
    if free < need:
        return _fail("disk", f"{plan.runs_dir}: {free / 1e9:.1f} GB free, need {need / 1e9:.1f} GB (free some space)")
    return _ok("disk", f"{free / 1e9:.1f} GB free in {plan.runs_dir}")


def _check_compressor(plan: RunPlan, cfg: Any) -> Finding:
    """The record program's own start-up check (lrzip for pergroup, the brotli package), run early."""
    from record.artifact import preflight_compressor

    preflight_compressor(cfg)
    where = f" ({shutil.which('lrzip')})" if cfg.compressor == "pergroup" else ""
    return _ok("compressor", f"COMPRESSOR={cfg.compressor} can run{where}")


def _check_attention(plan: RunPlan, cfg: Any) -> Finding:
    if plan.preset == "demo":
        from record.attention import pick_attention_backend

        return _ok("attention", f"{pick_attention_backend('cpu')} on the CPU")
    probe = probe_gpus()
    if probe.backend is None:
        return _skip("attention", "no GPU to try the kernels on")
    if probe.backend == "sdpa":
        return _fail(
            "attention",
            "neither FlashAttention 4 nor 3 runs here, only PyTorch SDPA: far fewer steps fit in the time limit "
            "(use the golfkit image, or install flash-attn-3)",
        )
    return _ok("attention", probe.backend)


def _shards(pattern: str) -> list[Path]:
    from record.data import list_shards

    return list_shards(pattern)


def _check_data(plan: RunPlan, cfg: Any) -> Finding:
    """Training, validation and (with CaseOps) byte-sidecar shards exist, with sound headers and the
    sidecar one count per validation token."""
    from record.data import shard_token_count

    train, val = _shards(cfg.train_files), _shards(cfg.val_files)
    for files, what, pattern in ((train, "training", cfg.train_files), (val, "validation", cfg.val_files)):
        if not files:
            return _fail("data", f"no {what} shards match {pattern} (run `golfkit data download` or set DATA_DIR)")
    val_tokens = sum(shard_token_count(f) for f in val)
    train_tokens = sum(shard_token_count(f) for f in train)
    detail = f"{len(train)} train shard(s) ({train_tokens:,} tokens), {len(val)} val shard(s) ({val_tokens:,} tokens)"
    if cfg.caseops_enabled:
        sidecar = _shards(cfg.val_bytes_files)
        if not sidecar:
            return _fail(
                "data",
                f"no byte sidecar matches {cfg.val_bytes_files}; CaseOps BPB needs it "
                "(download the fineweb_val_bytes_*.bin files)",
            )
        for tokens_file, bytes_file in zip(val, sidecar, strict=False):
            if shard_token_count(bytes_file) != shard_token_count(tokens_file):
                return _fail(
                    "data",
                    f"{bytes_file.name} has {shard_token_count(bytes_file):,} entries for "
                    f"{shard_token_count(tokens_file):,} tokens in {tokens_file.name} (re-download both)",
                )
        if len(sidecar) != len(val):
            return _fail("data", f"{len(sidecar)} byte sidecar shard(s) for {len(val)} val shard(s) (re-download)")
        detail += " + byte sidecar"
    return _ok("data", detail)


def _check_tokenizer(plan: RunPlan, cfg: Any) -> Finding:
    """The tokenizer loads with VOCAB_SIZE pieces, and the shards hold no id outside the vocabulary."""
    from record.data import read_shard
    from record.tokenizer import load_tokenizer

    load_tokenizer(cfg.tokenizer_path, cfg.vocab_size, caseops=cfg.caseops_enabled)
    samples = [(f, None) for f in _shards(cfg.val_files)[:1]] + [
        (f, TRAIN_IDS_CHECKED) for f in _shards(cfg.train_files)[:1]
    ]
    for path, limit in samples:
        tokens = read_shard(path)[:limit]
        top = int(tokens.max()) if tokens.size else -1
        if top >= cfg.vocab_size:
            return _fail(
                "tokenizer",
                f"{path.name} holds token id {top} but VOCAB_SIZE is {cfg.vocab_size}: the shards were made with "
                "another tokenizer (use the matching tokenizer and VOCAB_SIZE, or rebuild the shards)",
            )
    return _ok("tokenizer", f"{Path(cfg.tokenizer_path).name}: {cfg.vocab_size} pieces, shard ids in range")


def config_differences(logged: Mapping[str, str], planned: Mapping[str, str], rules: Any) -> list[str]:
    """`key=logged (now planned)` for every setting that differs, except those a seed may change."""
    keys = sorted(k for k in set(logged) | set(planned) if not rules.config_key_ignored(k))
    return [
        f"{key}={logged.get(key, '<absent>')} (now {planned.get(key, '<absent>')})"
        for key in keys
        if logged.get(key, "<absent>") != planned.get(key, "<absent>")
    ]


def planned_hyperparameters(plan: RunPlan, cfg: Any) -> dict[str, str]:
    """The `Hyperparameters:` dump each seed of the plan will log, as logparse reads a dump back."""
    from golfkit.check.logpatterns import LOG_PATTERNS

    runtime = cfg.with_runtime(rank=0, world_size=plan.nproc, local_rank=0)
    dump = {}
    for line in runtime.hyperparameter_lines():
        match = LOG_PATTERNS["hyperparameter"].match(line)
        if match:
            dump[match["key"]] = match["value"]
    return dump


def _check_same_config(plan: RunPlan, cfg: Any) -> Finding:
    """Seeds already complete must have run with the configuration this run would use."""
    from golfkit.check.logparse import parse_log
    from golfkit.check.rules import load_rules
    from golfkit.runs.seedrun import final_log_path, is_complete_log

    done = [final_log_path(plan.runs_dir, s) for s in plan.seeds]
    done = [log for log in done if is_complete_log(log)]
    if plan.force or not done:
        return _ok("config", f"{len(plan.seeds)} seed(s) will share one configuration")
    rules = load_rules(presets.rules_for(plan.preset))
    planned = planned_hyperparameters(plan, cfg)
    code = planned_code_bytes(plan)
    for log in done:
        record = parse_log(log)
        diffs = config_differences(record.hyperparameters, planned, rules)
        if diffs:
            return _fail(
                "config",
                f"{log} ran with {diffs[0]}; {len(diffs)} setting(s) differ (rerun with the same overrides, "
                "or --force to redo every seed)",
            )
        if code is not None and record.code_bytes is not None and record.code_bytes != code:
            # A seed of other code would ship beside a train_gpt.py it did not run (verify's GK114).
            return _fail(
                "config",
                f"{log} ran other code ({record.code_bytes:,} code bytes; this run's program counts {code:,}): "
                "--force redoes every seed with this code",
            )
    return _ok("config", f"{len(done)} complete seed log(s) match the planned configuration and code")


def planned_code_bytes(plan: RunPlan) -> int | None:
    """The code bytes each seed will log: the program file's size, or for the record package the
    shipped form's measured size (None where that cannot be measured: no python-minifier)."""
    if plan.program is not None:
        return plan.program.stat().st_size
    from record.shipform import estimate_code_size

    estimate = estimate_code_size(Path(__file__).resolve().parents[2] / "record")
    return None if estimate.note else estimate.compressed


CHECKS: tuple[Callable[[RunPlan, Any], Finding], ...] = (
    _check_seeds,
    _check_gpus,
    _check_disk,
    _check_compressor,
    _check_attention,
    _check_data,
    _check_tokenizer,
    _check_same_config,
)


def load_run_config(plan: RunPlan, base_env: Mapping[str, str]) -> Any:
    """The record's Config as every seed will see it: the shell's settings (each seed's process inherits
    them), then the preset's, then the command line's overrides; SEED is left to each run."""
    import os

    from record.config import Config

    return Config.from_overrides({**base_env, **plan.overrides}, base=Config.from_env(os.environ))


def run_preflight(plan: RunPlan, cfg: Any) -> list[Finding]:
    """Run every check; a check that raises a user-facing error becomes a failed finding."""
    from golfkit.errors import USER_ERRORS

    findings = []
    for check in CHECKS:
        name = check.__name__.removeprefix("_check_")
        try:
            findings.append(check(plan, cfg))
        except USER_ERRORS as exc:
            findings.append(Finding(name, False, str(exc)))
    return findings
