"""Token shards on disk, the training and calibration loaders, the validation set, and THE BPB formula.

Shard format (the challenge's): a 1,024-byte header of 256 little-endian int32 (magic 20240520,
version 1, token count, the rest zero), then the tokens as little-endian uint16. Documents are laid end
to end, each starting with BOS (id 1); a document may continue into the next shard. The validation byte
sidecar `fineweb_val_bytes_NNNNNN.bin` has the same layout with one original-UTF-8-byte count per
token of `fineweb_val_NNNNNN.bin` (BOS 0), so BPB is measured on the original text.

Shards are memory-mapped, never read whole, and every header is checked against the file's size: a
truncated download or a foreign file is refused with its path instead of training on garbage. Shards
are written by golfkit (golfkit/data/dataprep.py), never by the record.
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from record.errors import RecordError
from record.tokenizer import BOS_ID

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_INTS = 256
SHARD_HEADER_BYTES = SHARD_HEADER_INTS * 4


# ---- shard files -------------------------------------------------------------------------------------


def shard_token_count(path: str | os.PathLike[str]) -> int:
    """The token count of a shard after checking its header and that the file size matches it."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            header = np.frombuffer(handle.read(SHARD_HEADER_BYTES), dtype="<i4")
    except OSError as exc:
        raise RecordError(path, f"cannot read shard ({exc.strerror})", "check the path") from None
    if header.size < SHARD_HEADER_INTS:
        raise RecordError(path, f"{size} bytes is shorter than the 1024-byte shard header", "re-download it")
    if int(header[0]) != SHARD_MAGIC or int(header[1]) != SHARD_VERSION:
        raise RecordError(
            path,
            f"not a token shard (magic {int(header[0])}, version {int(header[1])}; "
            f"expected {SHARD_MAGIC}, {SHARD_VERSION})",
            "re-download it or rebuild it with `golfkit data prepare`",
        )
    count = int(header[2])
    expected = SHARD_HEADER_BYTES + 2 * count
    if count < 0 or size != expected:
        raise RecordError(
            path,
            f"header says {count} tokens ({expected} bytes) but the file has {size} bytes",
            "the file is truncated or corrupt: re-download it",
        )
    return count


def read_shard(path: str | os.PathLike[str]) -> np.ndarray:
    """A read-only uint16 memory map of a shard's tokens (header validated first)."""
    count = shard_token_count(path)
    if count == 0:
        return np.zeros(0, dtype=np.uint16)
    return np.memmap(path, dtype="<u2", mode="r", offset=SHARD_HEADER_BYTES, shape=(count,))


def list_shards(pattern: str) -> list[Path]:
    """Files matching `pattern`, sorted. A token pattern (`fineweb_val_*.bin`) also matches the byte
    sidecar's names, so `_bytes_` files are dropped unless the pattern itself asks for them."""
    names = sorted(glob.glob(pattern))
    if "_bytes_" not in Path(pattern).name:
        names = [name for name in names if "_bytes_" not in Path(name).name]
    return [Path(name) for name in names]


def _data_require_shards(pattern: str, what: str) -> list[Path]:
    files = list_shards(pattern)
    if not files:
        raise RecordError(pattern, f"no {what} shards match", "run `golfkit data download` or set DATA_DIR")
    return files


def _data_pattern(source: Any, attribute: str) -> str:
    """A glob pattern from a Config (its `attribute`, e.g. train_files) or a pattern given directly."""
    return str(getattr(source, attribute)) if hasattr(source, attribute) else str(source)


# ---- training batches -----------------------------------------------------------------------------


