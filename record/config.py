"""Every setting of the record program, in one frozen dataclass read once from the environment.

The fields are the keys of the reference's `Hyperparameters:` log dump (PR #1855's train_gpt.py) with
PR #1934's values as defaults, so a plain `torchrun -m record` reproduces the record. A field's
environment variable is its name upper-cased (`MATRIX_LR=0.03`). The runtime fields (rank, world size,
local rank) belong to `record.dist` and are filled by `Config.with_runtime`; the rest of the dump's
derived keys (file patterns, `grad_accum_steps`, ...) are properties, so they can never disagree with
the fields they come from.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from record.errors import RecordError
from record.logkeys import fmt_hyperparameters

DATASET_NAME = "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"
TOKENIZER_NAME = "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"
# Micro-batches per optimiser step, whatever the world size: the record's 8 GPUs run one each, fewer
# GPUs accumulate more (grad_accum_steps), so the step and its batch stay the same.
MICRO_BATCHES_PER_STEP = 8

# Settings the reference reads that this program implements at their default value only: the feature
# is always on (tied embeddings, fused cross-entropy where the kernels run, BOS-masked global TTT), is
# absent (the sliding-window eval of EVAL_STRIDE, the dense and output attention gates' own options, the
# untied embedding's LR), or has one form. They stay in the hyperparameter dump; any other value is
# refused by _check_config instead of being silently ignored.
DEFAULT_ONLY = (
    "tie_embeddings",
    "embed_lr",
    "parallel_final_lane",
    "gated_attn_init_std",
    "attn_out_gate_src",
    "fused_ce_enabled",
    "eval_stride",
    "global_ttt_respect_doc_boundaries",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """The record's hyperparameters. Defaults are PR #1934's; comments give meaning or range."""

    # --- run and files ---
    run_id: str = ""  # names logs/<run_id>.txt; empty = a fresh uuid4 chosen by with_runtime
    seed: int = 1337  # torch/numpy/python RNG seed of the whole run
    data_dir: str = "./data"  # holds datasets/<DATASET_NAME>/ and tokenizers/<TOKENIZER_NAME>
    tokenizer_path: str = ""  # empty = data_dir/tokenizers/<TOKENIZER_NAME>
    artifact_dir: str = ""  # where model files are written; empty = current directory
    model_path: str = "final_model.pt"  # raw (unquantized) EMA weights
    quantized_model_path: str = "final_model.int6.ptz"  # the submitted compressed artifact
    caseops_enabled: bool = True  # data is CaseOps-transformed (lossless case operators)
    val_doc_fraction: float = 1.0  # share of the validation documents scored, (0, 1]

    # --- model ---
    vocab_size: int = 8192  # tokenizer vocabulary; shards and tokenizer must match it
    num_layers: int = 11  # physical blocks
    model_dim: int = 512  # residual stream width
    num_heads: int = 8  # query heads; head dim = model_dim / num_heads
    num_kv_heads: int = 4  # grouped-query KV heads; must divide num_heads
    mlp_mult: float = 4.0  # MLP hidden = mlp_mult * model_dim
    tie_embeddings: bool = True  # output head is tok_emb (the only supported form)
    tied_embed_init_std: float = 0.005  # tok_emb ~ N(0, std)
    logit_softcap: float = 30.0  # logits = cap * tanh(logits / cap)
    rope_base: float = 10000.0  # RoPE frequency base
    rope_dims: int = 16  # RoPE on the first rope_dims of each head's dims (even, <= head dim)
    rope_train_seq_len: int = 2048  # YaRN's reference length (only used when rope_yarn)
    rope_yarn: bool = False  # stretch RoPE (YaRN) for sequences longer than rope_train_seq_len
    qk_gain_init: float = 5.0  # per-head query gain after QK-norm
    ln_scale: bool = True  # scale block inputs by 1/sqrt(layer_idx + 1)
    xsa_last_n: int = 11  # XSA (remove the value-direction component) on the last n layers
    skip_gates_enabled: bool = True  # U-Net skips blend through sigmoid gates
    parallel_start_layer: int = 8  # decoder layers >= this run as two residual lanes
    parallel_final_lane: str = "mean"  # how the two lanes become one hidden state
    loop_start: int = 3  # first layer of the depth-recurrence segment
    loop_end: int = 5  # last layer (inclusive) of the segment
    num_loops: int = 2  # extra passes over the segment once looping is on
    enable_looping_at: float = 0.35  # training fraction at which looping switches on
    gate_window: int = 12  # leading dims of x read by the smear and attention gates
    smear_gate_enabled: bool = True  # BOS-safe SmearGate after the embedding
    sparse_attn_gate_enabled: bool = True  # per-head sigmoid gate on attention outputs
    sparse_attn_gate_init_std: float = 0.0  # 0 = zero init (gate 0.5 at start)
    sparse_attn_gate_scale: float = 1.0  # gate = sigmoid(scale * W_h . x[:gate_window])
    gated_attn_enabled: bool = False  # the older dense attention gate (off in the record)
    gated_attn_init_std: float = 0.01  # the dense gate's init (default only: that gate is not implemented)
    gated_attn_quant_gate: bool = True  # quantize the attention gate weights to int8
    attn_out_gate_enabled: bool = False  # PR #1667's output gate (off in the record)
    attn_out_gate_src: str = "proj"  # the output gate's input (default only: that gate is not implemented)
    fused_ce_enabled: bool = True  # fused softcapped cross-entropy kernel in training

    # --- training schedule ---
    iterations: int = 20000  # step budget; the wallclock cap usually stops training first
    max_wallclock_seconds: float = 600.0  # 0 = no cap
    warmup_steps: int = 20  # untimed compile warm-up steps (weights restored afterwards)
    warmdown_frac: float = 0.75  # last fraction of training with a linear LR decay
    min_lr: float = 0.1  # LR multiplier floor during warm-down
    train_batch_tokens: int = 786432  # tokens per optimiser step over all ranks
    train_seq_len: int = 2048  # tokens per training row
    train_log_every: int = 500  # log the train loss every n steps (and the first 5); 0 = never
    val_loss_every: int = 0  # 0 = no validation during training
    val_batch_tokens: int = 524288  # plain evaluation: this / 8 tokens per forward
    eval_seq_len: int = 2048  # row length of the plain evaluation and of global TTT
    eval_stride: int = 64  # the reference's sliding-window stride (default only: no sliding window here)
    grad_clip_norm: float = 0.3  # global-norm clip; 0 = off
    ema_decay: float = 0.9965  # per-step decay of the weight EMA that is exported

    # --- optimisers ---
    matrix_lr: float = 0.026  # Muon on the weight banks
    muon_momentum: float = 0.97  # Nesterov momentum after the warm-up
    muon_momentum_warmup_start: float = 0.92  # momentum at step 0, ramped linearly ...
    muon_momentum_warmup_steps: int = 1500  # ... to muon_momentum over this many steps
    muon_backend_steps: int = 5  # Newton-Schulz (Polar Express) iterations
    muon_row_normalize: bool = True  # normalise each row of the update before orthogonalising
    muon_wd: float = 0.095  # decoupled weight decay of the banks (scaled by the LR)
    embed_lr: float = 0.6  # untied embedding LR (unused while tie_embeddings)
    tied_embed_lr: float = 0.03  # AdamW on tok_emb
    embed_wd: float = 0.06  # AdamW weight decay of tok_emb
    scalar_lr: float = 0.02  # AdamW on the control tensors
    adam_wd: float = 0.02  # AdamW weight decay of the control tensors
    adam_eps: float = 1e-8  # eps of both AdamW optimisers
    beta1: float = 0.9  # AdamW beta1 (tok_emb and control tensors)
    beta2: float = 0.95  # AdamW beta2 (tok_emb and control tensors)

    # --- quantization and artifact ---
    matrix_bits: int = 6  # GPTQ code width of the block matrices
    embed_bits: int = 7  # GPTQ code width of tok_emb
    matrix_clip_sigmas: float = 12.85  # GPTQ clip in row std devs (other matrices)
    attn_clip_sigmas: float = 12.0  # the same for attention matrices
    mlp_clip_sigmas: float = 12.0  # the same for MLP matrices
    embed_clip_sigmas: float = 12.0  # the same for tok_emb
    gptq_calibration_batches: int = 16  # training micro-batches whose activations give the Hessians
    gptq_reserve_seconds: float = 0.5  # training time kept back for GPTQ
    lqer_enabled: bool = True  # low-rank correction of the worst-quantized matrices
    lqer_asym_enabled: bool = True  # LQER factors as 2-bit A + grouped int4 B (else per-row symmetric)
    lqer_rank: int = 4  # rank of each LQER correction
    lqer_top_k: int = 3  # how many matrices (largest quantization error) get one
    lqer_factor_bits: int = 4  # bits of the symmetric fallback's factors
    lqer_asym_group: int = 64  # entries of B sharing one scale in the asymmetric form
    compressor: str = "pergroup"  # pergroup (lrzip per group), brotli or lzma

    # --- test-time training (score-first, per-document LoRA) ---
    ttt_enabled: bool = True  # run the phased TTT evaluation (the headline score)
    ttt_optimizer: str = "adam"  # the LoRA optimizer: adam (AdamW) or sgd
    ttt_lora_rank: int = 96  # rank of each per-document LoRA
    ttt_lora_alpha: float = 144.0  # LoRA scale = alpha / rank
    ttt_lora_lr: float = 0.0001  # LoRA learning rate
    ttt_beta1: float = 0.0  # AdamW beta1 of the LoRA (SGD momentum with ttt_optimizer=sgd)
    ttt_beta2: float = 0.999  # AdamW beta2 of the LoRA
    ttt_weight_decay: float = 1.0  # decoupled weight decay of the LoRA
    ttt_chunk_size: int = 48  # predictions scored per step before the LoRA trains on them
    ttt_batch_size: int = 64  # documents scored side by side (LoRA rows)
    ttt_grad_steps: int = 1  # LoRA optimizer steps per scored chunk
    ttt_eval_seq_len: int = 2048  # longest context window of a TTT forward
    ttt_eval_batches: str = ""  # empty = all
    ttt_k_lora: bool = True  # adapt the keys too (q, v and the head always are)
    ttt_o_lora: bool = True  # adapt the attention output projection
    ttt_mlp_lora: bool = True  # adapt the MLP output
    phased_ttt_num_phases: int = 3  # global-SGD pauses during the evaluation
    phased_ttt_prefix_docs: int = 2000  # documents global SGD covers by the last pause (666/1333/2000)
    global_ttt_lr: float = 0.001  # peak LR of the global SGD of the base weights
    global_ttt_momentum: float = 0.9  # its momentum
    global_ttt_epochs: int = 1  # SGD steps per chunk; 0 = no global SGD
    global_ttt_batch_seqs: int = 32  # rows per forward within a chunk (memory, not maths)
    global_ttt_chunk_tokens: int = 32768  # tokens per global SGD step
    global_ttt_grad_clip: float = 1.0  # global-norm clip of each global step; 0 = off
    global_ttt_warmup_chunks: int = 0  # linear LR warm-up steps before the cosine decay
    global_ttt_warmup_start_lr: float = 0.0  # LR at the first warm-up step
    global_ttt_respect_doc_boundaries: bool = True  # default only: global SGD always masks attention at each BOS

    # --- runtime, owned by record.dist (never read from the environment here) ---
    rank: int = field(default=0, metadata={"runtime": True})  # this process, 0..world_size-1
    world_size: int = field(default=1, metadata={"runtime": True})  # processes (GPUs) in the job
    local_rank: int = field(default=0, metadata={"runtime": True})  # this process's GPU on its host

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "compressor": ("pergroup", "brotli", "lzma"),
        "ttt_optimizer": ("adam", "sgd"),
    }

    def __post_init__(self) -> None:
        if not self.tokenizer_path:
            object.__setattr__(self, "tokenizer_path", f"{self.data_dir}/tokenizers/{TOKENIZER_NAME}")
        _check_config(self)

    # --- derived keys of the reference dump ---
    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    @property
    def grad_accum_steps(self) -> int:
        return MICRO_BATCHES_PER_STEP // self.world_size

    @property
    def datasets_dir(self) -> str:
        return f"{self.data_dir}/datasets/{DATASET_NAME}"

    @property
    def train_files(self) -> str:
        return f"{self.datasets_dir}/fineweb_train_*.bin"

    @property
    def val_files(self) -> str:
        return f"{self.datasets_dir}/fineweb_val_*.bin"

    @property
    def val_bytes_files(self) -> str:
        return f"{self.datasets_dir}/fineweb_val_bytes_*.bin"

    @property
    def logfile(self) -> str:
        return f"logs/{self.run_id}.txt"

    # --- model shape helpers every module shares ---
    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_mult * self.model_dim)

    # --- construction ---
    @classmethod
    def env_names(cls) -> list[str]:
        """The environment variables the config reads: every non-runtime field, upper-cased."""
        return sorted(f.name.upper() for f in dataclasses.fields(cls) if not f.metadata.get("runtime"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Defaults overridden by the environment; other variables are ignored (the shell has many)."""
        env = os.environ if env is None else env
        return cls(**_config_parse_values({name: env[name] for name in cls.env_names() if name in env}))

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any], base: Config | None = None) -> Config:
        """`base` (or the defaults) with explicit `NAME=VALUE` settings; unknown names are refused."""
        known = set(cls.env_names())
        for name in overrides:
            if name.upper() not in known:
                close = difflib.get_close_matches(name.upper(), sorted(known), n=1)
                hint = f"did you mean {close[0]}?" if close else "run `golfkit params` to list the settings"
                raise RecordError(name, "unknown setting", hint)
        values = _config_parse_values({name.upper(): value for name, value in overrides.items()})
        base = base or cls()
        derived_tokenizer = base.tokenizer_path == f"{base.data_dir}/tokenizers/{TOKENIZER_NAME}"
        if "data_dir" in values and "tokenizer_path" not in values and derived_tokenizer:
            values["tokenizer_path"] = ""  # a path derived from the old data_dir follows the new one
        return dataclasses.replace(base, **values)

    def with_runtime(self, rank: int, world_size: int, local_rank: int) -> Config:
        """This config with record.dist's process placement, and a run id if none was given."""
        run_id = self.run_id or str(uuid.uuid4())
        return dataclasses.replace(self, rank=rank, world_size=world_size, local_rank=local_rank, run_id=run_id)

    def as_dict(self) -> dict[str, Any]:
        """Every key of the reference dump (fields and derived values), sorted by name."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in DERIVED_DUMP_KEYS:
            values[name] = getattr(self, name)
        return dict(sorted(values.items()))

    def hyperparameter_lines(self) -> list[str]:
        """The `Hyperparameters:` block exactly as the reference logs it."""
        return fmt_hyperparameters(self.as_dict()).split("\n")


DERIVED_DUMP_KEYS = (
    "datasets_dir",
    "distributed",
    "grad_accum_steps",
    "is_main_process",
    "logfile",
    "train_files",
    "val_bytes_files",
    "val_files",
)

_CONFIG_TRUE_WORDS = ("1", "true", "yes", "on")
_CONFIG_FALSE_WORDS = ("0", "false", "no", "off")


def _config_parse_values(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Convert `NAME -> text` into `field -> typed value`, naming the variable of any bad value."""
    types = {f.name: f.type for f in dataclasses.fields(Config)}
    parsed: dict[str, Any] = {}
    for env_name, value in raw.items():
        name = env_name.lower()
        parsed[name] = _config_parse_one(env_name, types[name], value)
    return parsed


