"""Triton kernels vs their references on the GPU, at the record's widths, in bf16, values and gradients;
and the whole model with fused kernels vs the plain path, eager and under torch.compile(fullgraph=True).

Run on the H100: `python -m pytest tests/gpu/test_kernels_gpu.py -q -m gpu -s`.
"""

from __future__ import annotations

import time

import pytest
import torch

from record import kernels
from record.attention import DOC_BOS_ID, cu_seqlens_from_tokens, pick_attention_backend
from record.config import Config
from record.kernels import (
    leaky_relu_square_mlp,
    leaky_relu_square_mlp_ref,
    softcapped_cross_entropy,
    softcapped_cross_entropy_ref,
)
from record.model import GPT

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


@pytest.mark.parametrize("tma", [True, False], ids=["tma", "pointer-loads"])
def test_fused_mlp_matches_reference_in_bf16(tma: bool, monkeypatch: pytest.MonkeyPatch):
    """Both loading paths of the fused MLP matmul: tensor descriptors (sm90+) and the pointer fallback."""
    monkeypatch.setattr(kernels, "MLP_TMA", tma)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(4096 + 17, 512, device="cuda", generator=g).bfloat16().requires_grad_()
    w_up = (torch.randn(2048, 512, device="cuda", generator=g) / 512**0.5).bfloat16().requires_grad_()
    w_down = (torch.randn(512, 2048, device="cuda", generator=g) / 2048**0.5).bfloat16().requires_grad_()
    grad = torch.randn(4096 + 17, 512, device="cuda", generator=g).bfloat16()
    got = leaky_relu_square_mlp(x, w_up, w_down)
    got_grads = torch.autograd.grad(got, (x, w_up, w_down), grad)
    exact = [t.detach().float().requires_grad_() for t in (x, w_up, w_down)]
    want = leaky_relu_square_mlp_ref(*exact)
    want_grads = torch.autograd.grad(want, exact, grad.float())
    assert _rel(got, want) < 1e-2
    assert all(_rel(a, b) < 2e-2 for a, b in zip(got_grads, want_grads, strict=True))


def test_fused_cross_entropy_matches_reference_in_bf16():
    g = torch.Generator(device="cuda").manual_seed(1)
    logits = (torch.randn(4096 + 3, 8192, device="cuda", generator=g) * 20).bfloat16().requires_grad_()
    targets = torch.randint(0, 8192, (4096 + 3,), device="cuda", generator=g)
    got = softcapped_cross_entropy(logits, targets, 30.0)
    want = softcapped_cross_entropy_ref(logits, targets, 30.0)
    (gl,) = torch.autograd.grad(got.mean(), logits)
    (rl,) = torch.autograd.grad(want.mean(), logits)
    assert got.dtype == torch.float32 and _rel(got, want) < 1e-5
    assert _rel(gl, rl) < 1e-2


def _record_batch(rows: int = 4, seq_len: int = 2048):
    g = torch.Generator(device="cuda").manual_seed(2)
    tokens = torch.randint(2, 8192, (rows, seq_len + 1), device="cuda", generator=g)
    tokens.scatter_(1, torch.randint(0, seq_len, (rows, 5), device="cuda", generator=g), DOC_BOS_ID)
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


def test_model_fused_and_plain_paths_agree():
    torch.manual_seed(0)
    model = GPT(Config()).cuda()
    model.set_looping(True)
    with torch.no_grad():
        model.qo_bank[11:].normal_(std=0.02)
        model.mlp_down_bank.normal_(std=0.02)
    inputs, targets = _record_batch()
    losses = {}
    for fused in (True, False):
        model.use_fused_kernels = fused
        model.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(inputs, targets)
        loss.backward()
        grads = [p.grad.clone() for p in (model.mlp_up_bank, model.mlp_down_bank, model.tok_emb.weight)]
        losses[fused] = (loss.item(), grads)
    assert abs(losses[True][0] - losses[False][0]) < 2e-2
    assert all(_rel(a, b) < 5e-2 for a, b in zip(losses[True][1], losses[False][1], strict=True))


def test_compiled_model_is_one_graph_and_matches_eager():
    torch.manual_seed(0)
    model = GPT(Config()).cuda()
    model.attention_backend = pick_attention_backend("cuda", torch.cuda.current_device())
    print(f"attention_backend:{model.attention_backend}")
    model.set_looping(True)
    inputs, targets = _record_batch()
    cu = cu_seqlens_from_tokens(inputs, max_docs=64)
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        eager = model(inputs, targets, cu).item()
        start = time.perf_counter()
        loss = compiled(inputs, targets, cu)
        loss.backward()
        torch.cuda.synchronize()
        print(f"compile+first step: {time.perf_counter() - start:.1f}s")
        start = time.perf_counter()
        for _ in range(5):
            compiled(inputs, targets, cu).backward()
        torch.cuda.synchronize()
    print(f"compiled fwd+bwd, {inputs.numel()} tokens: {(time.perf_counter() - start) / 5 * 1e3:.1f} ms")
    assert abs(loss.item() - eager) < 2e-2


def _time_ms(fn, repeats: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3


def test_report_kernel_speed_at_one_micro_batch():
    """Prints fused vs reference fwd+bwd time at one rank's micro-batch (98,304 tokens); asserts nothing
    about speed, only that both ran."""
    tokens = 48 * 2048
    g = torch.Generator(device="cuda").manual_seed(3)
    x = torch.randn(tokens, 512, device="cuda", generator=g).bfloat16().requires_grad_()
    w = (torch.randn(2048, 512, device="cuda", generator=g) / 512**0.5).bfloat16().requires_grad_()
    w_down = (torch.randn(512, 2048, device="cuda", generator=g) / 2048**0.5).bfloat16().requires_grad_()
    logits = torch.randn(tokens, 8192, device="cuda", generator=g).bfloat16().requires_grad_()
    targets = torch.randint(0, 8192, (tokens,), device="cuda", generator=g)
    times = {
        "mlp_fused": _time_ms(lambda: leaky_relu_square_mlp(x, w, w_down).sum().backward()),
        "mlp_ref": _time_ms(lambda: leaky_relu_square_mlp_ref(x, w, w_down).sum().backward()),
        "ce_fused": _time_ms(lambda: softcapped_cross_entropy(logits, targets, 30.0).mean().backward()),
        "ce_ref": _time_ms(lambda: softcapped_cross_entropy_ref(logits, targets, 30.0).mean().backward()),
    }
    print(" ".join(f"{name}:{ms:.2f}ms" for name, ms in times.items()))
    assert all(ms > 0 for ms in times.values())
