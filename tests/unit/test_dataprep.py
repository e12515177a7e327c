"""`golfkit data prepare`: documents -> shards + byte sidecar that the record's loaders read back."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from golfkit import cli
from golfkit.caseops import caseops_encode
from golfkit.dataprep import prepare_shards
from golfkit.errors import GolfkitError
from golfkit.tokenizer import train_demo_tokenizer
from record.config import DATASET_NAME
from record.data import TrainBatchLoader, list_shards, load_validation, read_shard
from record.errors import RecordError
from record.tokenizer import load_tokenizer

FIXTURE_DOCS = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "docs.jsonl"


def _texts() -> list[str]:
    return [json.loads(line)["text"] for line in FIXTURE_DOCS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> Path:
    return train_demo_tokenizer(_texts(), 512, tmp_path_factory.mktemp("tok") / "demo")


def _prepare(tmp_path: Path, model: Path, *extra: str) -> tuple[Path, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["data", "prepare", "--docs", str(FIXTURE_DOCS), "--tokenizer", str(model), "--out", str(tmp_path)]
    code = cli.run([*argv, "--no-progress", *extra], out, err)
    assert code == 0, err.getvalue()
    return tmp_path / "datasets" / DATASET_NAME, out.getvalue()


def test_prepare_writes_shards_the_loaders_read_back_token_for_token(tmp_path: Path, demo_model: Path) -> None:
    shard_dir, report = _prepare(tmp_path, demo_model, "--val-docs", "12", "--shard-tokens", "1500")
    sp = load_tokenizer(tmp_path / "tokenizers" / demo_model.name, 512)
    texts = _texts()
    expected = [[1, *sp.encode(caseops_encode(text))] for text in texts]
    val_stream = [t for doc in expected[:12] for t in doc]
    train_stream = [t for doc in expected[12:] for t in doc]

    val_files = list_shards(str(shard_dir / "fineweb_val_*.bin"))
    train_files = list_shards(str(shard_dir / "fineweb_train_*.bin"))
    assert len(train_files) == -(-len(train_stream) // 1500) >= 2  # documents run across shard edges
    assert all(read_shard(f).size == 1500 for f in train_files[:-1])
    assert np.concatenate([read_shard(f) for f in train_files]).tolist() == train_stream
    assert np.concatenate([read_shard(f) for f in val_files]).tolist() == val_stream
    assert f"validation: 12 docs, {len(val_stream)} tokens" in report
    assert f"training:   {len(texts) - 12} docs, {len(train_stream)} tokens" in report

    val = load_validation(shard_dir)
    assert val.tokens.tolist() == val_stream
    assert val.doc_starts.numel() == 12
    bounds = [*val.doc_starts.tolist(), val.tokens.numel()]
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        assert val.byte_counts[start] == 0  # BOS stands for no text
        assert int(val.byte_counts[start:end].sum()) == len(texts[index].encode("utf-8"))

    loader = TrainBatchLoader(str(shard_dir / "fineweb_train_*.bin"), 0, 1, 64, 256)
    x, y = loader.next_batch()
    first_bos = train_stream.index(1)
    assert x.flatten().tolist() == train_stream[first_bos : first_bos + 256]
    assert y.flatten().tolist() == train_stream[first_bos + 1 : first_bos + 257]


def test_prepare_replaces_a_previous_runs_shards(tmp_path: Path, demo_model: Path) -> None:
    shard_dir, _ = _prepare(tmp_path, demo_model, "--val-docs", "5", "--shard-tokens", "500")
    many = len(list(shard_dir.glob("fineweb_train_*.bin")))
    _prepare(tmp_path, demo_model, "--val-docs", "5", "--shard-tokens", "100000")
    assert many > 1 and len(list(shard_dir.glob("fineweb_train_*.bin"))) == 1


def test_max_docs_and_all_validation(tmp_path: Path, demo_model: Path) -> None:
    summary = prepare_shards(FIXTURE_DOCS, demo_model, tmp_path, val_docs=100, max_docs=7)
    assert (summary.val_docs, summary.train_docs, summary.train_shards) == (7, 0, 0)
    assert [f.name for f in summary.files] == ["fineweb_val_000000.bin", "fineweb_val_bytes_000000.bin"]


def test_corrupted_prepared_shard_is_refused_with_its_path(tmp_path: Path, demo_model: Path) -> None:
    shard_dir, _ = _prepare(tmp_path, demo_model, "--val-docs", "5")
    victim = shard_dir / "fineweb_train_000000.bin"
    victim.write_bytes(victim.read_bytes()[:-1])
    with pytest.raises(RecordError, match="truncated or corrupt") as info:
        TrainBatchLoader(str(shard_dir / "fineweb_train_*.bin"), 0, 1, 8, 16)
    assert str(victim) in str(info.value)
    sidecar = shard_dir / "fineweb_val_bytes_000000.bin"
    sidecar.write_bytes(b"GARBAGE!" + sidecar.read_bytes()[8:])
    with pytest.raises(RecordError, match="not a token shard") as info:
        load_validation(shard_dir)
    assert str(sidecar) in str(info.value)


def test_bad_input_lines_and_tokenizers_are_one_line_errors(tmp_path: Path, demo_model: Path) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "fine"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(GolfkitError, match=r"docs.jsonl:2: no \"text\" string"):
        prepare_shards(docs, demo_model, tmp_path / "out")
    docs.write_text('{"text": "fine"}\nnot json\n', encoding="utf-8")
    with pytest.raises(GolfkitError, match=r"docs\.jsonl:2: not JSON"):
        prepare_shards(docs, demo_model, tmp_path / "out")
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(
        ["data", "prepare", "--docs", str(docs), "--tokenizer", str(docs), "--out", str(tmp_path / "o")], out, err
    )
    assert code == 2 and "not a SentencePiece model" in err.getvalue() and len(err.getvalue().splitlines()) == 1


def test_prepare_with_the_real_tokenizer_reproduces_the_golden_sidecar(tmp_path: Path, shared_data: Path) -> None:
    """Real web text + the real tokenizer: the val shard and sidecar equal the published pipeline's."""
    lines = (shared_data / "golden" / "caseops_v1_webtext.jsonl").read_text(encoding="utf-8").splitlines()
    golden = [json.loads(line) for line in lines[:40]]
    webtext = (shared_data / "webtext" / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(webtext[g["line"]] + "\n" for g in golden), encoding="utf-8")
    model = shared_data / "tokenizers" / "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"
    summary = prepare_shards(docs, model, tmp_path / "out", val_docs=30)
    val = load_validation(summary.shard_dir)
    assert val.tokens.tolist() == [t for g in golden[:30] for t in [1, *g["ids"]]]
    assert val.byte_counts.tolist() == [b for g in golden[:30] for b in [0, *g["bytes"]]]
    train = read_shard(summary.shard_dir / "fineweb_train_000000.bin")
    assert train.tolist() == [t for g in golden[30:] for t in [1, *g["ids"]]]
