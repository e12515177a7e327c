"""CaseOps (`lossless_caps_caseops_v1`): a reversible lower-casing of ASCII words, and its byte credit.

The record's tokenizer never sees an upper-case ASCII letter. Each maximal run of ASCII letters (a
"word") is lower-cased and its capitalisation is written as private-use operator characters in front
of it, so "The", "THE" and "the" share one set of subword pieces:

- an all-lower word stays as it is;
- an all-upper word of two or more letters gets ALLCAPS (U+E002) in front;
- a word whose first letter alone is upper gets TITLE (U+E001) in front;
- any other word gets TITLE in front when its first letter is upper, and CAPNEXT (U+E003) before each
  later upper letter ("McDonald" -> TITLE "mc" CAPNEXT "donald");
- an operator character that is already in the text is kept literally behind ESC (U+E004).

Only ASCII letters change case: "É", "ß" or the Turkish dotted I pass through untouched, which is what
keeps the transform exactly invertible. The published dataset was made this way, so the output here
must match it character for character (tests check 300 published documents).

BPB must be measured on the ORIGINAL text, so every token is credited with the number of original
UTF-8 bytes it stands for: operators count 0, an escaped operator counts its own 3 bytes (the ESC in
front counts 0), every other character its UTF-8 length (a lower-cased letter still stands for one
original byte).
"""

from __future__ import annotations

import re

import numpy as np

from record.errors import RecordError
from record.tokenizer import CASEOPS_OPERATORS

CASEOPS_NAME = "lossless_caps_caseops_v1"
CASEOPS_TITLE, CASEOPS_ALLCAPS, CASEOPS_CAPNEXT, CASEOPS_ESC = CASEOPS_OPERATORS
_CASEOPS_OPERATOR_SET = frozenset(CASEOPS_OPERATORS)


def _caseops_is_letter(ch: str) -> bool:
    return "a" <= ch <= "z" or "A" <= ch <= "Z"


def _caseops_encode_word(word: str) -> str:
    """The operators + lower-case letters for one maximal run of ASCII letters."""
    lower = word.lower()
    if word == lower:
        return word
    if len(word) >= 2 and word == word.upper():
        return CASEOPS_ALLCAPS + lower
    first_upper = word[0] <= "Z"
    if first_upper and word[1:] == lower[1:]:
        return CASEOPS_TITLE + lower
    parts = [CASEOPS_TITLE] if first_upper else []
    parts.append(lower[0])
    for original, low in zip(word[1:], lower[1:], strict=True):
        if original != low:
            parts.append(CASEOPS_CAPNEXT)
        parts.append(low)
    return "".join(parts)


# What the encoder must touch: a maximal ASCII-letter run holding an upper-case letter, or an operator
# character already in the text. Everything else is copied as it is, which keeps encoding fast.
_CASEOPS_ENCODE_TARGETS = re.compile(r"(?<![A-Za-z])[a-z]*[A-Z][A-Za-z]*|[\ue001-\ue004]")


def _caseops_encode_match(match: re.Match[str]) -> str:
    found = match.group()
    return CASEOPS_ESC + found if found in _CASEOPS_OPERATOR_SET else _caseops_encode_word(found)


def caseops_encode(text: str) -> str:
    """Apply the CaseOps transform (see the module docstring); `caseops_decode` undoes it exactly."""
    return _CASEOPS_ENCODE_TARGETS.sub(_caseops_encode_match, text)


def caseops_decode(text: str) -> str:
    """Undo `caseops_encode`. Text no encoder could have produced (an operator before a non-letter, an
    operator inside a word, a dangling operator) is refused with a RecordError naming the position,
    in the same cases as the reference decoder, because a silently wrong decode would corrupt text."""
    out: list[str] = []
    word_mode = ""  # "title" or "allcaps": the operator waiting for the next word's first letter
    capnext = escaped = in_word = allcaps_word = False
    for pos, ch in enumerate(text):
        is_letter = _caseops_is_letter(ch)
        if escaped:
            if word_mode and not is_letter:
                _caseops_malformed(pos, "a word operator is followed by an escaped character")
            out.append(ch)
            escaped = False
            in_word = is_letter
            allcaps_word = allcaps_word and is_letter
        elif ch == CASEOPS_ESC:
            escaped = True
        elif ch in (CASEOPS_TITLE, CASEOPS_ALLCAPS):
            if word_mode or capnext or in_word:
                _caseops_malformed(pos, "a word operator sits inside a word or after another operator")
            word_mode = "title" if ch == CASEOPS_TITLE else "allcaps"
        elif ch == CASEOPS_CAPNEXT:
            if capnext:
                _caseops_malformed(pos, "two CAPNEXT operators in a row")
            capnext = True
        elif is_letter:
            if not in_word:
                allcaps_word = word_mode == "allcaps"
                upper = bool(word_mode) or capnext
                in_word = True
            elif word_mode:
                _caseops_malformed(pos, "a word operator leaked into the middle of a word")
            else:
                upper = allcaps_word or capnext
            out.append(ch.upper() if upper else ch)
            word_mode, capnext = "", False
        else:
            if word_mode or capnext:
                _caseops_malformed(pos, "an operator is not followed by an ASCII letter")
            out.append(ch)
            in_word = allcaps_word = False
    if escaped or word_mode or capnext:
        _caseops_malformed(len(text), "the text ends with a dangling operator")
    return "".join(out)


def _caseops_malformed(pos: int, what: str) -> None:
    raise RecordError(f"caseops text, character {pos}", what, "decode only text produced by caseops_encode")


def caseops_char_weights(encoded: str) -> np.ndarray:
    """Per character of CaseOps-encoded text: how many original UTF-8 bytes it stands for.

    Operators weigh 0; the character behind an ESC is literal and weighs its UTF-8 length (3 for an
    escaped operator); every other character weighs its UTF-8 length (a lower-cased letter still
    stands for one original byte). A token covering characters [begin, end) is credited the sum over
    that span, which is the reference's per-surface count.
    """
    points = np.frombuffer(encoded.encode("utf-32-le"), dtype=np.uint32)
    weights = 1 + (points >= 0x80).astype(np.int64) + (points >= 0x800) + (points >= 0x10000)
    operator_at = np.flatnonzero((points >= ord(CASEOPS_TITLE)) & (points <= ord(CASEOPS_ESC)))
    weights[operator_at] = 0
    escape = ord(CASEOPS_ESC)
    literal_at = -1  # position an ESC made literal
    for pos in operator_at.tolist():
        if pos == literal_at:
            weights[pos] = 3  # an escaped operator: a real character of the original text
        elif points[pos] == escape:
            literal_at = pos + 1
    return weights


def caseops_span_bytes(encoded: str, begins: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Original-byte credit of each token, given its [begin, end) character span in `encoded`."""
    prefix = np.concatenate(([0], np.cumsum(caseops_char_weights(encoded))))
    return prefix[np.asarray(ends, dtype=np.int64)] - prefix[np.asarray(begins, dtype=np.int64)]
