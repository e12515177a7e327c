"""Triton kernels vs their PyTorch references: values and gradients, through Triton's CPU interpreter.

The interpreter must be switched on before triton is imported, so the kernel checks run in a child
process with TRITON_INTERPRET=1; that child prints one JSON line of measured errors.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from record.kernels import (
    leaky_relu_square_mlp,
    leaky_relu_square_mlp_ref,
    softcapped_cross_entropy,
    softcapped_cross_entropy_ref,
)

REPO = Path(__file__).resolve().parents[2]

_INTERPRETER_CHECK = textwrap.dedent(
    """
    import json
    import torch
    from record import kernels
    from record.kernels import (fused_kernels_available, leaky_relu_square_mlp, leaky_relu_square_mlp_ref,
        softcapped_cross_entropy, softcapped_cross_entropy_ref)

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))

    g = torch.Generator().manual_seed(0)
    out = {"available": fused_kernels_available()}
    # Shapes that are not multiples of the 32-wide interpreter tiles exercise the masks.
    x = torch.randn(2, 25, 40, generator=g, requires_grad=True)
    w_up = torch.randn(72, 40, generator=g, requires_grad=True)
    w_down = torch.randn(40, 72, generator=g, requires_grad=True)
    grad = torch.randn(2, 25, 40, generator=g)
    want = leaky_relu_square_mlp_ref(x, w_up, w_down)
    want_grads = torch.autograd.grad(want, (x, w_up, w_down), grad)
    for tma in (True, False):  # tensor-descriptor loads and stores, and plain pointer arithmetic
        kernels.MLP_TMA = tma
        got = leaky_relu_square_mlp(x, w_up, w_down)
        got_grads = torch.autograd.grad(got, (x, w_up, w_down), grad)
        out[f"mlp_tma_{tma}"] = [rel(got, want)] + [rel(a, b) for a, b in zip(got_grads, want_grads)]
    out["mlp_shape"] = list(got.shape)
    logits = (torch.randn(7, 300, generator=g) * 40).requires_grad_()
    targets = torch.randint(0, 300, (7,), generator=g)
    weights = torch.randn(7, generator=g)
    got = softcapped_cross_entropy(logits, targets, 30.0)
    want = softcapped_cross_entropy_ref(logits, targets, 30.0)
    (gl,) = torch.autograd.grad(got, logits, weights)
    (rl,) = torch.autograd.grad(want, logits, weights)
    out["ce"] = [rel(got, want), rel(gl, rl)]
    # Saturated logits: every value at -cap, or one at +cap against -cap elsewhere.
    extreme = torch.full((2, 300), -1000.0)
    extreme[1, 5] = 1000.0
    picks = torch.tensor([3, 7])
    out["ce_extreme"] = rel(
        softcapped_cross_entropy(extreme, picks, 30.0), softcapped_cross_entropy_ref(extreme, picks, 30.0)
    )
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def interpreter_errors() -> dict:
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _INTERPRETER_CHECK], capture_output=True, text=True, env=env, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_interpreter_runs_the_kernels(interpreter_errors):
    assert interpreter_errors["available"] is True
    assert interpreter_errors["mlp_shape"] == [2, 25, 40]


def test_fused_mlp_matches_reference_values_and_gradients(interpreter_errors):
    assert max(interpreter_errors["mlp_tma_True"]) < 1e-5
    assert max(interpreter_errors["mlp_tma_False"]) < 1e-5


def test_fused_cross_entropy_matches_reference_values_and_gradients(interpreter_errors):
    value, grad = interpreter_errors["ce"]
    assert value < 1e-5 and grad < 1e-5
    assert interpreter_errors["ce_extreme"] < 1e-5


def test_leaky_square_reference_is_the_piecewise_formula():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    w_up = torch.tensor([[2.0, 0.0], [0.0, -2.0]])
    # pre-activations: [2, 0], [0, -2], [2, -2] -> 4 for 2, (0.5 * -2)^2 = 1 for -2; w_down sums them
    want = torch.tensor([[4.0], [1.0], [5.0]])
    assert torch.equal(leaky_relu_square_mlp_ref(x, w_up, torch.ones(1, 2)), want)


def test_softcapped_cross_entropy_reference_caps_then_takes_log_softmax():
    logits = torch.tensor([[100.0, 0.0, -100.0]])
    capped = [30 * math.tanh(v / 30) for v in (100.0, 0.0, -100.0)]
    lse = math.log(sum(math.exp(c) for c in capped))
    got = softcapped_cross_entropy_ref(logits, torch.tensor([1]), 30.0)
    assert got.item() == pytest.approx(lse - capped[1], rel=1e-6)
    assert got.dtype == torch.float32


def test_launchers_fall_back_to_references_when_asked():
    g = torch.Generator().manual_seed(1)
    x, w_up, w_down = torch.randn(3, 8, generator=g), torch.randn(5, 8, generator=g), torch.randn(8, 5, generator=g)
    got = leaky_relu_square_mlp(x, w_up, w_down, use_kernel=False)
    assert torch.equal(got, leaky_relu_square_mlp_ref(x, w_up, w_down))
    logits, targets = torch.randn(4, 9, generator=g).bfloat16(), torch.tensor([0, 3, 8, 2])
    got = softcapped_cross_entropy(logits, targets, 30.0, use_kernel=False)
    assert got.dtype == torch.float32 and torch.equal(got, softcapped_cross_entropy_ref(logits, targets, 30.0))
