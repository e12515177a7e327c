"""TTT's regional compile on the GPU: the serial and two-lane block functions, compiled by inductor with
dynamic shapes on the fastest attention backend here, give the eager model's NLL and LoRA gradients, and
new row counts and widths after the first compile reuse the same graphs.

Run on the GPU box: `python -m pytest tests/gpu/test_ttt_gpu.py -q -m gpu`.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch._dynamo.utils import counters

import record.ttt as ttt
from record.config import Config
from record.evaluate import autocast_for
from record.lora import LoraSet
from record.model import GPT

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _trained_looking_model(cfg: Config, seed: int) -> GPT:
    """The record's network with every weight non-zero (a fresh one has zero output projections)."""
    torch.manual_seed(seed)
    model = GPT(cfg).cuda()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.tok_emb.weight.data = model.tok_emb.weight.data.bfloat16()
    model.set_looping(True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _nll_and_grads(lora: LoraSet, loss_fn, x: torch.Tensor, y: torch.Tensor):
    for p in lora.parameters():
        p.grad = None
    with autocast_for(x.device):
        nll = loss_fn(x, y, lora)
    nll.mean(dim=-1).sum().backward()
    return nll.detach().float(), [p.grad.float().clone() for p in lora.parameters()]


def test_regional_ttt_compile_matches_eager_and_reuses_its_graphs() -> None:
    cfg = dataclasses.replace(Config(), ttt_batch_size=4)
    model, reference = _trained_looking_model(cfg, 0), _trained_looking_model(cfg, 0)
    tail = ttt.ttt_scored_tail(cfg)
    torch._dynamo.reset()
    compiled = ttt.make_ttt_loss_fn(model, tail, compile_model=True)
    reference.attention_backend = model.attention_backend
    eager = ttt.per_row_token_loss_fn(reference, tail)
    lora = LoraSet.for_model(model, cfg, cfg.ttt_batch_size).cuda()
    with torch.no_grad():
        for b in lora.b.values():
            b.normal_(std=0.02)
    g = torch.Generator(device="cuda").manual_seed(1)
    graphs_after_first: int | None = None
    for rows, width in ((4, 48), (3, 2048), (2, 960), (1, 1008)):
        x = torch.randint(2, cfg.vocab_size, (rows, width), device="cuda", generator=g)
        y = torch.randint(2, cfg.vocab_size, (rows, width), device="cuda", generator=g)
        lora.use_rows(torch.arange(rows, device="cuda"))
        want = _nll_and_grads(lora, eager, x, y)
        got = _nll_and_grads(lora, compiled, x, y)
        assert (got[0] - want[0]).abs().mean() < 2e-2, (rows, width)
        for g_got, g_want in zip(got[1], want[1], strict=True):
            cos = torch.nn.functional.cosine_similarity(g_got.flatten(), g_want.flatten(), dim=0)
            assert cos > 0.99, (rows, width, float(cos))
        if graphs_after_first is None:
            graphs_after_first = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == graphs_after_first, "a new row count or width recompiled"
    torch._dynamo.reset()
