"""Config: PR #1934 defaults, the reference dump's keys and format, env parsing and its errors."""

from __future__ import annotations

import re

import pytest

from golfkit.runs.presets import tiny_config
from record.config import DEFAULT_ONLY, Config
from record.errors import RecordError

REFERENCE_LOG = "records/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611/train_seed42.log"


def _reference_dump(shared_data) -> dict[str, str]:
    lines = (shared_data / REFERENCE_LOG).read_text().splitlines()
    start = lines.index("Hyperparameters:")
    dump = {}
    for line in lines[start + 1 :]:
        match = re.fullmatch(r"  (\w+): ?(.*)", line)
        if not match:
            break
        dump[match.group(1)] = match.group(2)
    return dump


def test_dump_has_exactly_the_reference_keys_plus_lora_alpha(shared_data):
    reference = _reference_dump(shared_data)
    ours = Config().as_dict()
    assert set(ours) - set(reference) == {"ttt_lora_alpha"}
    assert set(reference) - set(ours) == set()


def test_reference_settings_reproduce_the_reference_dump(shared_data):
    """Feed the 1855 log's own values back in: every line of our dump must equal its line."""
    reference = _reference_dump(shared_data)
    runtime = {"rank", "world_size", "local_rank", "distributed", "is_main_process", "grad_accum_steps"}
    derived = {"datasets_dir", "train_files", "val_files", "val_bytes_files", "logfile"}
    settable = {k: v for k, v in reference.items() if k not in runtime | derived}
    cfg = Config.from_overrides(settable).with_runtime(rank=0, world_size=8, local_rank=0)
    ours = dict(
        line[2:].split(": ", 1) if ": " in line else (line[2:-1], "") for line in cfg.hyperparameter_lines()[1:]
    )
    for key, value in reference.items():
        assert ours[key] == value, key


def test_pr1934_defaults():
    cfg = Config()
    assert (cfg.num_layers, cfg.model_dim, cfg.num_heads, cfg.num_kv_heads) == (11, 512, 8, 4)
    assert (cfg.phased_ttt_prefix_docs, cfg.ttt_lora_rank, cfg.ttt_beta2, cfg.ttt_weight_decay) == (
        2000,
        96,
        0.999,
        1.0,
    )
    assert (cfg.beta2, cfg.matrix_clip_sigmas, cfg.embed_wd, cfg.warmdown_frac) == (0.95, 12.85, 0.06, 0.75)
    assert (cfg.attn_clip_sigmas, cfg.mlp_clip_sigmas, cfg.embed_clip_sigmas) == (12.0, 12.0, 12.0)
    assert cfg.sparse_attn_gate_scale == 1.0 and cfg.ttt_lora_alpha == 144.0 and cfg.embed_bits == 7
    assert cfg.tokenizer_path == "./data/tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"
    assert cfg.datasets_dir == "./data/datasets/fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"
    assert (cfg.head_dim, cfg.kv_dim, cfg.mlp_hidden) == (64, 256, 2048)


def test_dump_lines_are_sorted_and_formatted_like_the_reference():
    lines = Config(run_id="abc").with_runtime(1, 2, 1).hyperparameter_lines()
    assert lines[0] == "Hyperparameters:"
    keys = [line.split(":")[0].strip() for line in lines[1:]]
    assert keys == sorted(keys)
    assert "  adam_eps: 1e-08" in lines and "  artifact_dir: " in lines
    assert "  logfile: logs/abc.txt" in lines and "  grad_accum_steps: 4" in lines
    assert "  distributed: True" in lines and "  is_main_process: False" in lines


def test_from_env_reads_upper_case_names_and_ignores_strangers():
    env = {
        "MATRIX_LR": "0.03",
        "NUM_LOOPS": "3",
        "SMEAR_GATE_ENABLED": "0",
        "DATA_DIR": "/d",
        "PATH": "/x",
        "NUM_LAYERZ": "4",
    }
    cfg = Config.from_env(env)
    assert (cfg.matrix_lr, cfg.num_loops, cfg.smear_gate_enabled) == (0.03, 3, False)
    assert cfg.tokenizer_path.startswith("/d/tokenizers/")