def _config_parse_one(env_name: str, type_name: str, value: Any) -> Any:
    if not isinstance(value, str):
        value = str(value)
    text = value.strip()
    try:
        if type_name == "bool":
            if text.lower() in _CONFIG_TRUE_WORDS:
                return True
            if text.lower() in _CONFIG_FALSE_WORDS:
                return False
            raise ValueError
        if type_name == "int":
            return int(float(text)) if float(text).is_integer() else int(text)
        if type_name == "float":
            return float(text)
    except ValueError:
        kind = {"bool": "1/0 or true/false", "int": "an integer", "float": "a number"}[type_name]
        raise RecordError(env_name, f"malformed value {value!r}", f"expected {kind}") from None
    return value


def _check_config(cfg: Config) -> None:
    """Refuse settings the network or the schedule cannot run with, naming the variable."""

    def need(ok: bool, name: str, what: str, fix: str) -> None:
        if not ok:
            raise RecordError(name.upper(), f"{what} (got {getattr(cfg, name)!r})", fix)

    for name, choices in Config.CHOICES.items():
        need(getattr(cfg, name) in choices, name, "unsupported value", f"choose one of {', '.join(choices)}")
    for name in ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "train_seq_len"):
        need(getattr(cfg, name) > 0, name, "must be positive", "use a positive integer")
    need(cfg.model_dim % cfg.num_heads == 0, "num_heads", "must divide MODEL_DIM", "pick a divisor")
    need(cfg.num_heads % cfg.num_kv_heads == 0, "num_kv_heads", "must divide NUM_HEADS", "pick a divisor")
    need(cfg.head_dim % 2 == 0, "num_heads", "head dim must be even for RoPE", "change NUM_HEADS")
    need(
        0 <= cfg.rope_dims <= cfg.head_dim and cfg.rope_dims % 2 == 0,
        "rope_dims",
        "must be even and at most the head dim",
        f"use an even number <= {cfg.head_dim}",
    )
    need(cfg.mlp_hidden > 0, "mlp_mult", "gives an empty MLP", "use a positive multiple")
    need(
        0 <= cfg.loop_start <= cfg.loop_end < cfg.num_layers,
        "loop_end",
        "needs 0 <= LOOP_START <= LOOP_END < NUM_LAYERS",
        "fix the loop segment",
    )
    need(cfg.num_loops >= 0, "num_loops", "must be >= 0", "use 0 to never loop")
    need(0.0 <= cfg.enable_looping_at <= 1.0, "enable_looping_at", "must be in [0, 1]", "use a fraction")
    need(0.0 <= cfg.warmdown_frac <= 1.0, "warmdown_frac", "must be in [0, 1]", "use a fraction")
    need(0 < cfg.gate_window <= cfg.model_dim, "gate_window", "must be in 1..MODEL_DIM", "use a smaller window")
    need(cfg.logit_softcap > 0, "logit_softcap", "must be positive", "use e.g. 30")
    for name in DEFAULT_ONLY:
        default = Config.__dataclass_fields__[name].default
        need(getattr(cfg, name) == default, name, "only the default is implemented", f"unset it or set it to {default}")
    need(0.0 < cfg.val_doc_fraction <= 1.0, "val_doc_fraction", "must be in (0, 1]", "use a fraction")
    need(
        cfg.world_size >= 1 and MICRO_BATCHES_PER_STEP % cfg.world_size == 0,
        "world_size",
        f"must divide {MICRO_BATCHES_PER_STEP}",
        "run on 1, 2, 4 or 8 GPUs",
    )
