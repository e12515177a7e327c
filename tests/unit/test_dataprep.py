"""`golfkit data prepare`: documents -> shards + byte sidecar that the record's loaders read back."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from golfkit import cli
from golfkit.data import dataprep
from golfkit.data.caseops import caseops_encode
from golfkit.data.dataprep import prepare_shards
from golfkit.errors import GolfkitError
from record.config import DATASET_NAME
from record.data import TrainBatchLoader, list_shards, load_validation, read_shard
from record.errors import RecordError
from record.tokenizer import load_tokenizer

FIXTURE_DOCS = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "docs.jsonl"


def _texts() -> list[str]:
    return [json.loads(line)["text"] for line in FIXTURE_DOCS.read_text(encoding="utf-8").splitlines()]


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
    _prepare(tmp_path, demo_model, "--val-docs", "5", "--shard-tokens", "100000", "--force")
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


# ---- --out: refused when it holds anything (unless --force), never left half-made ------------------------


def _prepare_cli(docs: Path, model: Path, out_dir: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["data", "prepare", "--docs", str(docs), "--tokenizer", str(model), "--out", str(out_dir)]
    code = cli.run([*argv, "--no-progress", "--val-docs", "5", *extra], out, err)
    return code, out.getvalue(), err.getvalue()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _user_folder(root: Path) -> Path:
    """A data folder someone filled by hand: a shard of theirs and a note."""
    folder = root / "data"
    (folder / "datasets" / DATASET_NAME).mkdir(parents=True)
    (folder / "datasets" / DATASET_NAME / "fineweb_train_000007.bin").write_bytes(b"their shard")
    (folder / "NOTES.md").write_text("mine\n", encoding="utf-8")
    return folder


def test_a_non_empty_out_is_refused_without_force_and_left_as_it_was(tmp_path: Path, demo_model: Path) -> None:
    folder = _user_folder(tmp_path)
    before = _snapshot(folder)
    code, out, err = _prepare_cli(FIXTURE_DOCS, demo_model, folder)
    assert code == 2 and out == ""
    assert err == (
        f"golfkit data: {folder}: is not empty (NOTES.md, datasets); nothing was written "
        "(give an empty or new folder, or --force to replace it)\n"
    )
    assert _snapshot(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_force_replaces_the_folder_only_once_the_new_one_is_complete(tmp_path: Path, demo_model: Path) -> None:
    folder = _user_folder(tmp_path)
    code, out, err = _prepare_cli(FIXTURE_DOCS, demo_model, folder, "--force")
    assert code == 0, err
    shards = sorted(p.name for p in (folder / "datasets" / DATASET_NAME).iterdir())
    assert "fineweb_train_000007.bin" not in shards and "fineweb_val_bytes_000000.bin" in shards
    assert not (folder / "NOTES.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging or old folder left beside it
    assert f"shards in   {folder / 'datasets' / DATASET_NAME}" in out


def test_an_empty_or_new_out_needs_no_force(tmp_path: Path, demo_model: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert _prepare_cli(FIXTURE_DOCS, demo_model, tmp_path / "empty")[0] == 0
    assert _prepare_cli(FIXTURE_DOCS, demo_model, tmp_path / "a" / "b" / "new")[0] == 0
    assert (tmp_path / "a" / "b" / "new" / "tokenizers" / demo_model.name).is_file()


def _docs_failing_late(tmp_path: Path) -> Path:
    """Good documents (enough to fill shards), then a bad line near the end."""
    docs = tmp_path / "docs.jsonl"
    docs.write_text(FIXTURE_DOCS.read_text(encoding="utf-8") + "not json\n", encoding="utf-8")
    return docs


def test_a_failed_run_leaves_nothing_behind(tmp_path: Path, demo_model: Path) -> None:
    docs = _docs_failing_late(tmp_path)
    code, _, err = _prepare_cli(docs, demo_model, tmp_path / "new" / "data", "--shard-tokens", "500")
    assert code == 2 and "docs.jsonl:" in err and "not JSON" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]  # no data, no partial, no parents


def test_a_failed_forced_run_keeps_the_old_folder(tmp_path: Path, demo_model: Path) -> None:
    folder = _user_folder(tmp_path)
    before = _snapshot(folder)
    code, _, err = _prepare_cli(_docs_failing_late(tmp_path), demo_model, folder, "--force", "--shard-tokens", "500")
    assert code == 2 and "not JSON" in err
    assert _snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "docs.jsonl"]


def test_an_interrupted_run_leaves_nothing_behind(tmp_path: Path, demo_model: Path, monkeypatch) -> None:
    def interrupted(docs, tokenizer, out_dir, *args):
        (out_dir / "datasets").mkdir()
        (out_dir / "datasets" / "half.bin").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(dataprep, "prepare_shards", interrupted)
    folder = _user_folder(tmp_path)
    before = _snapshot(folder)
    code, _, err = _prepare_cli(FIXTURE_DOCS, demo_model, folder, "--force")
    assert code == 130 and err == "golfkit data: interrupted\n"
    assert _snapshot(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_out_that_is_a_file_or_holds_the_inputs_is_refused(tmp_path: Path, demo_model: Path) -> None:
    a_file = tmp_path / "data.bin"
    a_file.write_bytes(b"x")
    code, _, err = _prepare_cli(FIXTURE_DOCS, demo_model, a_file)
    assert code == 2 and err == f"golfkit data: {a_file}: is a file, not a folder (give --out a folder path)\n"
    folder = _user_folder(tmp_path)
    docs = folder / "docs.jsonl"
    docs.write_bytes(FIXTURE_DOCS.read_bytes())
    before = _snapshot(folder)
    code, _, err = _prepare_cli(docs, demo_model, folder, "--force")
    assert code == 2 and "--docs: " in err and "which --force replaces (move it out first)" in err
    assert _snapshot(folder) == before
