"""Training's two fused Triton kernels, each with the plain PyTorch `*_ref` it must match.

- `leaky_relu_square_up`: the MLP up-projection with LeakyReLU(0.5)^2 in the matmul epilogue, so the
  2048-wide pre-activation is written once instead of being read back by a separate activation kernel.
- `softcapped_cross_entropy`: cap*tanh(z/cap) followed by cross-entropy, row by row with an online
  log-sum-exp, so the softcapped fp32 logits (98k x 8192 per micro-batch) are never materialised.

Both run Triton forward and backward kernels registered as torch custom ops (so torch.compile keeps
them whole); the launchers fall back to the references when Triton cannot run (CPU without
TRITON_INTERPRET, or asked not to).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

try:  # Triton is optional: the program must import and run on a CPU box without it.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where Triton is absent
    triton = None
    tl = None

LEAKY_SLOPE = 0.5
# Largest softcap the cross-entropy kernel takes: exp(-2 * cap) must stay a normal fp32 number.
SOFTCAP_KERNEL_MAX = 40.0


def leaky_relu_square_up_ref(x: Tensor, w_up: Tensor) -> Tensor:
    """leaky_relu(x @ w_up^T, 0.5)^2, the definition."""
    return F.leaky_relu(F.linear(x, w_up), negative_slope=LEAKY_SLOPE).square()


def softcapped_cross_entropy_ref(logits: Tensor, targets: Tensor, softcap: float) -> Tensor:
    """Per-row cross-entropy of cap*tanh(logits/cap) in fp32, the definition. logits [N, V] -> [N]."""
    capped = softcap * torch.tanh(logits.float() / softcap)
    return F.cross_entropy(capped, targets, reduction="none")


def fused_kernels_available() -> bool:
    """Triton imports and has somewhere to run (a CUDA device, or its CPU interpreter).

    Deliberately uncached and side-effect free, so torch.compile can fold it to a constant."""
    if triton is None:
        return False
    return torch.cuda.is_available() or _kernels_interpreting()


if triton is not None:

    @triton.jit
    def _leaky_sq_up_fwd_kernel(
        x_ptr, w_ptr, pre_ptr, act_ptr, M, N, K,
        stride_xm, stride_xk, stride_wn, stride_wk, stride_om, stride_on,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    ):  # fmt: skip
        # Grouped tile order: consecutive programs share rows of x, so those stay in L2.
        pid = tl.program_id(0)
        tiles_m = tl.cdiv(M, BLOCK_M)
        tiles_n = tl.cdiv(N, BLOCK_N)
        group = pid // (GROUP_M * tiles_n)
        first_m = group * GROUP_M
        rows_in_group = tl.minimum(tiles_m - first_m, GROUP_M)
        tile_m = first_m + (pid % (GROUP_M * tiles_n)) % rows_in_group
        tile_n = (pid % (GROUP_M * tiles_n)) // rows_in_group
        offs_m = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + offs_k
            a = tl.load(
                x_ptr + offs_m[:, None] * stride_xm + kk[None, :] * stride_xk,
                mask=(offs_m[:, None] < M) & (kk[None, :] < K),
                other=0.0,
            )
            b = tl.load(
                w_ptr + offs_n[None, :] * stride_wn + kk[:, None] * stride_wk,
                mask=(offs_n[None, :] < N) & (kk[:, None] < K),
                other=0.0,
            )
            acc = tl.dot(a, b, acc)
        leaky = tl.where(acc > 0, acc, acc * 0.5)
        out_offsets = offs_m[:, None] * stride_om + offs_n[None, :] * stride_on
        out_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        tl.store(pre_ptr + out_offsets, acc.to(pre_ptr.dtype.element_ty), mask=out_mask)
        tl.store(act_ptr + out_offsets, (leaky * leaky).to(act_ptr.dtype.element_ty), mask=out_mask)

    @triton.jit
    def _leaky_sq_grad_kernel(grad_ptr, pre_ptr, out_ptr, numel, BLOCK: tl.constexpr):
        # d/dh leaky(h)^2 = 2h for h > 0, 2 * (0.5h) * 0.5 = 0.5h otherwise.
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        grad = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        pre = tl.load(pre_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        slope = tl.where(pre > 0, 2.0 * pre, 0.5 * pre)
        tl.store(out_ptr + offs, (grad * slope).to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _softcap_ce_fwd_kernel(
        logits_ptr, targets_ptr, loss_ptr, lse_ptr, V, stride_row, softcap,
        BLOCK_V: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0)
        base = logits_ptr + row.to(tl.int64) * stride_row
        target = tl.load(targets_ptr + row)
        # Softcapped values lie in [-cap, cap], so exp(value - cap) lies in [exp(-2 cap), 1]: a fixed
        # shift needs no running maximum (the launcher keeps cap <= SOFTCAP_KERNEL_MAX so fp32 holds it).
        sums = tl.zeros((BLOCK_V,), dtype=tl.float32)
        picked = tl.zeros((BLOCK_V,), dtype=tl.float32)
        for v0 in range(0, V, BLOCK_V):
            cols = v0 + tl.arange(0, BLOCK_V)
            z = tl.load(base + cols, mask=cols < V, other=0.0).to(tl.float32)
            # tanh(u) = 1 - 2 / (exp(2u) + 1): exact limits at +-inf, no libdevice needed.
            capped = softcap * (1.0 - 2.0 / (tl.exp(2.0 * z / softcap) + 1.0))
            sums += tl.where(cols < V, tl.exp(capped - softcap), 0.0)
            picked += tl.where(cols == target, capped, 0.0)
        lse = softcap + tl.log(tl.sum(sums, axis=0))
        target_value = tl.sum(picked, axis=0)
        tl.store(lse_ptr + row, lse)
        tl.store(loss_ptr + row, lse - target_value)

    @triton.jit
    def _softcap_ce_bwd_kernel(
        logits_ptr, targets_ptr, lse_ptr, grad_loss_ptr, grad_logits_ptr, V, stride_row, stride_grad_row, softcap,
        BLOCK_V: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0)
        base = logits_ptr + row.to(tl.int64) * stride_row
        out = grad_logits_ptr + row.to(tl.int64) * stride_grad_row
        target = tl.load(targets_ptr + row)
        lse = tl.load(lse_ptr + row)
        grad = tl.load(grad_loss_ptr + row)
        for v0 in range(0, V, BLOCK_V):
            cols = v0 + tl.arange(0, BLOCK_V)
            z = tl.load(base + cols, mask=cols < V, other=0.0).to(tl.float32)
            t = 1.0 - 2.0 / (tl.exp(2.0 * z / softcap) + 1.0)
            prob = tl.exp(softcap * t - lse)
            d_capped = (prob - tl.where(cols == target, 1.0, 0.0)) * grad
            tl.store(out + cols, (d_capped * (1.0 - t * t)).to(grad_logits_ptr.dtype.element_ty), mask=cols < V)


def _kernels_interpreting() -> bool:
    """Whether Triton runs kernels in its numpy interpreter (TRITON_INTERPRET=1 before import)."""
    return triton is not None and type(_leaky_sq_grad_kernel).__name__ == "InterpretedFunction"


def _mlp_tiles(device: torch.device) -> dict[str, int]:
    """Tile sizes: Hopper-sized on a GPU, small in the interpreter (which runs them in numpy)."""
    if device.type == "cuda" and not _kernels_interpreting():
        return {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 8, "num_stages": 3}
    return {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 2}


def _leaky_sq_up_forward(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    rows, inner = x.shape
    width = w.shape[0]
    pre = torch.empty(rows, width, device=x.device, dtype=x.dtype)
    act = torch.empty_like(pre)
    tiles = _mlp_tiles(x.device)

    def grid(meta: dict) -> tuple[int]:
        return (triton.cdiv(rows, meta["BLOCK_M"]) * triton.cdiv(width, meta["BLOCK_N"]),)

    _leaky_sq_up_fwd_kernel[grid](
        x, w, pre, act, rows, width, inner,
        x.stride(0), x.stride(1), w.stride(0), w.stride(1), pre.stride(0), pre.stride(1),
        **tiles,
    )  # fmt: skip
    return pre, act


def _leaky_sq_up_backward(grad_act: Tensor, x: Tensor, w: Tensor, pre: Tensor) -> tuple[Tensor, Tensor]:
    grad_act = grad_act.contiguous()
    grad_pre = torch.empty_like(pre)
    block = 1024
    _leaky_sq_grad_kernel[(triton.cdiv(pre.numel(), block),)](grad_act, pre, grad_pre, pre.numel(), BLOCK=block)
    return grad_pre @ w, grad_pre.t() @ x


def _ce_block(vocab: int) -> int:
    return min(4096 if not _kernels_interpreting() else 256, triton.next_power_of_2(vocab))


def _softcap_ce_forward(logits: Tensor, targets: Tensor, softcap: float) -> tuple[Tensor, Tensor]:
    rows, vocab = logits.shape
    losses = torch.empty(rows, device=logits.device, dtype=torch.float32)
    lse = torch.empty_like(losses)
    _softcap_ce_fwd_kernel[(rows,)](
        logits, targets, losses, lse, vocab, logits.stride(0), softcap, BLOCK_V=_ce_block(vocab)
    )
    return losses, lse


def _softcap_ce_backward(grad_losses: Tensor, logits: Tensor, targets: Tensor, lse: Tensor, softcap: float) -> Tensor:
    rows, vocab = logits.shape
    grad_logits = torch.empty_like(logits)
    _softcap_ce_bwd_kernel[(rows,)](
        logits, targets, lse, grad_losses.float().contiguous(), grad_logits, vocab,
        logits.stride(0), grad_logits.stride(0), softcap, BLOCK_V=_ce_block(vocab),
    )  # fmt: skip
    return grad_logits


@functools.cache
def _kernel_ops() -> tuple:
    """Register the kernels as torch custom ops (once, on first use) and return the two forward ops.

    As custom ops they are opaque to torch.compile(fullgraph=True): the compiler sees their fake
    (shape-only) versions and the autograd formula, and never traces into Triton's launch code."""

    @torch.library.custom_op("golfkit::leaky_sq_up", mutates_args=())
    def leaky_sq_up(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        return _leaky_sq_up_forward(x, w)

    @leaky_sq_up.register_fake
    def _(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        out = x.new_empty((x.shape[0], w.shape[0]))
        return out, torch.empty_like(out)

    @torch.library.custom_op("golfkit::leaky_sq_up_bwd", mutates_args=())
    def leaky_sq_up_bwd(grad_act: Tensor, x: Tensor, w: Tensor, pre: Tensor) -> tuple[Tensor, Tensor]:
        return _leaky_sq_up_backward(grad_act, x, w, pre)

    @leaky_sq_up_bwd.register_fake
    def _(grad_act: Tensor, x: Tensor, w: Tensor, pre: Tensor) -> tuple[Tensor, Tensor]:
        return torch.empty_like(x), torch.empty_like(w)

    def mlp_setup(ctx, inputs: tuple, output: tuple) -> None:  # type: ignore[no-untyped-def]
        ctx.save_for_backward(inputs[0], inputs[1], output[0])

    def mlp_backward(ctx, _grad_pre: Tensor, grad_act: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[no-untyped-def]
        x, w, pre = ctx.saved_tensors
        return leaky_sq_up_bwd(grad_act, x, w, pre)

    leaky_sq_up.register_autograd(mlp_backward, setup_context=mlp_setup)

    @torch.library.custom_op("golfkit::softcap_ce", mutates_args=())
    def softcap_ce(logits: Tensor, targets: Tensor, softcap: float) -> tuple[Tensor, Tensor]:
        return _softcap_ce_forward(logits, targets, softcap)

    @softcap_ce.register_fake
    def _(logits: Tensor, targets: Tensor, softcap: float) -> tuple[Tensor, Tensor]:
        losses = logits.new_empty((logits.shape[0],), dtype=torch.float32)
        return losses, torch.empty_like(losses)

    @torch.library.custom_op("golfkit::softcap_ce_bwd", mutates_args=())
    def softcap_ce_bwd(grad_losses: Tensor, logits: Tensor, targets: Tensor, lse: Tensor, softcap: float) -> Tensor:
        return _softcap_ce_backward(grad_losses, logits, targets, lse, softcap)

    @softcap_ce_bwd.register_fake
    def _(grad_losses: Tensor, logits: Tensor, targets: Tensor, lse: Tensor, softcap: float) -> Tensor:
        return torch.empty_like(logits)

    def ce_setup(ctx, inputs: tuple, output: tuple) -> None:  # type: ignore[no-untyped-def]
        ctx.save_for_backward(inputs[0], inputs[1], output[1])
        ctx.softcap = inputs[2]

    def ce_backward(ctx, grad_losses: Tensor, _grad_lse: Tensor) -> tuple:  # type: ignore[no-untyped-def]
        logits, targets, lse = ctx.saved_tensors
        return softcap_ce_bwd(grad_losses, logits, targets, lse, ctx.softcap), None, None

    softcap_ce.register_autograd(ce_backward, setup_context=ce_setup)
    return leaky_sq_up, softcap_ce


def register_kernel_ops() -> None:
    """Register the fused kernels as custom ops now, eagerly (a no-op where Triton cannot run)."""
    if fused_kernels_available():
        _kernel_ops()


def _kernel_op(name: str) -> Any:
    """The registered op `golfkit::<name>`. Registration (custom_op) must run eagerly: torch.compile
    cannot trace it, so GPT.__init__ registers the ops and compiled code only looks them up."""
    if not torch.compiler.is_compiling():
        _kernel_ops()
    return getattr(torch.ops.golfkit, name)


def leaky_relu_square_up(x: Tensor, w_up: Tensor, use_kernel: bool = True) -> Tensor:
    """leaky_relu(x @ w_up^T, 0.5)^2 for x [..., K], w_up [N, K]; the Triton kernel when it can run.

    Under autocast both operands are cast to the autocast dtype first, as F.linear would do."""
    if not (use_kernel and fused_kernels_available()):
        return leaky_relu_square_up_ref(x, w_up)
    dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    flat = x.reshape(-1, x.shape[-1]).to(dtype).contiguous()
    act = _kernel_op("leaky_sq_up")(flat, w_up.to(dtype).contiguous())[1]
    return act.view(*x.shape[:-1], w_up.shape[0])


def softcapped_cross_entropy(logits: Tensor, targets: Tensor, softcap: float, use_kernel: bool = True) -> Tensor:
    """Per-row fp32 losses of cap*tanh(logits/cap) against `targets`; logits [N, V], targets [N]."""
    if not (use_kernel and fused_kernels_available() and 0 < softcap <= SOFTCAP_KERNEL_MAX):
        return softcapped_cross_entropy_ref(logits, targets, softcap)
    return _kernel_op("softcap_ce")(logits.contiguous(), targets.contiguous(), float(softcap))[0]
