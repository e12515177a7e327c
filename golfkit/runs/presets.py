"""Named run presets: the real record (8xH100, published data) and the CPU demo.

A preset is environment settings for the record program plus the rules its logs are verified against.
The demo keeps every stage of the record (CaseOps tokenizer, shards, looped model, GPTQ + LQER, pergroup
lrzip artifact, phased TTT) but at a size a laptop CPU trains in about a minute.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from golfkit.runs.runplan import RunPlan
from record.config import Config

# The tiny model, as settings: the one source for tiny_config (CPU tests, `golfkit params --tiny`, the
# benchmarks' --tiny), the demo's model (DEMO_SETTINGS, below) and the trainer tests' TINY_ENV
# (tests/unit/train_fixtures.py), which each change only what they list. It is small enough for a CPU
# and still exercises every feature: depth recurrence (layers 1-2), a U-Net skip, a two-lane parallel
# block (the last layer), XSA on every layer and GQA.
TINY_SETTINGS: dict[str, str] = {
    "VOCAB_SIZE": "512",
    "NUM_LAYERS": "4",
    "MODEL_DIM": "64",
    "NUM_HEADS": "4",
    "NUM_KV_HEADS": "2",
    "ROPE_DIMS": "8",
    "LOOP_START": "1",
    "LOOP_END": "2",
    "NUM_LOOPS": "2",
    "PARALLEL_START_LAYER": "3",
    "XSA_LAST_N": "4",
    "TRAIN_SEQ_LEN": "128",
    "EVAL_SEQ_LEN": "128",
    "ROPE_TRAIN_SEQ_LEN": "128",
    "TTT_EVAL_SEQ_LEN": "128",
    "TRAIN_BATCH_TOKENS": "4096",
    "VAL_BATCH_TOKENS": "4096",
    "TTT_LORA_RANK": "4",
    "TTT_LORA_ALPHA": "6",
}

# The demo's model: the tiny model at width 144, fed by a 512-piece CaseOps tokenizer trained on the
# demo corpus. Width 144 is the smallest round width whose MLP and embedding matrices exceed
# quant.PASSTHROUGH_MAX_NUMEL (65,536), so GPTQ (int6 MLP, int7 embedding), LQER and the per-group
# lrzip streams all run, as in the record.
# Training stops on the wallclock cap (about 45 s: ~30 steps of 4,096 tokens on 2 CPU cores); the EMA
# decays fast enough to follow so few steps. Phased TTT adapts on 6 prefix documents in 3 phases, then
# scores the rest of the 24 short validation documents with per-document LoRA.
DEMO_SETTINGS: dict[str, str] = {
    **TINY_SETTINGS,
    "MODEL_DIM": "144",
    "ROPE_DIMS": "16",
    "MAX_WALLCLOCK_SECONDS": "45",
    "ITERATIONS": "300",
    "WARMUP_STEPS": "3",
    "TRAIN_LOG_EVERY": "10",
    "EMA_DECAY": "0.9",
    "GPTQ_CALIBRATION_BATCHES": "2",
    "LQER_TOP_K": "3",
    "LQER_ASYM_GROUP": "16",
    "TTT_LORA_LR": "0.003",
    "TTT_BATCH_SIZE": "8",
    "TTT_CHUNK_SIZE": "64",
    "PHASED_TTT_NUM_PHASES": "3",
    "PHASED_TTT_PREFIX_DOCS": "6",
    "GLOBAL_TTT_CHUNK_TOKENS": "512",
    "GLOBAL_TTT_BATCH_SEQS": "4",
}


def demo_data_dir(runs_dir: Path) -> Path:
    return runs_dir / "data"


def preset_env(preset: str, runs_dir: Path) -> dict[str, str]:
    """Environment settings of a preset (the record's are its defaults, so it sets nothing)."""
    if preset == "demo":
        return {**DEMO_SETTINGS, "DATA_DIR": str(demo_data_dir(runs_dir))}
    return {}


def default_nproc(preset: str) -> int:
    """All visible GPUs for the record (up to 8), one CPU process for the demo."""
    if preset == "demo":
        return 1
    try:
        import torch
    except ImportError:
        return 8
    return max(1, min(8, torch.cuda.device_count()))


def uses_torchrun(preset: str, nproc: int) -> bool:
    return preset != "demo" or nproc > 1


def rules_for(preset: str) -> str:
    """The rules file the preset's logs are checked against (see golfkit/check/rules/)."""
    return "demo" if preset == "demo" else "track_10min_16mb"


RECORD_BLURB = "A reproduction of PR #1934 (SP8192 CaseOps + phased TTT + GPTQ + LQER + pergroup LRZIP) with golfkit."
DEMO_BLURB = (
    "golfkit's CPU demo: every stage of PR #1934 (CaseOps tokenizer, looped GPT, GPTQ + LQER, pergroup lrzip "
    "artifact, phased LoRA TTT) at toy scale, trained on the Python standard library's documentation."
)


def assemble_kwargs(plan: RunPlan, logs: list[Path], code: Path) -> dict[str, Any]:
    """Keyword arguments of golfkit.pr.assemble.assemble_record for a finished plan.

    The demo's folder is marked not a record (track non_record_16mb) and refreshed on every demo run;
    its logs carry no GPU, so the hardware is stated here. A record folder is built once: an existing
    one is refused by assemble, never overwritten.
    """
    demo = plan.preset == "demo"
    kwargs: dict[str, Any] = {
        "logs": logs,
        "name": plan.name,
        "author": plan.author or ("golfkit demo" if demo else "golfkit user"),
        "github_id": plan.github_id or ("golfkit-demo" if demo else "unknown"),
        "blurb": plan.blurb or (DEMO_BLURB if demo else RECORD_BLURB),
        "code": code,
        "out": plan.records_dir,
        "not_a_record": demo,
        "force": demo,
    }
    if demo:
        kwargs["hardware"] = f"CPU ({os.cpu_count() or 1} cores, 1 process)"
    return kwargs


def tiny_config(**overrides: Any) -> Config:
    """The tiny model (TINY_SETTINGS) as a Config, with `overrides` given as field values."""
    return dataclasses.replace(Config.from_overrides(TINY_SETTINGS), **overrides)
