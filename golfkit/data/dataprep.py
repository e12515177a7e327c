"""Build CaseOps token shards and the validation byte sidecar from documents, streaming.

This is the published pipeline (prepare_caseops_data.py) in our own form: each document is
CaseOps-encoded, tokenized, and written as [BOS] + ids; the first `val_docs` documents go to the
validation shards with a sidecar of original UTF-8 bytes per token (BOS 0), the rest to training
shards. Shards fill to `shard_tokens` and a document may run on into the next shard, as in the
published data. Memory stays bounded by one shard plus one batch of documents, whatever the input size.

Layout written under OUT (what `DATA_DIR=OUT` expects):
    OUT/datasets/<DATASET_NAME>/fineweb_{val,val_bytes,train}_NNNNNN.bin
    OUT/tokenizers/<the tokenizer's file name>

`prepare_folder` (what `golfkit data prepare` runs) never writes into OUT: it builds a hidden sibling,
`.OUT.partial-XXXX`, removes it on any failure, and renames it into place once complete. A non-empty OUT
is refused unless `force`, and even then is replaced only after the new folder is whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from golfkit.data.tokenizer import DocumentTokenizer
from golfkit.errors import GolfkitError
from record.config import DATASET_NAME
from record.data import SHARD_HEADER_BYTES, SHARD_HEADER_INTS, SHARD_MAGIC, SHARD_VERSION
from record.errors import RecordError
from record.tokenizer import BOS_ID, load_tokenizer

DEFAULT_SHARD_TOKENS = 10_000_000  # the published shards' size
DEFAULT_VAL_DOCS = 50_000  # the published split (docs_val in its manifest)
DOCS_PER_BATCH = 256  # documents tokenized together (SentencePiece batches them in C++)

# Shard files (the format is record/data.py's, which reads them).
SHARD_MAX_TOKENS = (2**31 - 1 - SHARD_HEADER_BYTES) // 2  # the count must fit the int32 header field
TRAIN_SHARD_NAME = "fineweb_train_{:06d}.bin"
VAL_SHARD_NAME = "fineweb_val_{:06d}.bin"
VAL_BYTES_SHARD_NAME = "fineweb_val_bytes_{:06d}.bin"


def write_shard(path: str | os.PathLike[str], tokens: Any) -> None:
    """Write `tokens` (ints in [0, 65535]) as one shard. The file appears complete or not at all (it
    is written beside its final name and renamed), so an interrupted run never leaves a short shard."""
    values = np.asarray(tokens)
    if values.ndim != 1:
        raise RecordError(path, f"tokens must be one-dimensional, got shape {values.shape}", "flatten them")
    if values.size > SHARD_MAX_TOKENS:
        raise RecordError(path, f"{values.size} tokens do not fit one shard", "write several shards")
    if values.size and (values.min() < 0 or values.max() > 0xFFFF):
        raise RecordError(path, "token values must lie in [0, 65535] (uint16)", "check the tokenizer")
    header = np.zeros(SHARD_HEADER_INTS, dtype="<i4")
    header[:3] = (SHARD_MAGIC, SHARD_VERSION, values.size)
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as handle:
        handle.write(header.tobytes())
        handle.write(values.astype("<u2", copy=False).tobytes())
    os.replace(partial, target)


class ShardWriter:
    """Appends token runs and writes a shard (plus, for validation, its sidecar) each time one fills."""

    def __init__(self, folder: Path, name: str, shard_tokens: int, sidecar_name: str = "") -> None:
        self.folder, self.name, self.sidecar_name = folder, name, sidecar_name
        self.shard_tokens = shard_tokens
        self.tokens: list[np.ndarray] = []
        self.credits: list[np.ndarray] = []
        self.buffered = 0
        self.shards_written = 0
        self.tokens_written = 0

    def add(self, tokens: np.ndarray, credits: np.ndarray | None = None) -> None:
        self.tokens.append(tokens)
        if self.sidecar_name:
            self.credits.append(credits if credits is not None else np.zeros(tokens.size, np.int64))
        self.buffered += tokens.size
        while self.buffered >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def close(self) -> None:
        if self.buffered:
            self._flush(self.buffered)

    def _flush(self, count: int) -> None:
        tokens = np.concatenate(self.tokens)
        self._write(self.name, tokens[:count])
        self.tokens = [tokens[count:]]
        if self.sidecar_name:
            credits = np.concatenate(self.credits)
            if credits.max(initial=0) > 0xFFFF:
                raise GolfkitError(self.folder, "a token stands for more than 65535 bytes", "check the input")
            self._write(self.sidecar_name, credits[:count])
            self.credits = [credits[count:]]
        self.buffered -= count
        self.shards_written += 1
        self.tokens_written += count

    def _write(self, pattern: str, values: np.ndarray) -> None:
        write_shard(self.folder / pattern.format(self.shards_written), values)


@dataclass
class PrepareSummary:
    """What `prepare_shards` wrote."""

    shard_dir: Path
    tokenizer_path: Path
    val_docs: int = 0
    train_docs: int = 0
    val_tokens: int = 0
    train_tokens: int = 0
    val_shards: int = 0
    train_shards: int = 0
    files: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"validation: {self.val_docs} docs, {self.val_tokens} tokens, {self.val_shards} shard(s) + sidecar",
            f"training:   {self.train_docs} docs, {self.train_tokens} tokens, {self.train_shards} shard(s)",
            f"shards in   {self.shard_dir}",
            f"tokenizer   {self.tokenizer_path}",
        ]


def read_documents(path: Path) -> Iterator[tuple[str, int]]:
    """(text, bytes of the line) for each line of a jsonl: an object with "text", or a JSON string."""
    if not path.is_file():
        raise GolfkitError(path, "no such documents file", "give a jsonl with one document per line")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise GolfkitError(f"{path}:{number}", f"not JSON ({exc})", "one JSON document per line") from None
            text = item.get("text") if isinstance(item, dict) else item
            if not isinstance(text, str):
                raise GolfkitError(f"{path}:{number}", 'no "text" string', 'write {"text": "..."} per line')
            yield text, len(raw)


def _batches(items: Iterable[tuple[str, int]], size: int) -> Iterator[list[tuple[str, int]]]:
    batch: list[tuple[str, int]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def prepare_shards(
    docs_path: Path,
    tokenizer_path: Path,
    out_dir: Path,
    val_docs: int = DEFAULT_VAL_DOCS,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    max_docs: int = 0,
    progress: TextIO | None = None,
) -> PrepareSummary:
    """Write validation + training shards for the documents of `docs_path` (see the module docstring).

    `progress`: a stream for a tqdm bar (None = no bar). `max_docs` > 0 stops after that many documents.
    """
    from tqdm import tqdm

    if shard_tokens <= 0 or val_docs < 0 or max_docs < 0:
        raise GolfkitError("data prepare", "shard size must be positive, counts not negative", "fix the options")
    try:
        import sentencepiece

        vocab_size = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer_path)).vocab_size()
    except (OSError, RuntimeError):
        vocab_size = 0  # load_tokenizer names the problem below
    processor = load_tokenizer(tokenizer_path, vocab_size)
    if vocab_size > 0x10000:
        raise GolfkitError(tokenizer_path, f"{vocab_size} pieces do not fit uint16 shards", "use a smaller vocab")
    shard_dir = out_dir / "datasets" / DATASET_NAME
    shard_dir.mkdir(parents=True, exist_ok=True)
    for stale in shard_dir.glob("fineweb_*.bin"):
        stale.unlink()  # a previous run's extra shards would silently join this data
    tokenizer_copy = out_dir / "tokenizers" / Path(tokenizer_path).name
    tokenizer_copy.parent.mkdir(parents=True, exist_ok=True)
    if Path(tokenizer_path).resolve() != tokenizer_copy.resolve():
        shutil.copyfile(tokenizer_path, tokenizer_copy)

    tokenizer = DocumentTokenizer(processor)
    val = ShardWriter(shard_dir, VAL_SHARD_NAME, shard_tokens, sidecar_name=VAL_BYTES_SHARD_NAME)
    train = ShardWriter(shard_dir, TRAIN_SHARD_NAME, shard_tokens)
    summary = PrepareSummary(shard_dir=shard_dir, tokenizer_path=tokenizer_copy)
    bos = np.array([BOS_ID], dtype=np.int64)
    no_credit = np.zeros(1, dtype=np.int64)
    seen = 0
    bar = tqdm(
        total=docs_path.stat().st_size if docs_path.is_file() else None,
        unit="B",
        unit_scale=True,
        desc="tokenizing",
        file=progress,
        disable=progress is None,
    )
    with bar:
        for batch in _batches(read_documents(docs_path), DOCS_PER_BATCH):
            if max_docs:
                batch = batch[: max_docs - seen]
            for (_, line_bytes), (ids, credits) in zip(
                batch, tokenizer.tokenize([text for text, _ in batch]), strict=True
            ):
                if seen < val_docs:
                    val.add(np.concatenate((bos, ids)), np.concatenate((no_credit, credits)))
                    summary.val_docs += 1
                else:
                    train.add(np.concatenate((bos, ids)))
                    summary.train_docs += 1
                seen += 1
                bar.update(line_bytes)
            if max_docs and seen >= max_docs:
                break
    val.close()
    train.close()
    summary.val_tokens, summary.val_shards = val.tokens_written, val.shards_written
    summary.train_tokens, summary.train_shards = train.tokens_written, train.shards_written
    summary.files = sorted(shard_dir.glob("fineweb_*.bin"))
    return summary


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _check_out(docs_path: Path, tokenizer_path: Path, out_dir: Path, force: bool) -> list[str]:
    """The entries of an existing OUT, after refusing what the run may not do to it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise GolfkitError(out_dir, "is a file, not a folder", "give --out a folder path")
    entries = _entries(out_dir)
    if entries and not force:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise GolfkitError(
            out_dir,
            f"is not empty ({shown}); nothing was written",
            "give an empty or new folder, or --force to replace it",
        )
    for option, path in (("--docs", docs_path), ("--tokenizer", tokenizer_path)):
        if entries and _inside(path, out_dir):
            raise GolfkitError(
                option, f"{path} lies inside --out {out_dir}, which --force replaces", "move it out first"
            )
    return entries


