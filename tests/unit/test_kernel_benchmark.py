"""benchmarks/kernels.py off the GPU: its one-line refusal, and the micro-batches it times FA4 on."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from golfkit.data.dataprep import TRAIN_SHARD_NAME, write_shard
from record.attention import DOC_BOS_ID

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("golfkit_bench_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _doc_lengths(tokens: torch.Tensor) -> list[int]:
    starts = (tokens.reshape(-1) == DOC_BOS_ID).nonzero().flatten().tolist()
    return [b - a for a, b in itertools.pairwise(starts)]


def test_refuses_without_cuda_in_one_line(bench, monkeypatch, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    monkeypatch.setattr(sys, "argv", ["kernels.py"])
    assert bench.main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["benchmarks/kernels.py needs a CUDA device with Triton"]


def test_synthetic_micro_batch_has_the_train_step_benchmark_documents(bench) -> None:
    tokens = bench.micro_batch_tokens(None)
    assert tuple(tokens.shape) == (48, 2048)
    assert int(tokens.reshape(-1)[0]) == DOC_BOS_ID
    lengths = _doc_lengths(tokens)  # every document but the last, which the batch cuts
    assert len(lengths) > 100 and min(lengths) >= 560 and max(lengths) <= 720


def test_real_micro_batch_is_the_first_shard_s_first_tokens(bench, tmp_path) -> None:
    folder = tmp_path / "datasets" / "fineweb10B_sp8192"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, 8192, size=48 * 2048 + 500)
    tokens[::1700] = DOC_BOS_ID
    write_shard(folder / TRAIN_SHARD_NAME.format(0), tokens)
    got = bench.micro_batch_tokens(tmp_path)  # found under datasets/<name>/, as `data prepare` lays it out
    assert torch.equal(got.reshape(-1), torch.from_numpy(tokens[: 48 * 2048].astype(np.int64)))
    assert _doc_lengths(got) == [1700] * (48 * 2048 // 1700)


def test_a_folder_without_shards_is_refused_in_one_line(bench, tmp_path) -> None:
    with pytest.raises(SystemExit, match="no fineweb_train_"):
        bench.micro_batch_tokens(tmp_path)
