"""The varlen backends' plumbing on the CPU: FlashAttention-3 through a stand-in module, compiled.

The real `flash_attn_interface` needs a Hopper GPU; a stand-in with the same entry point, written in plain
PyTorch, lets the CPU suite drive the model's fa3 path under `torch.compile(fullgraph=True)`. Before the
backends were loaded eagerly, the compiled forward imported the module inside the trace and Dynamo
stopped (`Attempted to call function marked as skipped ... _gcd_import`).
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
import torch.nn.attention.varlen as torch_varlen

from record import attention
from record.attention import (
    ATTENTION_BACKENDS,
    DOC_BOS_ID,
    attention_backend_report,
    cu_seqlens_from_tokens,
    uses_varlen,
)
from record.config import Config
from record.model import GPT

# A varlen FlashAttention-3 entry point in plain PyTorch: every document of the flattened batch attends
# causally to itself only (document ids from cu_seqlens, then one masked SDPA call; traceable, no loop).
STAND_IN = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F

    CALLS = []

    def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=False):
        CALLS.append(causal)
        total = q.shape[0]
        pos = torch.arange(total, device=q.device)
        doc = torch.searchsorted(cu_seqlens_q[1:].long(), pos, right=True)
        allowed = (doc[:, None] == doc[None, :]) & (pos[:, None] >= pos[None, :])
        groups = q.shape[1] // k.shape[1]
        k, v = (t.repeat_interleave(groups, dim=1) for t in (k, v))
        out = F.scaled_dot_product_attention(
            q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], attn_mask=allowed
        )
        return out[0].transpose(0, 1), None
    """
)


@pytest.fixture
def fa3_stand_in(tmp_path, monkeypatch):
    (tmp_path / "flash_attn_interface.py").write_text(STAND_IN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "flash_attn_interface", raising=False)
    monkeypatch.setattr(attention, "_LOADED_VARLEN", {})
    yield
    sys.modules.pop("flash_attn_interface", None)


def _tiny_model(seed: int = 0) -> GPT:
    cfg = Config.from_overrides(
        {
            "VOCAB_SIZE": "64",
            "NUM_LAYERS": "3",
            "MODEL_DIM": "32",
            "NUM_HEADS": "4",
            "NUM_KV_HEADS": "2",
            "ROPE_DIMS": "4",
            "LOOP_START": "1",
            "LOOP_END": "1",
            "NUM_LOOPS": "1",
            "PARALLEL_START_LAYER": "2",
            "XSA_LAST_N": "1",
            "TRAIN_SEQ_LEN": "24",
        }
    )
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():  # no zero-initialised matrix, so every path carries signal
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _documents() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(2, 64, (2, 24), generator=g)
    tokens[0, [0, 7, 15]] = DOC_BOS_ID
    tokens[1, [5, 6, 20]] = DOC_BOS_ID
    return tokens


def test_fa3_path_compiled_fullgraph_matches_the_definition(fa3_stand_in):
    """Forward and backward through the fa3 path, compiled as one graph, equal the SDPA definition."""
    tokens = _documents()
    targets = torch.roll(tokens, -1, dims=1)
    cu = cu_seqlens_from_tokens(tokens, max_docs=12)

    want_model = _tiny_model()
    want_model.attention_backend = "sdpa"
    want_model.set_looping(True)
    want = want_model(tokens, targets)
    want.backward()

    model = _tiny_model()
    model.attention_backend = "fa3"  # loads the module here, outside any trace
    model.set_looping(True)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    got = compiled(tokens, targets, cu_seqlens=cu)
    got.backward()

    assert sys.modules["flash_attn_interface"].CALLS, "the fa3 entry point was not called"
    assert all(sys.modules["flash_attn_interface"].CALLS), "fa3 was called without causal=True"
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for (name, p), q in zip(model.named_parameters(), want_model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_fa3_runs_on_the_cpu_only_through_its_stand_in_and_cuda_only_kernels_fall_back():
    assert uses_varlen("fa3", "cpu") and uses_varlen("fa3", "cuda")
    assert not uses_varlen("fa4", "cpu") and not uses_varlen("torch", "cpu")
    assert uses_varlen("fa4", "cuda") and uses_varlen("torch", "cuda")
    assert not uses_varlen("sdpa", "cuda")


def test_cpu_report_names_sdpa_and_every_faster_backend_refused_with_a_reason():
    report = attention_backend_report("cpu")
    assert report.name == "sdpa"
    assert [name for name, _ in report.refused] == list(ATTENTION_BACKENDS[:-1]) == ["fa4", "fa3", "torch"]
    assert all(reason == "needs a CUDA GPU" for _, reason in report.refused)


def test_torch_backend_adapts_to_the_installed_signature(monkeypatch):
    """torch 2.11's varlen_attn has no enable_gqa (KV heads are repeated) and takes causality as
    window_size=(-1, 0); newer releases take enable_gqa. The adapter passes what the version accepts."""
    seen = {}

    def old_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, return_aux=None, scale=None, window_size=(-1, -1)):
        seen.update(heads=(q.shape[1], k.shape[1], v.shape[1]), window_size=window_size)
        return q

    def new_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, window_size=(-1, -1), enable_gqa=False):
        seen.update(heads=(q.shape[1], k.shape[1], v.shape[1]), window_size=window_size, enable_gqa=enable_gqa)
        return q

    q, k = torch.zeros(10, 8, 4), torch.zeros(10, 2, 4)
    cu = torch.tensor([0, 4, 10], dtype=torch.int32)
    for fake, expected in ((old_varlen, {"heads": (8, 8, 8)}), (new_varlen, {"heads": (8, 2, 2), "enable_gqa": True})):
        seen.clear()
        monkeypatch.setattr(torch_varlen, "varlen_attn", fake)
        attention._torch_varlen()(q, k, k, cu, 6)
        assert seen["window_size"] == (-1, 0)
        assert {key: seen[key] for key in expected} == expected


def test_setting_a_backend_loads_it_or_fails_there(fa3_stand_in, monkeypatch):
    """The kernels load when the backend is set, outside any trace; one that cannot load fails at that
    line, not later inside torch.compile (where a forced, unloaded backend once gave a KeyError)."""
    model = _tiny_model()
    model.attention_backend = "fa3"
    assert "fa3" in attention._LOADED_VARLEN
    monkeypatch.setattr(attention, "_LOADED_VARLEN", {})
    monkeypatch.setitem(sys.modules, "flash_attn_interface", None)  # as if not installed
    with pytest.raises(ImportError):
        model.attention_backend = "fa3"
    assert model.attention_backend == "fa3" and not attention._LOADED_VARLEN  # the earlier choice stands