def _missing_parents(folder: Path) -> list[Path]:
    """The ancestors of `folder` that do not exist yet, deepest first."""
    missing = []
    for parent in folder.parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


def _new_sibling(folder: Path, tag: str) -> Path:
    """A hidden name beside `folder` that nothing uses yet."""
    while True:
        sibling = folder.with_name(f".{folder.name}.{tag}-{secrets.token_hex(4)}")
        if not sibling.exists():
            return sibling


def prepare_folder(
    docs_path: Path,
    tokenizer_path: Path,
    out_dir: Path,
    force: bool = False,
    val_docs: int = DEFAULT_VAL_DOCS,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    max_docs: int = 0,
    progress: TextIO | None = None,
) -> PrepareSummary:
    """`prepare_shards` into a new OUT, all or nothing (see the module docstring)."""
    entries = _check_out(docs_path, tokenizer_path, out_dir, force)
    target = Path(os.path.abspath(out_dir))  # `--out .` or `a/..` still has a parent and a name
    created = _missing_parents(target)
    staging = _new_sibling(target, "partial")
    old = _new_sibling(target, "old") if entries else None
    try:
        staging.mkdir(parents=True)
        summary = prepare_shards(docs_path, tokenizer_path, staging, val_docs, shard_tokens, max_docs, progress)
        if old is not None:
            # The old folder goes only once the new one is whole; moved aside first, so that a failed
            # rename can put it back.
            os.replace(target, old)
            try:
                os.replace(staging, target)
            except OSError:
                os.replace(old, target)
                raise
        else:
            os.replace(staging, target)  # over an empty folder too: rename(2) replaces an empty directory
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        for parent in created:
            with contextlib.suppress(OSError):
                parent.rmdir()
        if isinstance(exc, OSError):
            raise GolfkitError(out_dir, f"cannot build it: {exc}", "check disk space and permissions") from None
        raise
    if old is not None and old.is_symlink():
        old.unlink()  # --out was a link: the folder it pointed to is not ours to delete
    elif old is not None:
        shutil.rmtree(old)
    summary.shard_dir = out_dir / summary.shard_dir.relative_to(staging)
    summary.tokenizer_path = out_dir / summary.tokenizer_path.relative_to(staging)
    summary.files = [out_dir / f.relative_to(staging) for f in summary.files]
    return summary
