"""The SP8192 CaseOps SentencePiece model: loading it safely, and byte credit without CaseOps.

The published model (`fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model`) is BPE with 8,192
pieces: pad 0, BOS 1, EOS 2, unk 3, then the four CaseOps operators U+E001..U+E004 as user-defined
(never split) pieces at ids 4-7, 256 byte-fallback pieces, nmt_nfkc normalisation without a dummy
prefix, digits split. A model that does not match the data would train and score silently wrong, so
`load_tokenizer` checks vocabulary size, BOS and the operator pieces and refuses anything else.

Tokenizing documents, training demo models and the CaseOps transform itself are data preparation,
which the record never runs: they live in golfkit (golfkit/data/tokenizer.py, golfkit/data/caseops.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from record.errors import RecordError

BOS_ID = 1
# The CaseOps operators TITLE, ALLCAPS, CAPNEXT and ESC (golfkit/data/caseops.py says what each does).
CASEOPS_OPERATORS = ("\ue001", "\ue002", "\ue003", "\ue004")
SPACE_MARKER = "\u2581"  # SentencePiece's visible space


def _tokenizer_module() -> Any:
    try:
        import sentencepiece
    except ImportError:
        raise RecordError("sentencepiece", "the package is not installed", "pip install sentencepiece") from None
    return sentencepiece


def load_tokenizer(path: str | os.PathLike[str], vocab_size: int, caseops: bool = True) -> Any:
    """A SentencePieceProcessor for `path`, after checking it fits the data: `vocab_size` pieces,
    BOS id 1, and (with CaseOps) each operator U+E001..U+E004 as a single piece of its own."""
    spm = _tokenizer_module()
    if not Path(path).is_file():
        raise RecordError(path, "tokenizer model not found", "run `golfkit data download` or set TOKENIZER_PATH")
    processor = spm.SentencePieceProcessor()
    try:
        processor.Load(str(path))
    except (OSError, RuntimeError) as exc:
        raise RecordError(path, f"not a SentencePiece model ({exc})", "re-download the tokenizer") from None
    if processor.vocab_size() != vocab_size:
        raise RecordError(
            path,
            f"the tokenizer has {processor.vocab_size()} pieces but VOCAB_SIZE is {vocab_size}",
            "use the tokenizer the shards were made with, or set VOCAB_SIZE to match",
        )
    if processor.bos_id() != BOS_ID:
        raise RecordError(path, f"BOS id is {processor.bos_id()}, the shards use {BOS_ID}", "use the CaseOps model")
    if caseops:
        for operator in CASEOPS_OPERATORS:
            piece_id = processor.piece_to_id(operator)
            if piece_id == processor.unk_id() or processor.encode(operator) != [piece_id]:
                raise RecordError(
                    path,
                    f"operator U+{ord(operator):04X} is not a reserved piece: not a CaseOps tokenizer",
                    "use fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model or set CASEOPS_ENABLED=0",
                )
    return processor


# ---- the non-CaseOps fallback: bytes from the pieces themselves ------------------------------------


@dataclass(frozen=True)
class ByteLuts:
    """Per-id tables that credit bytes from the tokenizer when no sidecar exists (CaseOps off).

    base: UTF-8 bytes of the piece without its leading space marker (byte pieces 1; control, unknown
    and unused 0); leading_space: the piece starts with the space marker; boundary: control, unknown
    or unused ids, after which a leading space is not counted (it was never in the text).
    """

    base: np.ndarray
    leading_space: np.ndarray
    boundary: np.ndarray

    def target_bytes(self, previous: Any, targets: Any) -> Any:
        """Bytes credited to predicting `targets` after `previous` (same shape; numpy or torch):
        base[y] + 1 if y has a leading space and x is not a boundary token."""
        if hasattr(targets, "device"):
            import torch

            base = torch.as_tensor(self.base, device=targets.device)
            space = torch.as_tensor(self.leading_space, device=targets.device)
            boundary = torch.as_tensor(self.boundary, device=targets.device)
            return base[targets] + (space[targets] & ~boundary[previous]).to(base.dtype)
        return self.base[targets] + (self.leading_space[targets] & ~self.boundary[previous]).astype(np.int32)


def sentencepiece_byte_luts(processor: Any, vocab_size: int) -> ByteLuts:
    """Build the ByteLuts of a SentencePiece model (docs/eval.md §1, bytes without CaseOps)."""
    if processor.piece_to_id(SPACE_MARKER) == processor.unk_id():
        raise RecordError("tokenizer", "U+2581 (the space marker) is not a piece", "use a SentencePiece BPE model")
    base = np.zeros(vocab_size, dtype=np.int32)
    leading_space = np.zeros(vocab_size, dtype=bool)
    boundary = np.ones(vocab_size, dtype=bool)
    for piece_id in range(min(vocab_size, processor.vocab_size())):
        if processor.is_control(piece_id) or processor.is_unknown(piece_id) or processor.is_unused(piece_id):
            continue
        boundary[piece_id] = False
        if processor.is_byte(piece_id):
            base[piece_id] = 1
            continue
        piece = processor.id_to_piece(piece_id)
        if piece.startswith(SPACE_MARKER):
            leading_space[piece_id] = True
            piece = piece[1:]
        base[piece_id] = len(piece.encode("utf-8"))
    return ByteLuts(base=base, leading_space=leading_space, boundary=boundary)
