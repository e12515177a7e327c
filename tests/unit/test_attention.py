"""Document layouts from BOS tokens, and every attention backend held to the per-document definition."""

from __future__ import annotations

import torch

from record.attention import (
    DOC_BOS_ID,
    attention_per_document_ref,
    cu_seqlens_from_tokens,
    doc_causal_attention,
    doc_layout,
    pick_attention_backend,
)


def _tokens() -> torch.Tensor:
    tokens = torch.full((2, 10), 7)
    tokens[0, [0, 4]] = DOC_BOS_ID  # row 0: docs [0,4) [4,10)
    tokens[1, 6] = DOC_BOS_ID  # row 1 starts mid-document (split doc), then a doc at 6
    return tokens


def test_layout_marks_every_bos_and_every_row_start():
    layout = doc_layout(_tokens())
    assert layout.cu_seqlens.tolist() == [0, 4, 10, 16, 20]
    assert layout.doc_ids.tolist() == [[0] * 4 + [1] * 6, [0] * 6 + [1] * 4]
    assert layout.cu_seqlens.dtype == torch.int32 and layout.max_seqlen == 10


def test_fixed_size_layout_pads_with_empty_documents():
    assert cu_seqlens_from_tokens(_tokens(), max_docs=7).tolist() == [0, 4, 10, 16, 20, 20, 20, 20]
    assert cu_seqlens_from_tokens(_tokens(), max_docs=4).tolist() == [0, 4, 10, 16, 20]
    assert doc_layout(_tokens(), with_cu_seqlens=False).cu_seqlens is None


def test_unmasked_layout_is_one_sequence_per_row():
    layout = doc_layout(_tokens(), doc_masked=False)
    assert layout.cu_seqlens.tolist() == [0, 10, 20]
    assert int(layout.doc_ids.max()) == 0


def _qkv(seed: int, rows: int = 2, seq_len: int = 10, heads: int = 4, kv_heads: int = 2, dim: int = 8):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(rows, seq_len, heads, dim, generator=g)
    k = torch.randn(rows, seq_len, kv_heads, dim, generator=g)
    v = torch.randn(rows, seq_len, kv_heads, dim, generator=g)
    return q, k, v


def test_every_backend_here_matches_the_per_document_definition():
    q, k, v = _qkv(0)
    layout = doc_layout(_tokens())
    want = attention_per_document_ref(q, k, v, layout.doc_ids)
    for backend in ("sdpa", "fa4", "torch"):  # on the CPU the CUDA-only kernels fall back to SDPA
        got = doc_causal_attention(q, k, v, layout, backend)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=backend)


def test_no_attention_across_a_bos():
    """Changing the first document's keys and values leaves the second document's outputs identical."""
    q, k, v = _qkv(1)
    layout = doc_layout(_tokens())
    before = doc_causal_attention(q, k, v, layout)
    k2, v2 = k.clone(), v.clone()
    k2[0, :4] += 5.0
    v2[0, :4] -= 3.0
    after = doc_causal_attention(q, k2, v2, layout)
    assert torch.equal(before[0, 4:], after[0, 4:])
    assert not torch.equal(before[0, :4], after[0, :4])


def test_attention_is_causal_within_a_document():
    q, k, v = _qkv(2)
    layout = doc_layout(_tokens())
    before = doc_causal_attention(q, k, v, layout)
    v2 = v.clone()
    v2[0, 7:] += 1.0
    after = doc_causal_attention(q, k, v2, layout)
    assert torch.equal(before[0, :7], after[0, :7]) and not torch.equal(before[0, 7:], after[0, 7:])


def test_cpu_picks_sdpa():
    assert pick_attention_backend("cpu") == "sdpa"
