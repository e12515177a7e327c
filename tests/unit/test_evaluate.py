"""Plain BPB evaluation: exact byte totals on real text, agreement with a direct computation, rank split,
document independence, and the whole CPU pipeline EMA -> GPTQ -> pergroup -> deserialize -> TTT."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from golfkit.data.dataprep import write_shard
from golfkit.data.tokenizer import tokenize_documents
from golfkit.runs.presets import tiny_config
from record.data import ValidationSet, load_validation
from record.dist import DistEnv
from record.evaluate import evaluate_plain, plain_row_range, run_diagnostic_eval
from record.model import GPT
from record.tokenizer import load_tokenizer
from record.ttt import evaluate_phased_ttt

CFG = tiny_config(eval_seq_len=64, val_batch_tokens=8 * 64 * 2)  # 2 rows of 64 per batch on one rank
TOKENIZER = "tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"


def place(rank: int = 0, world: int = 1) -> DistEnv:
    return DistEnv(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))


def byte_level_stream(shared_data: Path, docs: int, skip: int = 0) -> tuple[ValidationSet, list[str]]:
    """Real web documents as UTF-8 byte tokens (+2, so no byte is BOS 1), BOS before each, one byte
    credited per byte token: bpb is then exactly bits per UTF-8 byte of the text."""
    texts = []
    with open(shared_data / "webtext" / "docs.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= skip:
                texts.append(json.loads(line)["text"][:600])
            if len(texts) == docs:
                break
    docs_ids = [np.concatenate([[1], np.frombuffer(t.encode(), np.uint8).astype(np.int32) + 2]) for t in texts]
    tokens = np.concatenate([*docs_ids, [1]]).astype(np.int32)
    credit = (tokens != 1).astype(np.int32)
    return ValidationSet(torch.from_numpy(tokens), torch.from_numpy(credit), None), texts


def train_on(val: ValidationSet, cfg, steps: int, seed: int = 0) -> GPT:
    """A few Adam steps of the tiny GPT on random windows of `val`'s stream."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    model.use_fused_kernels = False
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    tokens = val.tokens.long()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, tokens.numel() - cfg.train_seq_len - 1, (8,), generator=gen).tolist()
        rows = torch.stack([tokens[s : s + cfg.train_seq_len + 1] for s in starts])
        loss = model(rows[:, :-1], rows[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


@pytest.fixture(scope="module")
def trained(shared_data: Path) -> tuple[GPT, ValidationSet]:
    val, _ = byte_level_stream(shared_data, docs=12, skip=100)
    return train_on(byte_level_stream(shared_data, docs=40)[0], CFG, steps=30), val


def test_byte_total_equals_the_utf8_bytes_of_real_documents(shared_data: Path, tmp_path: Path) -> None:
    processor = load_tokenizer(shared_data / TOKENIZER, 8192)
    texts = []
    with open(shared_data / "webtext" / "docs.jsonl", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            if text == text.strip() and len(texts) < 5:
                texts.append(text[:800].strip())
    encoded = tokenize_documents(processor, texts)
    tokens = np.concatenate([np.concatenate([[1], ids]) for ids, _ in encoded] + [[1]])
    credit = np.concatenate([np.concatenate([[0], c]) for _, c in encoded] + [[0]])
    write_shard(tmp_path / "fineweb_val_000000.bin", tokens)
    write_shard(tmp_path / "fineweb_val_bytes_000000.bin", credit)
    val = load_validation(tmp_path)
    utf8 = sum(len(t.encode("utf-8")) for t in texts)
    cfg = tiny_config(vocab_size=8192, eval_seq_len=128, val_batch_tokens=8 * 128 * 4, ttt_eval_seq_len=128)
    torch.manual_seed(0)
    model = GPT(cfg)
    plain = evaluate_plain(model, val, cfg, place())
    assert plain.byte_count == utf8 and plain.token_count == tokens.size - 1
    model.set_looping(True)
    ttt = evaluate_phased_ttt(model, val, dataclasses.replace(cfg, phased_ttt_prefix_docs=0), place(), print)
    assert ttt.byte_count == utf8 and ttt.token_count == tokens.size - 1


def test_val_bpb_equals_a_direct_computation(trained) -> None:
    model, val = trained
    result = evaluate_plain(model, val, CFG, place())
    tokens = val.tokens.long()
    nll_sum = 0.0
    seq = CFG.eval_seq_len
    for lo in range(0, tokens.numel() - 1, seq):
        x = tokens[lo : lo + seq][None]
        y = tokens[lo + 1 : lo + seq + 1][None, : x.shape[1]]
        with torch.no_grad():
            logits = model.forward_logits(x[:, : y.shape[1]])
        nll_sum += float(-F.log_softmax(logits.double(), -1).gather(2, y[..., None]).sum())
    text_bytes = int((val.tokens[1:] != 1).sum())
    assert result.byte_count == text_bytes
    assert result.val_bpb == pytest.approx(nll_sum / math.log(2) / text_bytes, rel=1e-6)
    assert result.val_loss == pytest.approx(nll_sum / (tokens.numel() - 1), rel=1e-6)
    assert result.val_bpb < 5.0  # trained: well under the 8 bits of a uniform byte guess


def test_ranks_split_the_rows_and_their_sums_add_up(trained) -> None:
    model, val = trained
    whole = evaluate_plain(model, val, CFG, place())
    for world in (2, 4):
        parts = [evaluate_plain(model, val, CFG, place(r, world)) for r in range(world)]
        assert sum(p.token_count for p in parts) == whole.token_count
        assert sum(p.byte_count for p in parts) == whole.byte_count
        loss = sum(p.val_loss * p.token_count for p in parts)
        assert loss == pytest.approx(whole.val_loss * whole.token_count, rel=1e-9)
    ranges = [plain_row_range(23365, 32, place(r, 8), reference_truncation=True) for r in range(8)]
    assert 23365 - sum(len(r) for r in ranges) == 69  # the reference leaves 69 of the record's rows unscored
    assert sum(len(plain_row_range(23365, 32, place(r, 8), False)) for r in range(8)) == 23365


def test_reference_truncation_drops_rows_and_full_coverage_scores_the_tail(trained) -> None:
    model, val = trained
    n = val.tokens.numel() - 1
    full = evaluate_plain(model, val, CFG, place())
    assert full.token_count == n  # stream not cut to whole rows: the tail row is scored too
    cut = evaluate_plain(model, val, CFG, place(0, 2), reference_truncation=True)
    rows_per_batch = CFG.val_batch_tokens // 8 // CFG.eval_seq_len
    assert cut.token_count == (n // CFG.eval_seq_len // 2) // rows_per_batch * rows_per_batch * CFG.eval_seq_len


def test_a_document_never_sees_the_previous_one_in_plain_eval(trained) -> None:
    model, val = trained
    seen: list[torch.Tensor] = []

    def capture(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(model.per_token_loss(x, y).flatten())
        return seen[-1].view(y.shape)

    evaluate_plain(model, val, CFG, place(), loss_fn=capture)
    base = torch.cat(seen)
    tokens = val.tokens.numpy().copy()
    bos = np.flatnonzero(tokens == 1)
    tokens[bos[2] + 1 : bos[3]] = 7  # rewrite all of document 2
    seen.clear()
    evaluate_plain(model, ValidationSet(torch.from_numpy(tokens), val.byte_counts, None), CFG, place(), loss_fn=capture)
    changed = np.flatnonzero((torch.cat(seen) != base).numpy()) + 1  # target positions
    assert changed.size > 0 and changed.min() > bos[2] and changed.max() <= bos[3]  # doc 2's own targets


def test_diagnostic_line_is_the_reference_format(trained) -> None:
    model, val = trained
    lines: list[str] = []
    result = run_diagnostic_eval("diagnostic quantized", model, val, CFG, place(), lines.append)
    assert lines == [
        f"diagnostic quantized val_loss:{result.val_loss:.8f} val_bpb:{result.val_bpb:.8f} "
        f"eval_time:{1000 * result.seconds:.0f}ms"
    ]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("lrzip") is None, reason="pergroup artifacts need lrzip")
def test_ttt_beats_the_quantized_model_after_the_full_cpu_pipeline(shared_data: Path) -> None:
    from quant_helpers import serialize_artifact

    from record.artifact import deserialize_artifact
    from record.optim import WeightEma
    from record.quant import collect_hessians, dequantize, quantize_state_dict

    cfg = dataclasses.replace(CFG, ttt_chunk_size=32, ttt_eval_seq_len=64, ttt_batch_size=4, ttt_lora_lr=3e-3)
    cfg = dataclasses.replace(cfg, phased_ttt_prefix_docs=4, global_ttt_chunk_tokens=256, compressor="pergroup")
    train_val, _ = byte_level_stream(shared_data, docs=80)
    model = train_on(train_val, cfg, steps=40)
    ema = WeightEma(model, decay=0.9)
    ema.update()
    ema.apply_to(model)
    model.set_looping(True)
    calib = [train_val.tokens[i * 129 : (i + 1) * 129].long()[None, :128] for i in range(4)]
    qm = quantize_state_dict(model.state_dict(), collect_hessians(model, calib), cfg, passthrough_max_numel=256)
    restored = GPT(cfg)
    restored.load_state_dict(dequantize(deserialize_artifact(serialize_artifact(qm, cfg))))
    restored.set_looping(True)
    held, _ = byte_level_stream(shared_data, docs=16, skip=300)
    quantized = evaluate_plain(restored, held, cfg, place())
    torch.manual_seed(0)
    ttt = evaluate_phased_ttt(restored, held, cfg, place(), lambda _: None)
    assert ttt.token_count == quantized.token_count
    assert ttt.val_bpb < quantized.val_bpb - 0.01


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("lrzip") is None, reason="pergroup artifacts need lrzip")
def test_evaluation_phase_runs_every_step_in_the_reference_order(shared_data: Path, tmp_path: Path) -> None:
    from record.eval_phase import run_evaluation_phase
    from record.optim import WeightEma
    from record.sizes import CodeSize

    cfg = dataclasses.replace(CFG, artifact_dir=str(tmp_path), ttt_chunk_size=32, ttt_eval_seq_len=64)
    cfg = dataclasses.replace(cfg, ttt_batch_size=4, phased_ttt_prefix_docs=4, global_ttt_chunk_tokens=256)
    train_val, _ = byte_level_stream(shared_data, docs=30)
    model = train_on(train_val, cfg, steps=10)
    model.set_looping(True)
    held, _ = byte_level_stream(shared_data, docs=8, skip=300)
    calib = [train_val.tokens[i * 129 : (i + 1) * 129].long()[None, :128] for i in range(2)]
    lines: list[str] = []
    report = run_evaluation_phase(
        model,
        held,
        cfg,
        place(),
        lines.append,
        ema=WeightEma(model, 0.9),
        code_bytes=CodeSize(100, 50),
        calibration=calib,
    )
    order = [
        "ema:applying EMA weights",
        "diagnostic pre-quantization post-ema val_loss:",
        "Serialized model: ",
        "Total submission size quantized+pergroup: ",
        "Deserialize: decompression done",
        "diagnostic quantized val_loss:",
        "ttt_lora:warming up compile",
        "beginning TTT eval timer",
        "ttt_phased: ",
        "quantized_ttt_phased val_loss:",
        "total_eval_time:",
    ]
    at = 0
    for prefix in order:
        at = next(i for i in range(at, len(lines)) if lines[i].startswith(prefix)) + 1
    assert sum(line.startswith("Deserialize: decompression done") for line in lines) == 1  # loaded once
    assert report.export.path.is_file() and report.ttt is not None
    assert report.ttt.token_count == report.quantized.token_count == held.tokens.numel() - 1
