"""CaseOps: the exact published transform, its inverse, and the per-character byte credit."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golfkit.data.caseops import (
    CASEOPS_ALLCAPS,
    CASEOPS_CAPNEXT,
    CASEOPS_ESC,
    CASEOPS_TITLE,
    caseops_char_weights,
    caseops_decode,
    caseops_encode,
    caseops_span_bytes,
)
from record.errors import RecordError

T, A, C, E = CASEOPS_TITLE, CASEOPS_ALLCAPS, CASEOPS_CAPNEXT, CASEOPS_ESC


@pytest.mark.parametrize(
    ("original", "encoded"),
    [
        # The worked example checked against the reference (docs/data.md).
        (
            "Hello World, NASA and McDonald's iPhone ABCdef x",
            f"{T}hello {T}world, {A}nasa and {T}mc{C}donald's i{C}phone {T}a{C}b{C}cdef x",
        ),
        ("A I a", f"{T}a {T}i a"),  # one upper letter is a title word, not ALLCAPS
        ("aBC", f"a{C}b{C}c"),
        ("ABc2DEF", f"{T}a{C}bc2{A}def"),  # digits end a word
        ("Éclair ÉCOLE straße İstanbul", f"Éclair É{A}cole straße İstanbul"),  # ASCII runs only
        ("xY_Zz", f"x{C}y_{T}zz"),
        (f"{T}{E}", f"{E}{T}{E}{E}"),  # operators already in the text are escaped
        ("\ue000 keeps", "\ue000 keeps"),  # other private-use characters pass through
    ],
)
def test_encode_known_cases_and_decode_back(original: str, encoded: str) -> None:
    assert caseops_encode(original) == encoded
    assert caseops_decode(encoded) == original


def test_only_ascii_letters_change_case() -> None:
    text = "ÀÉÎ Ωμέγα İI ǅ ＡＢＣ"
    encoded = caseops_encode(text)
    assert encoded == text.replace("İI", f"İ{T}i")  # the I after İ is an ASCII word of its own
    assert caseops_decode(encoded) == text


mixed_text = st.text(
    alphabet=st.one_of(
        st.sampled_from("aAbBzZ'’ 0123456789-\n\t.ÉéİıßΣσ"),
        st.sampled_from([T, A, C, E, "\ue000", "\ue005", "\u0301", "\u0308", "\ufeff", "\U0001f600"]),
        st.characters(),
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(mixed_text)
def test_decode_inverts_encode_for_any_text(text: str) -> None:
    encoded = caseops_encode(text)
    assert caseops_decode(encoded) == text
    assert not any("A" <= ch <= "Z" for ch in encoded)


# Text that exists as UTF-8 (no lone surrogates), which is all a document can be.
utf8_text = mixed_text.filter(lambda text: not any("\ud800" <= ch <= "\udfff" for ch in text))


@settings(max_examples=200, deadline=None)
@given(utf8_text)
def test_char_weights_sum_to_the_original_utf8_size(text: str) -> None:
    encoded = caseops_encode(text)
    weights = caseops_char_weights(encoded)
    assert len(weights) == len(encoded)
    assert int(weights.sum()) == len(text.encode("utf-8"))


def test_span_bytes_credit_operators_zero_and_escaped_operators_three() -> None:
    encoded = caseops_encode(f"Ab{T}é")  # TITLE a b ESC TITLE é
    assert encoded == f"{T}ab{E}{T}é"
    # spans: [TITLE] [ab] [ESC] [TITLE(literal) é]
    assert caseops_span_bytes(encoded, [0, 1, 3, 4], [1, 3, 4, 6]).tolist() == [0, 2, 0, 5]


@pytest.mark.parametrize(
    "malformed",
    [f"{T}", f"{T} a", f"a{T}b", f"{T}{A}a", f"{C}{C}a", f"x{E}", f"{A}1"],
)
def test_decode_refuses_text_no_encoder_makes(malformed: str) -> None:
    with pytest.raises(RecordError, match="caseops text, character"):
        caseops_decode(malformed)


def test_decode_accepts_what_the_reference_decoder_accepts() -> None:
    assert caseops_decode(f"{T}{C}ab") == "Ab"  # CAPNEXT after TITLE is redundant but valid
    assert caseops_decode(f"{C}ab") == "Ab"


def test_golden_published_transform_all_300_documents(shared_data) -> None:
    """The published pipeline's output for the first 300 webtext documents, character for character."""
    docs = (shared_data / "webtext" / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    golden = (shared_data / "golden" / "caseops_v1_webtext.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(golden) == 300
    for line in golden:
        record = json.loads(line)
        text = json.loads(docs[record["line"]])["text"]
        assert caseops_encode(text) == record["encoded"], f"document {record['line']}"
        assert caseops_decode(record["encoded"]) == text


def _run_cli(argv: list[str], stdin_bytes: bytes, monkeypatch) -> tuple[int, str, str]:
    import io
    import sys

    from golfkit import cli

    fake_stdin = io.TextIOWrapper(io.BytesIO(stdin_bytes), encoding="latin-1")  # the locale must not matter
    monkeypatch.setattr(sys, "stdin", fake_stdin)
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(argv, out, err)
    return code, out.getvalue(), err.getvalue()


def test_cli_encode_then_decode_round_trips_exactly(monkeypatch) -> None:
    text = "Hello NASA,\r\nMcDonald's café \ue001 end\n"
    code, encoded, err = _run_cli(["caseops", "encode"], text.encode("utf-8"), monkeypatch)
    assert code == 0 and err == ""
    assert encoded == caseops_encode(text)  # stdout holds the transformed text and nothing else
    code, decoded, err = _run_cli(["caseops", "decode"], encoded.encode("utf-8"), monkeypatch)
    assert code == 0 and decoded == text


def test_cli_refuses_malformed_or_non_utf8_input_in_one_line(monkeypatch, tmp_path) -> None:
    code, out, err = _run_cli(["caseops", "decode"], f"x {T}".encode(), monkeypatch)
    assert code == 2 and out == "" and "dangling operator" in err and len(err.splitlines()) == 1
    code, out, err = _run_cli(["caseops", "encode"], b"ok \xff bad", monkeypatch)
    assert code == 2 and out == "" and "not UTF-8 (byte 3)" in err
    source = tmp_path / "doc.txt"
    source.write_text("ABC", encoding="utf-8")
    code, out, _ = _run_cli(["caseops", "encode", "--input", str(source)], b"", monkeypatch)
    assert code == 0 and out == f"{A}abc"
