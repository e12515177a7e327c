"""Training's two fused Triton kernels, each with the plain PyTorch `*_ref` it must match.

- `leaky_relu_square_mlp`: the MLP, down(leaky_relu(up(x), 0.5)^2). One Triton matmul writes the
  up-projection's pre-activation and activation together; in the backward the same matmul, run on
  grad @ W_down, multiplies in the activation's slope before storing, so the 2048-wide gradient of the
  activation is never written and read back. On Hopper it loads and stores through tensor
  descriptors (TMA): 0.51 / 0.47 ms a micro-batch against 0.56 / 0.66 with pointer arithmetic
  (benchmarks/results/kernels_h200_*.json).
- `softcapped_cross_entropy`: cap*tanh(z/cap) followed by cross-entropy, row by row with an online
  log-sum-exp, so the softcapped fp32 logits (98k x 8192 per micro-batch) are never materialised.

Both run Triton forward and backward kernels registered as torch custom ops (torch.compile keeps them
whole and sees only their shapes and autograd formula); the launchers fall back to the references
when Triton cannot run (CPU without TRITON_INTERPRET, or asked not to). The MLP's gradient differs
from the reference's by bf16 rounding only: the slope multiplies the fp32 accumulator.
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


def leaky_relu_square_mlp_ref(x: Tensor, w_up: Tensor, w_down: Tensor) -> Tensor:
    """leaky_relu(x @ w_up^T, 0.5)^2 @ w_down^T, the definition."""
    return F.linear(F.leaky_relu(F.linear(x, w_up), negative_slope=LEAKY_SLOPE).square(), w_down)


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
    from triton.tools.tensor_descriptor import TensorDescriptor

    @triton.jit
    def _tile_origin(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
        # This program's output tile, first row and column. Grouped order: consecutive programs share
        # rows of a, so those stay in L2.
        pid = tl.program_id(0)
        tiles_m = tl.cdiv(M, BLOCK_M)
        tiles_n = tl.cdiv(N, BLOCK_N)
        group = pid // (GROUP_M * tiles_n)
        first_m = group * GROUP_M
        rows_in_group = tl.minimum(tiles_m - first_m, GROUP_M)
        tile_m = first_m + (pid % (GROUP_M * tiles_n)) % rows_in_group
        tile_n = (pid % (GROUP_M * tiles_n)) // rows_in_group
        return tile_m * BLOCK_M, tile_n * BLOCK_N

    @triton.jit
    def _mlp_matmul_kernel(
        a_ptr, b_ptr, pre_ptr, out_ptr, M, N, K,
        stride_am, stride_ak, stride_bk, stride_bn, stride_om, stride_on,
        GRAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        GROUP_M: tl.constexpr,
    ):  # fmt: skip
        # acc = a @ b. Forward (a = x, b = W_up^T): store acc as the pre-activation and
        # leaky(acc)^2 as the activation. GRAD (a = grad, b = W_down): store acc times
        # d/dh leaky(h)^2 at the saved pre-activation h: 2h for h > 0, else 2 (0.5h) 0.5 = 0.5h.
        off_m, off_n = _tile_origin(M, N, BLOCK_M, BLOCK_N, GROUP_M)
        offs_m = off_m + tl.arange(0, BLOCK_M)
        offs_n = off_n + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + offs_k
            a = tl.load(
                a_ptr + offs_m[:, None] * stride_am + kk[None, :] * stride_ak,
                mask=(offs_m[:, None] < M) & (kk[None, :] < K),
                other=0.0,
            )
            b = tl.load(
                b_ptr + kk[:, None] * stride_bk + offs_n[None, :] * stride_bn,
                mask=(kk[:, None] < K) & (offs_n[None, :] < N),
                other=0.0,
            )
            acc = tl.dot(a, b, acc)
        out_offsets = offs_m[:, None] * stride_om + offs_n[None, :] * stride_on
        out_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        if GRAD:
            pre = tl.load(pre_ptr + out_offsets, mask=out_mask, other=0.0).to(tl.float32)
            acc = acc * tl.where(pre > 0, 2.0 * pre, 0.5 * pre)
        else:
            tl.store(pre_ptr + out_offsets, acc.to(pre_ptr.dtype.element_ty), mask=out_mask)
            acc = tl.where(acc > 0, acc, acc * 0.5)
            acc = acc * acc
        tl.store(out_ptr + out_offsets, acc.to(out_ptr.dtype.element_ty), mask=out_mask)

    @triton.jit
    def _mlp_matmul_tma_kernel(
        a_desc, b_desc, pre_desc, out_desc, M, N, K,
        GRAD: tl.constexpr, B_ROWS_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    ):  # fmt: skip
        # _mlp_matmul_kernel through tensor descriptors (TMA loads and stores on Hopper). b is read as
        # [N, K] rows (B_ROWS_N, the forward's W_up) or as [K, N] (the backward's W_down).
        off_m, off_n = _tile_origin(M, N, BLOCK_M, BLOCK_N, GROUP_M)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            a = a_desc.load([off_m, k0])
            b = b_desc.load([off_n, k0]).T if B_ROWS_N else b_desc.load([k0, off_n])
            acc = tl.dot(a, b, acc)
        if GRAD:
            pre = pre_desc.load([off_m, off_n]).to(tl.float32)
            acc = acc * tl.where(pre > 0, 2.0 * pre, 0.5 * pre)
        else:
            pre_desc.store([off_m, off_n], acc.to(pre_desc.dtype))
            acc = tl.where(acc > 0, acc, acc * 0.5)
            acc = acc * acc
        out_desc.store([off_m, off_n], acc.to(out_desc.dtype))

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
    return triton is not None and type(_mlp_matmul_kernel).__name__ == "InterpretedFunction"


# Tiles and warps, Hopper-sized (benchmarks/kernels.py sweeps them; these were fastest on the H200
# for both uses); small in the interpreter.
MLP_TMA = True  # tensor-descriptor (TMA) loads and stores where the GPU has them (sm90+)
MLP_TILES = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 8, "num_stages": 3}
MLP_GRAD_TILES = dict(MLP_TILES)


@functools.cache
def _has_tma(device_index: int | None) -> bool:
    """Whether the GPU has tensor-memory-access units (sm90+); asked once per device."""
    return torch.cuda.get_device_capability(device_index)[0] >= 9


def _mlp_matmul(a: Tensor, b: Tensor, pre: Tensor, out: Tensor, grad: bool) -> None:
    """out (and, forward, pre) from a [M, K] @ b [K, N]; see _mlp_matmul_kernel."""
    rows, inner = a.shape
    width = b.shape[1]
    gpu = a.device.type == "cuda" and not _kernels_interpreting()
    tiles = (
        (MLP_GRAD_TILES if grad else MLP_TILES) if gpu else {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 2}
    )
    grid = (triton.cdiv(rows, tiles["BLOCK_M"]) * triton.cdiv(width, tiles["BLOCK_N"]),)
    if MLP_TMA and (not gpu or _has_tma(a.device.index)):
        block_m, block_n, block_k = tiles["BLOCK_M"], tiles["BLOCK_N"], tiles["BLOCK_K"]
        rows_n = b.stride(0) == 1  # b is W_up^T: read W_up's [N, K] rows
        b_desc = TensorDescriptor.from_tensor(
            b.t() if rows_n else b, [block_n, block_k] if rows_n else [block_k, block_n]
        )
        descs = [TensorDescriptor.from_tensor(t, [block_m, block_n]) for t in (pre, out)]
        _mlp_matmul_tma_kernel[grid](
            TensorDescriptor.from_tensor(a, [block_m, block_k]), b_desc, *descs, rows, width, inner,
            GRAD=grad, B_ROWS_N=rows_n, **tiles,
        )  # fmt: skip
        return
    _mlp_matmul_kernel[grid](
        a, b, pre, out, rows, width, inner,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1),
        GRAD=grad, **tiles,
    )  # fmt: skip


def _mlp_forward(x: Tensor, w_up: Tensor, w_down: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    pre = x.new_empty((x.shape[0], w_up.shape[0]))
    act = torch.empty_like(pre)
    _mlp_matmul(x, w_up.t(), pre, act, grad=False)
    return act @ w_down.t(), pre, act


def _mlp_backward(
    grad_out: Tensor, x: Tensor, w_up: Tensor, w_down: Tensor, pre: Tensor, act: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    grad_pre = torch.empty_like(pre)
    _mlp_matmul(grad_out, w_down, pre, grad_pre, grad=True)
    return grad_pre @ w_up, grad_pre.t() @ x, grad_out.t() @ act


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
def _kernel_ops() -> None:
    """Register the kernels as torch custom ops `golfkit::mlp` and `golfkit::softcap_ce` (once).

    As custom ops they are opaque to torch.compile(fullgraph=True): the compiler sees their fake
    (shape-only) versions and the autograd formula, and never traces into Triton's launch code. The
    saved tensors the backward needs (pre-activation and activation; log-sum-exp) are extra outputs."""

    @torch.library.custom_op("golfkit::mlp", mutates_args=())
    def mlp(x: Tensor, w_up: Tensor, w_down: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return _mlp_forward(x, w_up, w_down)

    @mlp.register_fake
    def _(x: Tensor, w_up: Tensor, w_down: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        pre = x.new_empty((x.shape[0], w_up.shape[0]))
        return x.new_empty((x.shape[0], w_down.shape[0])), pre, torch.empty_like(pre)

    @torch.library.custom_op("golfkit::mlp_bwd", mutates_args=())
    def mlp_bwd(
        grad_out: Tensor, x: Tensor, w_up: Tensor, w_down: Tensor, pre: Tensor, act: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        return _mlp_backward(grad_out, x, w_up, w_down, pre, act)

    @mlp_bwd.register_fake
    def _(grad_out, x, w_up, w_down, pre, act):  # type: ignore[no-untyped-def]
        return torch.empty_like(x), torch.empty_like(w_up), torch.empty_like(w_down)

    def mlp_setup(ctx, inputs: tuple, output: tuple) -> None:  # type: ignore[no-untyped-def]
        ctx.save_for_backward(*inputs, output[1], output[2])

    def mlp_backward(ctx, grad_out: Tensor, _pre: Tensor, _act: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[no-untyped-def]
        return mlp_bwd(grad_out.contiguous(), *ctx.saved_tensors)

    mlp.register_autograd(mlp_backward, setup_context=mlp_setup)

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


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The autocast dtype where autocast is on (the kernels cast as F.linear would), else x's."""
    on = torch.is_autocast_enabled(x.device.type)
    return torch.get_autocast_dtype(x.device.type) if on else x.dtype


