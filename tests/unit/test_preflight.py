"""Preflight: every refusal is one line, found within seconds, before anything runs."""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from golfkit.cli import run as cli_run
from golfkit.data.dataprep import write_shard
from golfkit.runs import presets
from golfkit.runs.preflight import load_run_config, planned_hyperparameters, run_preflight
from golfkit.runs.runplan import RunPlan
from record.config import DATASET_NAME
from record.data import read_shard

PREFLIGHT_SECONDS = 10.0


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data dir, tokenizer): a 512-piece CaseOps tokenizer and shards from a slice of the demo corpus."""
    from golfkit.data.dataprep import prepare_shards
    from golfkit.data.demo_corpus import demo_documents
    from golfkit.data.tokenizer import train_demo_tokenizer

    root = tmp_path_factory.mktemp("preflight_data")
    documents = demo_documents(max_chars=150_000)
    tokenizer = train_demo_tokenizer(documents, 512, root / "tokenizers" / "small512")
    docs = root / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in documents), encoding="utf-8")
    prepare_shards(docs, tokenizer, root, val_docs=5, shard_tokens=20_000)
    return root, tokenizer


def _copy_data(small_data: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    data, tokenizer = small_data
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    return copy, copy / tokenizer.relative_to(data)


def _record(tmp_path: Path, words: list[str], preset: str = "demo") -> tuple[int, str, str, float]:
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code = cli_run(["record", *words, "--preset", preset, "--runs-dir", str(tmp_path / "runs")], out, err)
    return code, out.getvalue(), err.getvalue(), time.monotonic() - started


def _assert_refused(result: tuple[int, str, str, float], check: str, message: str) -> None:
    """Exit 2, nothing run, exactly one failed check, one line naming the problem."""
    code, out, err, seconds = result
    assert code == 2, err
    assert seconds < PREFLIGHT_SECONDS
    failed = [line for line in err.splitlines() if "preflight FAIL" in line]
    assert len(failed) == 1, err
    assert f"preflight FAIL {check}:" in failed[0] and message in failed[0], failed[0]
    assert "preflight failed; nothing was run" in err
    assert "seed 42 (1/" not in out


def _data_words(data: Path, tokenizer: Path) -> list[str]:
    return [f"DATA_DIR={data}", f"TOKENIZER_PATH={tokenizer}"]


def test_good_demo_data_passes_every_check_quickly(small_data: tuple[Path, Path], tmp_path: Path) -> None:
    data, tokenizer = small_data
    plan = RunPlan(seeds=(42, 314), nproc=1, preset="demo", runs_dir=tmp_path)
    started = time.monotonic()
    cfg = load_run_config(
        plan, {**presets.preset_env("demo", tmp_path), "DATA_DIR": str(data), "TOKENIZER_PATH": str(tokenizer)}
    )
    findings = run_preflight(plan, cfg)
    assert time.monotonic() - started < PREFLIGHT_SECONDS
    assert [f.check for f in findings if not f.ok] == []
    by_check = {f.check: f.detail for f in findings}
    assert "byte sidecar" in by_check["data"] and "512 pieces" in by_check["tokenizer"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_record_preset_without_gpu(small_data: tuple[Path, Path], tmp_path: Path) -> None:
    words = ["seeds", "42", *_data_words(*small_data), "VOCAB_SIZE=512"]
    _assert_refused(_record(tmp_path, words, preset="record"), "gpus", "no CUDA GPU visible")


def test_missing_lrzip(small_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    result = _record(tmp_path, ["seeds", "42", *_data_words(*small_data)])
    _assert_refused(result, "compressor", "the lrzip binary is not on PATH")


def test_missing_shards(small_data: tuple[Path, Path], tmp_path: Path) -> None:
    result = _record(tmp_path, ["seeds", "42", f"DATA_DIR={tmp_path / 'nothing'}", f"TOKENIZER_PATH={small_data[1]}"])
    _assert_refused(result, "data", "no training shards match")


def test_missing_byte_sidecar(small_data: tuple[Path, Path], tmp_path: Path) -> None:
    data, tokenizer = _copy_data(small_data, tmp_path)
    for sidecar in (data / "datasets" / DATASET_NAME).glob("fineweb_val_bytes_*.bin"):
        sidecar.unlink()
    _assert_refused(_record(tmp_path, ["seeds", "42", *_data_words(data, tokenizer)]), "data", "no byte sidecar")


def test_tokenizer_with_another_vocab_size(small_data: tuple[Path, Path], tmp_path: Path) -> None:
    result = _record(tmp_path, ["seeds", "42", *_data_words(*small_data), "VOCAB_SIZE=1024"])
    _assert_refused(result, "tokenizer", "the tokenizer has 512 pieces but VOCAB_SIZE is 1024")


def test_shard_ids_beyond_the_vocabulary(small_data: tuple[Path, Path], tmp_path: Path) -> None:
    data, tokenizer = _copy_data(small_data, tmp_path)
    val = data / "datasets" / DATASET_NAME / "fineweb_val_000000.bin"
    tokens = np.array(read_shard(val))
    tokens[7] = 700  # as if made with a larger tokenizer
    write_shard(val, tokens)
    result = _record(tmp_path, ["seeds", "42", *_data_words(data, tokenizer)])
    _assert_refused(result, "tokenizer", "fineweb_val_000000.bin holds token id 700 but VOCAB_SIZE is 512")


@pytest.mark.parametrize(
    ("seeds", "message"), [((), "the seed list is empty"), ((42, 7, 42), "seed 42 is listed twice")]
)
def test_empty_or_duplicated_seed_list(seeds: tuple[int, ...], message: str, tmp_path: Path) -> None:
    plan = RunPlan(seeds=seeds, nproc=1, preset="demo", runs_dir=tmp_path)
    findings = run_preflight(plan, load_run_config(plan, presets.preset_env("demo", tmp_path)))
    refused = [f for f in findings if f.check == "seeds"]
    assert len(refused) == 1 and not refused[0].ok and message in refused[0].detail


def test_demo_refuses_duplicated_seeds_before_building_anything(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code = cli_run(["demo", "--seeds", "42", "42", "--runs-dir", str(tmp_path / "demo")], out, err)
    assert code == 2 and time.monotonic() - started < PREFLIGHT_SECONDS
    assert err.getvalue().strip().splitlines() == [err.getvalue().strip()]
    assert "seed 42 is listed twice" in err.getvalue()
    assert not (tmp_path / "demo").exists()


def test_unknown_override_names_the_closest_setting(tmp_path: Path) -> None:
    code, _, err, seconds = _record(tmp_path, ["seeds", "42", "MATRX_LR=0.05"])
    assert code == 2 and seconds < PREFLIGHT_SECONDS
    assert len(err.strip().splitlines()) == 1
    assert "MATRX_LR: unknown setting (did you mean MATRIX_LR?)" in err


def _complete_log(path: Path, dump_lines: list[str]) -> None:
    """A finished seed log as far as preflight reads one: the dump and the final score lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        *dump_lines,
        "quantized_ttt_phased val_loss:3.10000000 val_bpb:1.50000000 eval_time:1000ms",
        "total_eval_time:1.0s",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_complete_seed_with_another_config_is_refused(small_data: tuple[Path, Path], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    words = _data_words(*small_data)
    plan = RunPlan(seeds=(42,), nproc=1, preset="demo", runs_dir=runs)
    env = {**presets.preset_env("demo", runs), **dict(w.split("=", 1) for w in words)}
    earlier = load_run_config(plan, {**env, "MATRIX_LR": "0.05", "SEED": "42", "RUN_ID": "demo_seed42"})
    _complete_log(runs / "train_seed42.log", earlier.with_runtime(0, 1, 0).hyperparameter_lines())
    result = _record(tmp_path, ["seeds", "42", "314", *words])
    _assert_refused(result, "config", "ran with matrix_lr=0.05 (now 0.026)")


def test_complete_seed_with_the_same_config_passes(small_data: tuple[Path, Path], tmp_path: Path) -> None:
    """Seed, run id and paths may differ between seeds; nothing else does."""
    plan = RunPlan(seeds=(42, 314), nproc=1, preset="demo", runs_dir=tmp_path)
    env = {**presets.preset_env("demo", tmp_path), "DATA_DIR": str(small_data[0]), "TOKENIZER_PATH": str(small_data[1])}
    cfg = load_run_config(plan, env)
    logged = load_run_config(plan, {**env, "SEED": "42", "RUN_ID": "demo_seed42"}).with_runtime(0, 1, 0)
    _complete_log(tmp_path / "train_seed42.log", logged.hyperparameter_lines())
    assert planned_hyperparameters(plan, cfg)["seed"] != "42"
    config = [f for f in run_preflight(plan, cfg) if f.check == "config"]
    assert config[0].ok and "1 complete seed log(s) match" in config[0].detail


def test_complete_seed_of_other_code_is_refused(small_data: tuple[Path, Path], tmp_path: Path) -> None:
    """A complete seed log whose code bytes differ from the program this run ships (a demo rerun after
    the code changed) would sit beside a train_gpt.py it never ran: preflight says so before any work."""
    program = tmp_path / "train_gpt.py"
    program.write_bytes(b"x" * 31_897)
    plan = RunPlan(seeds=(42, 314), nproc=1, preset="demo", runs_dir=tmp_path / "runs", program=program)
    env = {
        **presets.preset_env("demo", plan.runs_dir),
        "DATA_DIR": str(small_data[0]),
        "TOKENIZER_PATH": str(small_data[1]),
    }
    cfg = load_run_config(plan, env)
    logged = load_run_config(plan, {**env, "SEED": "42", "RUN_ID": "demo_seed42"}).with_runtime(0, 1, 0)
    log = plan.runs_dir / "train_seed42.log"
    _complete_log(log, [*logged.hyperparameter_lines(), "Code size (compressed): 43073 bytes"])
    config = [f for f in run_preflight(plan, cfg) if f.check == "config"]
    assert not config[0].ok
    assert "ran other code (43,073 code bytes; this run's program counts 31,897)" in config[0].detail
    _complete_log(log, [*logged.hyperparameter_lines(), "Code size (compressed): 31897 bytes"])
    assert next(f for f in run_preflight(plan, cfg) if f.check == "config").ok
