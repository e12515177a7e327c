"""The SP8192 CaseOps tokenizer: validation on load, exact byte sidecar, demo models, LUT fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from golfkit.data.caseops import CASEOPS_OPERATORS, caseops_encode
from golfkit.data.tokenizer import DocumentTokenizer, parse_piece_spans, tokenize_documents
from record.errors import RecordError
from record.tokenizer import BOS_ID, load_tokenizer, sentencepiece_byte_luts

REAL_MODEL = "tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"
FIXTURE_DOCS = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "docs.jsonl"


def _fixture_texts() -> list[str]:
    return [json.loads(line)["text"] for line in FIXTURE_DOCS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def real_tokenizer(shared_data: Path):
    return load_tokenizer(shared_data / REAL_MODEL, 8192)


@pytest.fixture(scope="module")
def webtext(shared_data: Path) -> list[str]:
    lines = (shared_data / "webtext" / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines]


def test_real_model_has_the_published_special_ids(real_tokenizer) -> None:
    sp = real_tokenizer
    assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, BOS_ID, 2, 3)
    assert [sp.piece_to_id(op) for op in CASEOPS_OPERATORS] == [4, 5, 6, 7]


def test_load_refuses_a_model_that_does_not_match_the_data(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="8192 pieces but VOCAB_SIZE is 1024"):
        load_tokenizer(shared_data / REAL_MODEL, 1024)
    with pytest.raises(RecordError, match="tokenizer model not found"):
        load_tokenizer(tmp_path / "missing.model", 8192)
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a model")
    with pytest.raises(RecordError, match="not a SentencePiece model"):
        load_tokenizer(garbage, 8192)


def test_load_refuses_a_tokenizer_without_the_operator_pieces(tmp_path: Path) -> None:
    import sentencepiece as spm

    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(_fixture_texts()),
        model_prefix=str(tmp_path / "plain"),
        vocab_size=400,
        byte_fallback=True,
        bos_id=1,
        eos_id=2,
        unk_id=3,
        pad_id=0,
        minloglevel=2,
    )
    with pytest.raises(RecordError, match="operator U\\+E001 is not a reserved piece"):
        load_tokenizer(tmp_path / "plain.model", 400)
    assert load_tokenizer(tmp_path / "plain.model", 400, caseops=False).vocab_size() == 400


def test_demo_tokenizer_mirrors_the_real_models_layout(demo_model: Path) -> None:
    sp = load_tokenizer(demo_model, 512)
    assert [sp.id_to_piece(i) for i in range(9)] == ["<pad>", "<s>", "</s>", "<unk>", *CASEOPS_OPERATORS, "<0x00>"]
    assert sp.is_byte(8) and not sp.is_control(4)
    texts = _fixture_texts()
    for text, (ids, credit) in zip(texts, tokenize_documents(sp, texts), strict=True):
        assert ids.tolist() == sp.encode(caseops_encode(text))
        assert int(credit.sum()) == len(text.encode("utf-8"))


EDGE_TEXTS = [
    "  leading and  double  spaces, trailing ",
    "ﬁne Ｆｕｌｌｗｉｄｔｈ NFKC",
    "xé😀 and MIXEDcase McDonald",
    "\ue004\ue001Already operators\ue000",
    "tab\tnew\nline \u200b zero width",
    "",
]


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_fast_spans_equal_the_spans_sentencepiece_reports(real_tokenizer, text: str) -> None:
    fast = DocumentTokenizer(real_tokenizer)
    ids, credit = fast.tokenize([text])[0]
    encoded = caseops_encode(text)
    proto_ids, spans = parse_piece_spans(real_tokenizer.encode(encoded, out_type="serialized_proto"))
    assert ids.tolist() == proto_ids == real_tokenizer.encode(encoded)
    slow_ids, slow_credit = fast._credit_from_proto(encoded)
    assert slow_ids.tolist() == ids.tolist() and credit.tolist() == slow_credit.tolist()
    assert len(spans) == len(ids)


def test_golden_ids_and_sidecar_for_all_300_documents(shared_data: Path, real_tokenizer, webtext) -> None:
    lines = (shared_data / "golden" / "caseops_v1_webtext.jsonl").read_text(encoding="utf-8").splitlines()
    golden = [json.loads(line) for line in lines]
    results = DocumentTokenizer(real_tokenizer).tokenize([webtext[g["line"]] for g in golden])
    for record, (ids, credit) in zip(golden, results, strict=True):
        text = webtext[record["line"]]
        assert ids.tolist() == record["ids"], f"document {record['line']}"
        assert credit.tolist() == record["bytes"], f"document {record['line']}"
        assert int(credit.sum()) == len(text.encode("utf-8"))


def _uncredited_edges(sp, text: str) -> int:
    """UTF-8 bytes at the document's edges that SentencePiece's normaliser drops (e.g. a leading BOM)."""
    _, offsets = sp.normalize(caseops_encode(text), with_offsets=True)
    encoded = caseops_encode(text)
    return len(encoded[: offsets[0]].encode("utf-8")) + len(encoded[offsets[-1] :].encode("utf-8"))


@pytest.mark.slow
def test_sidecar_total_is_the_utf8_size_for_all_5000_webtext_documents(real_tokenizer, webtext) -> None:
    """Every document's sidecar sums to its UTF-8 size, except the bytes the normaliser removes at the
    edges (2 of the 5,000: a leading U+200E and a leading U+FEFF + space), which the published pipeline
    does not credit either."""
    results = DocumentTokenizer(real_tokenizer).tokenize(webtext)
    short = []
    for index, (text, (ids, credit)) in enumerate(zip(webtext, results, strict=True)):
        assert len(ids) == len(credit)
        missing = len(text.encode("utf-8")) - int(credit.sum())
        if missing:
            short.append(index)
            assert missing == _uncredited_edges(real_tokenizer, text) > 0
    assert len(short) <= 5


def test_lut_bytes_credit_plain_text_exactly(real_tokenizer) -> None:
    luts = sentencepiece_byte_luts(real_tokenizer, 8192)
    assert luts.boundary[[0, 1, 2, 3]].all() and luts.base[1] == 0
    text = "the quick brown fox, jumps over 1234 lazy dogs; café ok"
    ids = np.array(real_tokenizer.encode(text))
    previous = np.concatenate(([BOS_ID], ids[:-1]))
    assert int(luts.target_bytes(previous, ids).sum()) == len(text.encode("utf-8"))
    import torch

    credit = luts.target_bytes(torch.as_tensor(previous), torch.as_tensor(ids))
    assert int(credit.sum()) == len(text.encode("utf-8"))
    # A leading-space piece right after BOS gains no space byte: there was no space in the text.
    space_word = real_tokenizer.piece_to_id("\u2581the")
    assert luts.target_bytes(np.array([BOS_ID]), np.array([space_word])).tolist() == [3]
    assert luts.target_bytes(np.array([space_word]), np.array([space_word])).tolist() == [4]