def leaky_relu_square_mlp(x: Tensor, w_up: Tensor, w_down: Tensor, use_kernel: bool = True) -> Tensor:
    """leaky_relu(x @ w_up^T, 0.5)^2 @ w_down^T for x [..., D], w_up [F, D], w_down [D, F]; the
    Triton kernel when it can run."""
    if not (use_kernel and fused_kernels_available()):
        return leaky_relu_square_mlp_ref(x, w_up, w_down)
    dtype = _compute_dtype(x)
    flat = x.reshape(-1, x.shape[-1]).to(dtype).contiguous()
    out = _kernel_op("mlp")(flat, w_up.to(dtype).contiguous(), w_down.to(dtype).contiguous())[0]
    return out.view(*x.shape[:-1], w_down.shape[0])


def softcapped_cross_entropy(logits: Tensor, targets: Tensor, softcap: float, use_kernel: bool = True) -> Tensor:
    """Per-row fp32 losses of cap*tanh(logits/cap) against `targets`; logits [N, V], targets [N]."""
    if not (use_kernel and fused_kernels_available() and 0 < softcap <= SOFTCAP_KERNEL_MAX):
        return softcapped_cross_entropy_ref(logits, targets, softcap)
    return _kernel_op("softcap_ce")(logits.contiguous(), targets.contiguous(), float(softcap))[0]