def test_runtime_fields_are_not_read_from_env():
    assert "RANK" not in Config.env_names() and "WORLD_SIZE" not in Config.env_names()
    assert Config.from_env({"RANK": "3", "WORLD_SIZE": "8"}).rank == 0


def test_malformed_value_names_the_variable():
    with pytest.raises(RecordError, match=r"^MATRIX_LR: malformed value 'fast'"):
        Config.from_env({"MATRIX_LR": "fast"})
    with pytest.raises(RecordError, match="NUM_LAYERS"):
        Config.from_env({"NUM_LAYERS": "1.5"})
    with pytest.raises(RecordError, match="CASEOPS_ENABLED"):
        Config.from_env({"CASEOPS_ENABLED": "maybe"})


def test_overrides_refuse_unknown_names_with_a_suggestion():
    with pytest.raises(RecordError, match=r"NUM_LAYER: unknown setting \(did you mean NUM_LAYERS\?\)"):
        Config.from_overrides({"NUM_LAYER": "4"})
    assert Config.from_overrides({"num_layers": "4", "LOOP_START": "1", "LOOP_END": "2"}).num_layers == 4


def test_overriding_data_dir_moves_the_derived_tokenizer_path():
    cfg = Config.from_overrides({"DATA_DIR": "/other"})
    assert cfg.tokenizer_path == "/other/tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"
    kept = Config.from_overrides({"DATA_DIR": "/other"}, base=Config(tokenizer_path="/t.model"))
    assert kept.tokenizer_path == "/t.model"


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"NUM_KV_HEADS": "3"}, "NUM_KV_HEADS"),
        ({"ROPE_DIMS": "15"}, "ROPE_DIMS"),
        ({"LOOP_END": "11"}, "LOOP_END"),
        ({"COMPRESSOR": "zip"}, "COMPRESSOR"),
        ({"ENABLE_LOOPING_AT": "1.5"}, "ENABLE_LOOPING_AT"),
    ],
)
def test_inconsistent_settings_name_the_variable(settings, variable):
    with pytest.raises(RecordError, match=f"^{variable}:"):
        Config.from_env(settings)


REFUSED_SETTINGS = {
    "TIE_EMBEDDINGS": "0",
    "EMBED_LR": "0.5",
    "PARALLEL_FINAL_LANE": "sum",
    "GATED_ATTN_INIT_STD": "0.02",
    "ATTN_OUT_GATE_SRC": "input",
    "FUSED_CE_ENABLED": "0",
    "EVAL_STRIDE": "32",
    "GLOBAL_TTT_RESPECT_DOC_BOUNDARIES": "0",
}


def test_the_default_only_settings_are_the_pinned_ones():
    assert sorted(name.upper() for name in DEFAULT_ONLY) == sorted(REFUSED_SETTINGS)


@pytest.mark.parametrize(("variable", "value"), sorted(REFUSED_SETTINGS.items()))
def test_settings_that_would_change_nothing_are_refused_off_their_default(variable, value):
    """Set to anything but the default, a setting this program does not implement fails in one line
    naming it; at the default (the reference dump's value) it is accepted."""
    with pytest.raises(RecordError, match=f"^{variable}: only the default is implemented") as info:
        Config.from_env({variable: value})
    assert "\n" not in str(info.value)
    default = getattr(Config(), variable.lower())
    assert getattr(Config.from_env({variable: str(default)}), variable.lower()) == default


def test_with_runtime_fills_a_run_id_and_world():
    cfg = Config().with_runtime(rank=2, world_size=4, local_rank=2)
    assert cfg.run_id and (cfg.rank, cfg.world_size, cfg.grad_accum_steps, cfg.distributed) == (2, 4, 2, True)
    with pytest.raises(RecordError, match="WORLD_SIZE"):
        Config().with_runtime(rank=0, world_size=3, local_rank=0)


def test_tiny_config_is_small_and_consistent():
    cfg = tiny_config(num_layers=5)
    assert cfg.num_layers == 5 and cfg.model_dim == 64 and cfg.head_dim == 16
