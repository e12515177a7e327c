"""Shards, loaders, the validation set and the BPB formula (record/data.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from golfkit.data.dataprep import write_shard
from record.data import (
    SHARD_HEADER_BYTES,
    TrainBatchLoader,
    bits_per_byte,
    calibration_batches,
    list_shards,
    load_validation,
    read_shard,
    shard_token_count,
)
from record.errors import RecordError


def _docs_stream(rng: np.random.Generator, total: int) -> np.ndarray:
    """A token stream of documents, each [BOS, tokens >= 2 ...], cut to `total` tokens."""
    parts, size = [], 0
    while size < total:
        doc = np.concatenate(([1], rng.integers(2, 500, size=int(rng.integers(3, 40)))))
        parts.append(doc)
        size += doc.size
    return np.concatenate(parts)[:total].astype(np.uint16)


def test_write_then_read_round_trips_and_memory_maps(tmp_path: Path) -> None:
    tokens = np.array([1, 5, 65535, 0, 1, 42], dtype=np.int64)
    path = tmp_path / "fineweb_train_000000.bin"
    write_shard(path, tokens)
    assert path.stat().st_size == SHARD_HEADER_BYTES + 2 * tokens.size
    header = np.fromfile(path, dtype="<i4", count=3)
    assert header.tolist() == [20240520, 1, 6]
    back = read_shard(path)
    assert isinstance(back, np.memmap) and back.dtype == np.uint16
    assert back.tolist() == tokens.tolist()
    assert not list(tmp_path.glob("*.partial"))


def test_write_refuses_values_outside_uint16(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match=r"\[0, 65535\]"):
        write_shard(tmp_path / "x.bin", [1, 70000])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[:-2], "header says 4 tokens"),  # truncated
        (lambda raw: raw[:100], "shorter than the 1024-byte shard header"),
        (lambda raw: b"\x00\x01\x02\x03" + raw[4:], "not a token shard"),  # bad magic
        (lambda raw: raw[:4] + (2).to_bytes(4, "little") + raw[8:], "version 2"),
        (lambda raw: raw + b"\x00\x00", "file has 1034 bytes"),  # trailing garbage
    ],
)
def test_corrupt_shards_are_refused_naming_the_file(tmp_path: Path, damage, message: str) -> None:
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, [1, 2, 3, 4])
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(RecordError, match=message) as info:
        read_shard(path)
    assert str(path) in str(info.value)


def test_missing_shard_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="cannot read shard"):
        shard_token_count(tmp_path / "nope.bin")


def test_token_glob_skips_the_byte_sidecar(tmp_path: Path) -> None:
    for name in ("fineweb_val_000000.bin", "fineweb_val_bytes_000000.bin", "fineweb_val_000001.bin"):
        write_shard(tmp_path / name, [1, 2])
    assert [p.name for p in list_shards(str(tmp_path / "fineweb_val_*.bin"))] == [
        "fineweb_val_000000.bin",
        "fineweb_val_000001.bin",
    ]
    assert [p.name for p in list_shards(str(tmp_path / "fineweb_val_bytes_*.bin"))] == ["fineweb_val_bytes_000000.bin"]


def test_train_loader_ranks_take_disjoint_consecutive_slices(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    shards = [_docs_stream(rng, 700), _docs_stream(rng, 500)]
    for i, shard in enumerate(shards):
        write_shard(tmp_path / f"fineweb_train_{i:06d}.bin", shard)
    pattern = str(tmp_path / "fineweb_train_*.bin")
    seq_len, per_rank = 16, 64
    loaders = [TrainBatchLoader(pattern, r, 2, seq_len, per_rank, "cpu") for r in range(2)]
    starts = [int(np.flatnonzero(shard == 1)[0]) for shard in shards]
    span = per_rank + 1
    for step in range(7):
        # 700 tokens hold 5 steps of 2 x 65 tokens; steps 5 and 6 come from the second shard.
        shard, offset = (0, step) if step < 5 else (1, step - 5)
        for rank, loader in enumerate(loaders):
            x, y = loader.next_batch()
            assert x.shape == y.shape == (per_rank // seq_len, seq_len) and x.dtype == torch.int64
            start = starts[shard] + (offset * 2 + rank) * span
            expected = shards[shard][start : start + span].astype(np.int64)
            assert x.flatten().tolist() == expected[:-1].tolist()
            assert y.flatten().tolist() == expected[1:].tolist()


def test_train_loader_wraps_around_to_the_first_shard(tmp_path: Path) -> None:
    write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(1, 34) % 7 + 1)
    loader = TrainBatchLoader(str(tmp_path / "fineweb_train_*.bin"), 0, 1, 8, 16)
    batches = [loader.next_batch()[0] for _ in range(3)]
    assert torch.equal(batches[0], batches[2])  # 33 tokens hold one step of 17 only


def test_train_loader_refuses_shards_too_small_for_a_step(tmp_path: Path) -> None:
    write_shard(tmp_path / "fineweb_train_000000.bin", [1] * 10)
    with pytest.raises(RecordError, match="a step needs"):
        TrainBatchLoader(str(tmp_path / "fineweb_train_*.bin"), 0, 1, 8, 16)
    with pytest.raises(RecordError, match="no training shards"):
        TrainBatchLoader(str(tmp_path / "none_*.bin"), 0, 1, 8, 16)


def test_calibration_batches_are_rank_seeded_windows_of_the_ranks_shards(tmp_path: Path) -> None:
    for i in range(2):
        write_shard(tmp_path / f"fineweb_train_{i:06d}.bin", np.full(300, 10 + i))
    pattern = str(tmp_path / "fineweb_train_*.bin")
    batches = list(calibration_batches(pattern, 1, 2, 16, 64, 3))
    assert len(batches) == 3
    for x, y in batches:
        assert x.shape == y.shape == (4, 16)
        assert set(x.flatten().tolist()) == {11}  # rank 1 of 2 reads only shard 1
    again = list(calibration_batches(pattern, 1, 2, 16, 64, 3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))


def test_calibration_windows_follow_the_rank_seeded_shuffle(tmp_path: Path) -> None:
    write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(200) % 60000)
    x, y = next(calibration_batches(str(tmp_path / "fineweb_train_*.bin"), 0, 1, 10, 30, 1))
    rng = np.random.Generator(np.random.PCG64(0))  # seeded by the rank, as in the reference
    phase = int(rng.integers(10))
    order = phase + rng.permutation((200 - 1 - phase) // 10) * 10
    expected_starts = order.tolist()[::-1][:3]  # popped from the end
    assert x[:, 0].tolist() == expected_starts
    assert torch.equal(y, x + 1)


def test_load_validation_concatenates_cuts_and_aligns_the_sidecar(tmp_path: Path) -> None:
    write_shard(tmp_path / "fineweb_val_000000.bin", [1, 5, 6, 7, 1, 8])
    write_shard(tmp_path / "fineweb_val_000001.bin", [9, 1, 3, 4, 5])
    write_shard(tmp_path / "fineweb_val_bytes_000000.bin", [0, 2, 3, 1, 0, 4])
    write_shard(tmp_path / "fineweb_val_bytes_000001.bin", [1, 0, 2, 2, 3])
    full = load_validation(tmp_path)
    assert full.tokens.tolist() == [1, 5, 6, 7, 1, 8, 9, 1, 3, 4, 5]
    assert full.byte_counts.tolist() == [0, 2, 3, 1, 0, 4, 1, 0, 2, 2, 3]
    assert full.doc_starts.tolist() == [0, 4, 7]
    cut = load_validation(tmp_path, seq_len=4)  # floor((11 - 1) / 4) * 4 + 1 = 9 tokens
    assert cut.tokens.tolist() == full.tokens[:9].tolist()
    assert cut.byte_counts.tolist() == full.byte_counts[:9].tolist() and cut.num_targets == 8


def test_load_validation_refuses_a_short_sidecar(tmp_path: Path) -> None:
    write_shard(tmp_path / "fineweb_val_000000.bin", [1, 5, 6])
    write_shard(tmp_path / "fineweb_val_bytes_000000.bin", [0, 2])
    with pytest.raises(RecordError, match="2 entries for 3 validation tokens"):
        load_validation(tmp_path)


def test_bits_per_byte_is_nats_over_ln2_over_bytes() -> None:
    assert bits_per_byte(math.log(2) * 10, 5) == pytest.approx(2.0)
    # Reference identity: val_bpb = val_loss / ln2 * tokens / bytes.
    loss_sum, tokens, nbytes = 123456.7, 50000, 180000
    assert bits_per_byte(loss_sum, nbytes) == pytest.approx(loss_sum / tokens / math.log(2) * tokens / nbytes)
    with pytest.raises(RecordError, match="byte count must be positive"):
        bits_per_byte(1.0, 0)
