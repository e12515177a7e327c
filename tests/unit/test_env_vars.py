"""Style rule 4: only config.py and dist.py read the environment, and the set of variables is pinned.

Adding a setting is a deliberate act: add the Config field and its name below in the same commit.
"""

from __future__ import annotations

import re
from pathlib import Path

from record.config import Config
from record.errors import RecordError

RECORD = Path(__file__).resolve().parents[2] / "record"
ENV_READERS = {"config.py", "dist.py"}
DIST_VARIABLES = {"RANK", "WORLD_SIZE", "LOCAL_RANK"}

PINNED_CONFIG_VARIABLES = [
    "ADAM_EPS",
    "ADAM_WD",
    "ARTIFACT_DIR",
    "ATTN_CLIP_SIGMAS",
    "ATTN_OUT_GATE_ENABLED",
    "ATTN_OUT_GATE_SRC",
    "BETA1",
    "BETA2",
    "CASEOPS_ENABLED",
    "COMPRESSOR",
    "DATA_DIR",
    "EMA_DECAY",
    "EMBED_BITS",
    "EMBED_CLIP_SIGMAS",
    "EMBED_LR",
    "EMBED_WD",
    "ENABLE_LOOPING_AT",
    "EVAL_SEQ_LEN",
    "EVAL_STRIDE",
    "FUSED_CE_ENABLED",
    "GATED_ATTN_ENABLED",
    "GATED_ATTN_INIT_STD",
    "GATED_ATTN_QUANT_GATE",
    "GATE_WINDOW",
    "GLOBAL_TTT_BATCH_SEQS",
    "GLOBAL_TTT_CHUNK_TOKENS",
    "GLOBAL_TTT_EPOCHS",
    "GLOBAL_TTT_GRAD_CLIP",
    "GLOBAL_TTT_LR",
    "GLOBAL_TTT_MOMENTUM",
    "GLOBAL_TTT_RESPECT_DOC_BOUNDARIES",
    "GLOBAL_TTT_WARMUP_CHUNKS",
    "GLOBAL_TTT_WARMUP_START_LR",
    "GPTQ_CALIBRATION_BATCHES",
    "GPTQ_RESERVE_SECONDS",
    "GRAD_CLIP_NORM",
    "ITERATIONS",
    "LN_SCALE",
    "LOGIT_SOFTCAP",
    "LOOP_END",
    "LOOP_START",
    "LQER_ASYM_ENABLED",
    "LQER_ASYM_GROUP",
    "LQER_ENABLED",
    "LQER_FACTOR_BITS",
    "LQER_RANK",
    "LQER_TOP_K",
    "MATRIX_BITS",
    "MATRIX_CLIP_SIGMAS",
    "MATRIX_LR",
    "MAX_WALLCLOCK_SECONDS",
    "MIN_LR",
    "MLP_CLIP_SIGMAS",
    "MLP_MULT",
    "MODEL_DIM",
    "MODEL_PATH",
    "MUON_BACKEND_STEPS",
    "MUON_MOMENTUM",
    "MUON_MOMENTUM_WARMUP_START",
    "MUON_MOMENTUM_WARMUP_STEPS",
    "MUON_ROW_NORMALIZE",
    "MUON_WD",
    "NUM_HEADS",
    "NUM_KV_HEADS",
    "NUM_LAYERS",
    "NUM_LOOPS",
    "PARALLEL_FINAL_LANE",
    "PARALLEL_START_LAYER",
    "PHASED_TTT_NUM_PHASES",
    "PHASED_TTT_PREFIX_DOCS",
    "QK_GAIN_INIT",
    "QUANTIZED_MODEL_PATH",
    "ROPE_BASE",
    "ROPE_DIMS",
    "ROPE_TRAIN_SEQ_LEN",
    "ROPE_YARN",
    "RUN_ID",
    "SCALAR_LR",
    "SEED",
    "SKIP_GATES_ENABLED",
    "SMEAR_GATE_ENABLED",
    "SPARSE_ATTN_GATE_ENABLED",
    "SPARSE_ATTN_GATE_INIT_STD",
    "SPARSE_ATTN_GATE_SCALE",
    "TIED_EMBED_INIT_STD",
    "TIED_EMBED_LR",
    "TIE_EMBEDDINGS",
    "TOKENIZER_PATH",
    "TRAIN_BATCH_TOKENS",
    "TRAIN_LOG_EVERY",
    "TRAIN_SEQ_LEN",
    "TTT_BATCH_SIZE",
    "TTT_BETA1",
    "TTT_BETA2",
    "TTT_CHUNK_SIZE",
    "TTT_ENABLED",
    "TTT_EVAL_BATCHES",
    "TTT_EVAL_SEQ_LEN",
    "TTT_GRAD_STEPS",
    "TTT_K_LORA",
    "TTT_LORA_ALPHA",
    "TTT_LORA_LR",
    "TTT_LORA_RANK",
    "TTT_MLP_LORA",
    "TTT_OPTIMIZER",
    "TTT_O_LORA",
    "TTT_WEIGHT_DECAY",
    "VAL_BATCH_TOKENS",
    "VAL_DOC_FRACTION",
    "VAL_LOSS_EVERY",
    "VOCAB_SIZE",
    "WARMDOWN_FRAC",
    "WARMUP_STEPS",
    "XSA_LAST_N",
]


def test_only_config_and_dist_read_the_environment():
    readers = {
        path.name for path in RECORD.glob("*.py") if re.search(r"os\.environ|getenv\(|environ\[", path.read_text())
    }
    assert readers <= ENV_READERS, f"{sorted(readers - ENV_READERS)} read os.environ (go through Config)"


def test_config_variables_are_pinned():
    assert Config.env_names() == PINNED_CONFIG_VARIABLES


def test_dist_variables_are_not_config_settings():
    assert not DIST_VARIABLES & set(Config.env_names())
    dist_source = (RECORD / "dist.py").read_text()
    named = set(re.findall(r'"([A-Z][A-Z_]+)"', dist_source))
    assert named & DIST_VARIABLES == DIST_VARIABLES


def test_config_reads_exactly_its_pinned_variables():
    """Every pinned variable changes the config when set; nothing else in a busy environment does."""
    base = Config()
    for name in PINNED_CONFIG_VARIABLES:
        field = name.lower()
        value = getattr(base, field)
        if isinstance(value, bool):
            text = "0" if value else "1"
        elif isinstance(value, (int, float)):
            continue  # numeric ranges are validated; flipping types is covered in test_config
        else:
            text = value + "x" if field not in Config.CHOICES else None
            if text is None:
                continue
        try:
            assert getattr(Config.from_env({name: text}), field) != value, name
        except RecordError as exc:  # a value the network refuses is still a value that was read
            assert str(exc).startswith(name), exc
    assert Config.from_env({"HOME": "/x", "CUDA_VISIBLE_DEVICES": "0", "LANG": "C"}) == base
