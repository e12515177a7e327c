"""Every attention backend that runs on this GPU (FA4, FA3, SDPA) vs the per-document definition.

Run on the H100: `python -m pytest tests/gpu/test_attention_gpu.py -q -m gpu`.
"""

from __future__ import annotations

import pytest
import torch

from record.attention import (
    DOC_BOS_ID,
    attention_per_document_ref,
    available_attention_backends,
    cu_seqlens_from_tokens,
    doc_causal_attention,
    doc_layout,
    pick_attention_backend,
)

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


@pytest.mark.parametrize("backend", ["fa4", "fa3", "sdpa"])
def test_backend_matches_definition_forward_and_backward(backend):
    device = torch.device("cuda")
    if backend not in available_attention_backends(device):
        pytest.skip(f"{backend} is not installed or does not run on this GPU")
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
    device = torch.device("cuda")
    if "fa4" not in available_attention_backends(device):
        pytest.skip("fa4 is not installed")
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
    name = pick_attention_backend("cuda", 0)
    print(f"attention_backend:{name}")
    if torch.cuda.get_device_capability()[0] == 9 and available_attention_backends(torch.device("cuda")) != ["sdpa"]:
        assert name in ("fa4", "fa3")