class TrainBatchLoader:
    """Consecutive packed rows for one rank, read in order through the train shards (then again).

    Like the reference: every rank walks the same shards; each call takes the next
    `world_size * (tokens_per_rank_step + 1)` tokens of the current shard, rank r the r-th slice of
    that span, so ranks never overlap. A shard's leftover tail that cannot hold a whole span is
    skipped, and each shard starts at its first BOS. Documents are packed as they lie; a document
    longer than a row simply continues in the next row, and the model finds document starts from
    BOS tokens. `tokens_per_rank_step` is one micro-batch of one rank, a multiple of `seq_len`.
    """

    def __init__(
        self,
        cfg_or_pattern: Any,
        rank: int,
        world_size: int,
        seq_len: int,
        tokens_per_rank_step: int,
        device: Any = "cpu",
    ) -> None:
        if seq_len <= 0 or tokens_per_rank_step <= 0 or tokens_per_rank_step % seq_len:
            raise RecordError(
                "train loader",
                f"tokens per rank step {tokens_per_rank_step} is not a positive multiple of seq_len {seq_len}",
                "choose TRAIN_BATCH_TOKENS divisible by world_size * grad_accum_steps * TRAIN_SEQ_LEN",
            )
        self.files = _data_require_shards(_data_pattern(cfg_or_pattern, "train_files"), "training")
        self.rank, self.world_size, self.device = rank, world_size, device
        self.seq_len, self.rows = seq_len, tokens_per_rank_step // seq_len
        self.span = tokens_per_rank_step + 1  # one extra token: the last row's final target
        counts = [shard_token_count(f) for f in self.files]
        if max(counts) < self.span * world_size:
            raise RecordError(
                self.files[0].parent,
                f"the largest train shard has {max(counts)} tokens, a step needs {self.span * world_size}",
                "use smaller batches or larger shards",
            )
        self.file_index = -1
        self.tokens = np.zeros(0, dtype=np.uint16)
        self.cursor = 0

    def _open_next_shard(self) -> None:
        self.file_index = (self.file_index + 1) % len(self.files)
        self.tokens = read_shard(self.files[self.file_index])
        bos = np.flatnonzero(self.tokens == BOS_ID)
        self.cursor = int(bos[0]) if bos.size else 0

    def next_batch(self) -> tuple[Any, Any]:
        """(inputs, targets): int64 tensors [rows, seq_len] on the loader's device; targets = inputs
        shifted by one token in the stream."""
        import torch

        step_span = self.span * self.world_size
        while self.cursor + step_span > self.tokens.size:
            self._open_next_shard()
        start = self.cursor + self.rank * self.span
        window = torch.from_numpy(self.tokens[start : start + self.span].astype(np.int64))
        self.cursor += step_span
        inputs = window[:-1].view(self.rows, self.seq_len)
        targets = window[1:].view(self.rows, self.seq_len)
        return inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)


