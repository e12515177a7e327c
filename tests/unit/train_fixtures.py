"""Synthetic training data for the trainer's tests: a real tiny CaseOps tokenizer and shards of
BOS-started documents whose tokens follow a noisy deterministic chain, so a model can learn them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from golfkit.data.dataprep import TRAIN_SHARD_NAME, VAL_BYTES_SHARD_NAME, VAL_SHARD_NAME, write_shard
from golfkit.data.tokenizer import train_demo_tokenizer
from golfkit.runs.presets import TINY_SETTINGS
from record.config import DATASET_NAME, TOKENIZER_NAME

FIXTURE_DOCS = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "docs.jsonl"
VOCAB = 512

# The trainer tests' model: the tiny model (golfkit.runs.presets.TINY_SETTINGS) cut to 2 layers, looping
# layer 0 from half the steps, plus the run settings of a 30-step CPU training.
TINY_ENV = {
    **TINY_SETTINGS,
    "VOCAB_SIZE": str(VOCAB),
    "NUM_LAYERS": "2",
    "LOOP_START": "0",
    "LOOP_END": "1",
    "PARALLEL_START_LAYER": "1",
    "XSA_LAST_N": "2",
    "MAX_WALLCLOCK_SECONDS": "0",
    "ITERATIONS": "30",
    "WARMUP_STEPS": "2",
    "ENABLE_LOOPING_AT": "0.5",
    "TRAIN_LOG_EVERY": "1",
    "MATRIX_LR": "0.05",
    "GPTQ_CALIBRATION_BATCHES": "2",
    "LQER_ASYM_GROUP": "16",
    "TTT_BATCH_SIZE": "8",
    "TTT_CHUNK_SIZE": "32",
    "PHASED_TTT_PREFIX_DOCS": "8",
    "GLOBAL_TTT_CHUNK_TOKENS": "2048",
    "GLOBAL_TTT_BATCH_SEQS": "4",
}


def tiny_tokenizer(folder: Path) -> Path:
    """A 512-piece CaseOps tokenizer trained on the fixture documents (under a second)."""
    texts = [json.loads(line)["text"] for line in FIXTURE_DOCS.read_text(encoding="utf-8").splitlines()]
    return train_demo_tokenizer(texts, VOCAB, folder / "tiny_caseops")


def chain_documents(num_tokens: int, seed: int) -> np.ndarray:
    """BOS-started documents of 40-200 tokens; each token is a fixed function of the previous one 80% of
    the time, else random: learnable, but not trivially."""
    rng = np.random.default_rng(seed)
    out = np.empty(num_tokens, dtype=np.int64)
    pos = 0
    while pos < num_tokens:
        length = int(rng.integers(40, 200))
        doc = np.empty(length, dtype=np.int64)
        doc[0] = 1
        token = int(rng.integers(2, VOCAB))
        noise = rng.random(length)
        jumps = rng.integers(2, VOCAB, length)
        for i in range(1, length):
            token = (token * 5 + 17) % (VOCAB - 2) + 2 if noise[i] < 0.8 else int(jumps[i])
            doc[i] = token
        take = min(length, num_tokens - pos)
        out[pos : pos + take] = doc[:take]
        pos += take
    return out


def write_tiny_data(data_dir: Path, tokenizer: Path, train_tokens: int = 200_000, val_tokens: int = 20_000) -> Path:
    """DATA_DIR layout (datasets/<name>/ shards + sidecar, tokenizers/<name>) of synthetic documents."""
    shard_dir = data_dir / "datasets" / DATASET_NAME
    shard_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "tokenizers").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokenizer, data_dir / "tokenizers" / TOKENIZER_NAME)
    write_shard(shard_dir / TRAIN_SHARD_NAME.format(0), chain_documents(train_tokens, seed=1))
    val = chain_documents(val_tokens, seed=2)
    sidecar = np.where(val == 1, 0, 1 + val % 4)
    write_shard(shard_dir / VAL_SHARD_NAME.format(0), val)
    write_shard(shard_dir / VAL_BYTES_SHARD_NAME.format(0), sidecar)
    return data_dir
