"""Every attention backend that runs on this GPU (FA4, FA3, torch's varlen, SDPA) vs the per-document
definition, and one compiled training step of the model through each.

Run on the GPU box: `python -m pytest tests/gpu/test_attention_gpu.py -q -m gpu`.
"""

from __future__ import annotations

import pytest
import torch

from record.attention import (
    ATTENTION_BACKENDS,
    DOC_BOS_ID,
    _backend_refusal,
    attention_backend_report,
    attention_per_document_ref,
    cu_seqlens_from_tokens,
    doc_causal_attention,
    doc_layout,
    pick_attention_backend,
)
from record.config import Config
from record.model import GPT
from record.optim import OptimizerSet, make_orthogonalizer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _batch(rows: int = 3, seq_len: int = 1024, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    tokens = torch.randint(2, 8192, (rows, seq_len), device="cuda", generator=g)
    starts = torch.randint(0, seq_len, (rows, 6), device="cuda", generator=g)
    tokens.scatter_(1, starts, DOC_BOS_ID)
    tokens[0, 0] = DOC_BOS_ID
    shape = dict(device="cuda", dtype=torch.bfloat16)
    q = torch.randn(rows, seq_len, 8, 64, generator=g, **shape)
    k = torch.randn(rows, seq_len, 4, 64, generator=g, **shape)
    v = torch.randn(rows, seq_len, 4, 64, generator=g, **shape)
    return tokens, q, k, v


def _skip_unless_runs(backend: str) -> None:
    reason = None if backend == "sdpa" else _backend_refusal(backend, torch.device("cuda"))
    if reason is not None:
        pytest.skip(f"{backend}: {reason}")


@pytest.mark.parametrize("backend", ATTENTION_BACKENDS)
def test_backend_matches_definition_forward_and_backward(backend):
    _skip_unless_runs(backend)
    tokens, q, k, v = _batch()
    layout = doc_layout(tokens, cu_seqlens=cu_seqlens_from_tokens(tokens, max_docs=64))
    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    got = doc_causal_attention(*inputs, layout, backend)
    grad = torch.randn_like(got)
    got_grads = torch.autograd.grad(got, inputs, grad)
    ref_inputs = [t.float().clone().requires_grad_() for t in (q, k, v)]
    want = attention_per_document_ref(*ref_inputs, layout.doc_ids)
    want_grads = torch.autograd.grad(want, ref_inputs, grad.float())
    assert (got.float() - want).abs().max() < 2e-2
    for a, b in zip(got_grads, want_grads, strict=True):
        assert (a.float() - b).abs().max() / b.abs().max() < 2e-2


def test_fa4_compiles_into_one_graph():
    _skip_unless_runs("fa4")
    tokens, q, k, v = _batch(seed=1)
    layout = doc_layout(tokens, cu_seqlens=cu_seqlens_from_tokens(tokens, max_docs=64))

    def attend(q, k, v, cu):
        return doc_causal_attention(q, k, v, type(layout)(layout.doc_ids, cu, layout.max_seqlen), "fa4")

    compiled = torch.compile(attend, fullgraph=True)
    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    out = compiled(*inputs, layout.cu_seqlens)
    out.float().sum().backward()
    eager = doc_causal_attention(q, k, v, layout, "fa4")
    assert torch.equal(out.detach(), eager)


def test_startup_pick_prefers_flash_attention_on_hopper():
    report = attention_backend_report("cuda", 0)
    print(f"attention_backend:{report.name} refused:{report.refused}")
    assert report.name == pick_attention_backend("cuda", 0)
    faster = ATTENTION_BACKENDS[: ATTENTION_BACKENDS.index(report.name)]
    assert [name for name, _ in report.refused] == list(faster), "every faster backend is named with a reason"
    if torch.cuda.get_device_capability()[0] >= 9 and _backend_refusal("fa4", torch.device("cuda")) is None:
        assert report.name == "fa4"


def _small_model() -> tuple[GPT, Config]:
    cfg = Config.from_overrides(
        {"NUM_LAYERS": "4", "LOOP_START": "1", "LOOP_END": "2", "NUM_LOOPS": "1", "PARALLEL_START_LAYER": "3"}
    )
    torch.manual_seed(0)
    model = GPT(cfg).cuda()
    with torch.no_grad():  # no zero-initialised output projection, so attention reaches the loss
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.set_looping(True)
    return model, cfg


@pytest.mark.parametrize("backend", ATTENTION_BACKENDS)
def test_one_compiled_training_step_per_backend(backend):
    """The model compiled as one graph through `backend`: loss and gradients match eager SDPA (bf16
    tolerances), and a Muon + Adam step leaves every weight finite."""
    _skip_unless_runs(backend)
    tokens, *_ = _batch(rows=2, seq_len=2048, seed=2)
    targets = torch.roll(tokens, -1, dims=1)
    cu = cu_seqlens_from_tokens(tokens, max_docs=64)
    losses, grads = {}, {}
    for name, compiled in (("sdpa", False), (backend, True)):
        model, cfg = _small_model()
        model.attention_backend = name
        step = torch.compile(model, fullgraph=True, dynamic=False) if compiled else model
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step(tokens, targets, cu_seqlens=cu if compiled and name != "sdpa" else None)
        loss.backward()
        losses[name], grads[name] = loss.detach().float(), model.qo_bank.grad.clone()
    assert abs(losses[backend] - losses["sdpa"]) < 2e-2 * losses["sdpa"]
    rel = (grads[backend] - grads["sdpa"]).norm() / grads["sdpa"].norm()
    assert rel < 5e-2, f"{backend}: q/o bank gradient differs from SDPA's by {rel:.3g}"
    opts = OptimizerSet(model, cfg, orthogonalize=make_orthogonalizer(True))
    opts.set_schedule(1.0, 0.95)
    opts.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