def calibration_batches(
    cfg_or_pattern: Any,
    rank: int,
    world_size: int,
    seq_len: int,
    tokens_per_batch: int,
    num_batches: int,
    device: Any = "cpu",
):
    """`num_batches` (inputs, targets) batches of random train windows for GPTQ's Hessians.

    As in the reference (docs/quant.md §1): rank r samples only shards `files[r::world_size]`, with
    numpy's PCG64 seeded by the RANK (not SEED), so calibration is the same whatever the run's seed.
    Each shard gets a random phase < seq_len and its `seq_len + 1`-token windows in random order; each
    row draws a shard with probability proportional to its windows left, and all shards refill when
    every one is used up. Windows cross document boundaries (calibration attends plainly causal).
    """
    import torch

    files = _data_require_shards(_data_pattern(cfg_or_pattern, "train_files"), "training")[rank::world_size]
    if not files:
        raise RecordError("calibration", f"rank {rank} of {world_size} has no train shard", "add shards")
    rng = np.random.Generator(np.random.PCG64(rank))
    counts = [shard_token_count(f) for f in files]
    starts: list[list[int]] = [[] for _ in files]

    def refill(index: int) -> None:
        count = counts[index]
        max_phase = min(seq_len - 1, max(0, count - seq_len - 1))
        phase = int(rng.integers(max_phase + 1)) if max_phase > 0 else 0
        windows = max(0, (count - 1 - phase) // seq_len)
        starts[index] = (phase + rng.permutation(windows) * seq_len).tolist()

    for index in range(len(files)):
        refill(index)
    shards = [read_shard(f) for f in files]
    rows = tokens_per_batch // seq_len
    for _ in range(num_batches):
        left = np.array([len(s) for s in starts], dtype=np.float64)
        window_rows = []
        for _ in range(rows):
            if left.sum() <= 0:
                for index in range(len(files)):
                    refill(index)
                left = np.array([len(s) for s in starts], dtype=np.float64)
                if left.sum() <= 0:
                    raise RecordError(files[0], f"train shards hold no {seq_len + 1}-token window", "")
            index = int(rng.choice(len(files), p=left / left.sum()))
            start = starts[index].pop()
            left[index] -= 1
            window_rows.append(np.asarray(shards[index][start : start + seq_len + 1], np.int64))
        block = torch.from_numpy(np.stack(window_rows))
        yield block[:, :-1].to(device), block[:, 1:].to(device)


# ---- validation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationSet:
    """The whole validation stream, as the evaluators score it.

    tokens: int32 [N], every `fineweb_val_*.bin` concatenated (cut to whole eval rows + 1 when a
    seq_len is given, as the reference does); byte_counts: int32 [N], the sidecar aligned with tokens
    (the target at position p is credited byte_counts[p]); doc_starts: int64, the positions of BOS.
    """

    tokens: Any
    byte_counts: Any
    doc_starts: Any

    @property
    def num_targets(self) -> int:
        return int(self.tokens.numel()) - 1


def load_validation(source: Any, seq_len: int | None = None, with_bytes: bool = True) -> ValidationSet:
    """Load the validation tokens and byte sidecar from a Config (its val file patterns) or from a
    directory holding `fineweb_val_*.bin` and `fineweb_val_bytes_*.bin`.

    `with_bytes=False` is for data without a sidecar (CaseOps off); byte_counts is then empty and the
    caller credits bytes from the tokenizer (record.tokenizer.ByteLuts).
    """
    import torch

    if hasattr(source, "val_files"):
        token_pattern, bytes_pattern = source.val_files, source.val_bytes_files
    else:
        token_pattern = str(Path(source) / "fineweb_val_*.bin")
        bytes_pattern = str(Path(source) / "fineweb_val_bytes_*.bin")
    token_files = _data_require_shards(token_pattern, "validation")
    tokens = np.concatenate([read_shard(f) for f in token_files]).astype(np.int32)
    byte_counts = np.zeros(0, dtype=np.int32)
    if with_bytes:
        byte_files = _data_require_shards(bytes_pattern, "validation byte-sidecar")
        byte_counts = np.concatenate([read_shard(f) for f in byte_files]).astype(np.int32)
        if byte_counts.size < tokens.size:
            raise RecordError(
                byte_files[-1],
                f"the byte sidecar has {byte_counts.size} entries for {tokens.size} validation tokens",
                "re-download the fineweb_val_bytes_*.bin files",
            )
    if seq_len:
        usable = (tokens.size - 1) // seq_len * seq_len + 1
        if usable <= 1:
            raise RecordError(token_pattern, f"fewer than {seq_len + 1} validation tokens", "add data")
        tokens = tokens[:usable]
    if with_bytes:
        byte_counts = byte_counts[: tokens.size]
    doc_starts = np.flatnonzero(tokens == BOS_ID).astype(np.int64)
    return ValidationSet(
        tokens=torch.from_numpy(np.ascontiguousarray(tokens)),
        byte_counts=torch.from_numpy(np.ascontiguousarray(byte_counts)),
        doc_starts=torch.from_numpy(doc_starts),
    )


def bits_per_byte(loss_sum_nats: float, byte_count: float) -> float:
    """THE BPB formula every evaluator uses: summed token losses (nats) / ln 2 / original UTF-8 bytes
    of the same scored targets (= val_loss / ln 2 * tokens / bytes)."""
    byte_count = float(byte_count)
    if not byte_count > 0:
        raise RecordError("bits_per_byte", f"byte count must be positive, got {byte_count}", "score some text")
    return float(loss_sum_nats) / (math.log(2.0) * byte_count)
