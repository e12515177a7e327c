"""Data preparation with the SP8192 CaseOps tokenizer: documents -> (token ids, original bytes per
token), and small CaseOps-compatible models for tests and the CPU demo.

Byte credit per token comes from the piece's span in the input (SentencePiece reports each piece's
[begin, end) byte offsets; the text there is the piece's "surface", with its leading space as a real
space), so normalisation never changes how many original bytes a token stands for. The record program
only loads a tokenizer (record/tokenizer.py); none of this ships in train_gpt.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from golfkit.data.caseops import caseops_encode, caseops_span_bytes
from record.tokenizer import BOS_ID, CASEOPS_OPERATORS, _tokenizer_module

# The published model's special ids and training settings, reused for the small demo models.
TOKENIZER_SPECIAL_IDS = {"pad_id": 0, "bos_id": BOS_ID, "eos_id": 2, "unk_id": 3}


def _tokenizer_varint(blob: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = blob[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _tokenizer_skip_field(blob: bytes, pos: int, wire: int) -> int:
    if wire == 0:
        return _tokenizer_varint(blob, pos)[1]
    if wire == 2:
        length, pos = _tokenizer_varint(blob, pos)
        return pos + length
    return pos + (4 if wire == 5 else 8)


def parse_piece_spans(blob: bytes) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and [begin, end) input byte spans from a serialized SentencePieceText.

    sentencepiece 0.2.1+ dropped the protobuf-free `immutable_proto` output; `serialized_proto` still
    works without protobuf, and this reads the two fields we need (message `pieces` = 2, inside it
    id = 2, begin = 4, end = 5) straight from the wire format.
    """
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    pos, size = 0, len(blob)
    while pos < size:
        key, pos = _tokenizer_varint(blob, pos)
        if key != 0x12:  # anything but field 2 (a piece, length-delimited)
            pos = _tokenizer_skip_field(blob, pos, key & 7)
            continue
        length, pos = _tokenizer_varint(blob, pos)
        end_of_piece = pos + length
        piece_id = begin = end = 0
        while pos < end_of_piece:
            key, pos = _tokenizer_varint(blob, pos)
            if key == 0x10:
                piece_id, pos = _tokenizer_varint(blob, pos)
            elif key == 0x20:
                begin, pos = _tokenizer_varint(blob, pos)
            elif key == 0x28:
                end, pos = _tokenizer_varint(blob, pos)
            else:
                pos = _tokenizer_skip_field(blob, pos, key & 7)
        ids.append(piece_id)
        spans.append((begin, end))
    return ids, spans


class DocumentTokenizer:
    """Turns original documents into (token ids, original bytes per token), fast and exactly.

    The ids are `processor.encode(caseops_encode(text))`. For the byte credit we need each token's
    span in the input. SentencePiece's normaliser maps every normalized character back to an input
    character (`normalize(..., with_offsets=True)`), and the pieces tile the normalized text: a piece
    covers len(piece) characters, and a run of byte-fallback pieces covers one character, credited to
    its last byte (as SentencePiece reports surfaces). So spans come from one cumulative sum, with no
    per-token Python. Whenever that tiling does not add up (unknown pieces), the document goes through
    the exact but slow path: the piece spans SentencePiece itself reports (`parse_piece_spans`).
    """

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        size = processor.vocab_size()
        self.piece_chars = np.zeros(size, dtype=np.int64)
        self.is_byte = np.zeros(size, dtype=bool)
        self.is_continuation_byte = np.zeros(size, dtype=bool)
        self.has_unknown = np.zeros(size, dtype=bool)
        for piece_id in range(size):
            piece = processor.id_to_piece(piece_id)
            if processor.is_byte(piece_id):
                self.is_byte[piece_id] = True
                self.is_continuation_byte[piece_id] = 0x80 <= int(piece[3:5], 16) <= 0xBF
            elif processor.is_unknown(piece_id):
                self.has_unknown[piece_id] = True
            elif not processor.is_control(piece_id):
                self.piece_chars[piece_id] = len(piece)

    def tokenize(self, texts: Sequence[str], num_threads: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each original document: (int64 token ids, int64 original UTF-8 bytes per token).

        No BOS is added (a shard puts BOS 1, credited 0, before each document). A document's credits
        sum to its UTF-8 length, except that leading and trailing whitespace, which the normaliser
        drops, is credited to no token (as in the published sidecar).
        """
        encoded = [caseops_encode(text) for text in texts]
        all_ids = self.processor.encode(encoded, num_threads=num_threads)
        return [self._credit(text, np.asarray(ids, dtype=np.int64)) for text, ids in zip(encoded, all_ids, strict=True)]

    def _credit(self, encoded: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if ids.size == 0:
            return ids, np.zeros(0, dtype=np.int64)
        normalized, offsets = self.processor.normalize(encoded, with_offsets=True)
        chars = self.piece_chars[ids]
        byte_piece = self.is_byte[ids]
        next_is_continuation = np.zeros(ids.size, dtype=bool)
        next_is_continuation[:-1] = self.is_continuation_byte[ids[1:]]
        chars[byte_piece] = ~next_is_continuation[byte_piece]
        ends = np.cumsum(chars)
        if self.has_unknown[ids].any() or int(ends[-1]) != len(normalized) or len(offsets) != len(normalized) + 1:
            return self._credit_from_proto(encoded)
        char_offsets = np.asarray(offsets, dtype=np.int64)
        begins = np.concatenate(([0], ends[:-1]))
        return ids, caseops_span_bytes(encoded, char_offsets[begins], char_offsets[ends])

    def _credit_from_proto(self, encoded: str) -> tuple[np.ndarray, np.ndarray]:
        blob = self.processor.encode(encoded, out_type="serialized_proto")
        ids, byte_spans = parse_piece_spans(blob)
        # SentencePiece reports UTF-8 byte offsets; count characters up to each (continuation bytes
        # are 10xxxxxx), since the credit is summed per character.
        raw = np.frombuffer(encoded.encode("utf-8"), dtype=np.uint8)
        char_before = np.concatenate(([0], np.cumsum((raw & 0xC0) != 0x80)))
        spans = np.asarray(byte_spans, dtype=np.int64).reshape(-1, 2)
        credit = caseops_span_bytes(encoded, char_before[spans[:, 0]], char_before[spans[:, 1]])
        return np.asarray(ids, dtype=np.int64), credit


def tokenize_documents(processor: Any, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """`DocumentTokenizer(processor).tokenize(texts)`, for one-off use."""
    return DocumentTokenizer(processor).tokenize(texts)


def train_demo_tokenizer(texts: Iterable[str], vocab_size: int, model_prefix: str | os.PathLike[str]) -> Path:
    """Train a small CaseOps-compatible model in seconds; returns the `.model` path.

    The texts are original documents: they are CaseOps-encoded first, like the published model's
    training data. Same settings as the published model (BPE, operators as user-defined pieces at
    ids 4-7, byte fallback, pad/BOS/EOS/unk = 0/1/2/3, nmt_nfkc, no dummy prefix, split digits), so
    everything downstream (shards, sidecar, load_tokenizer) treats it like the real one.
    """
    spm = _tokenizer_module()
    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    encoded = [caseops_encode(text) for text in texts]
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(encoded),
        model_prefix=str(prefix),
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=0.999,
        byte_fallback=True,
        split_digits=True,
        user_defined_symbols=list(CASEOPS_OPERATORS),
        normalization_rule_name="nmt_nfkc",
        add_dummy_prefix=False,
        hard_vocab_limit=False,
        max_sentence_length=1 << 20,
        num_threads=1,
        minloglevel=2,
        **TOKENIZER_SPECIAL_IDS,
    )
    return prefix.with_suffix(".model")
