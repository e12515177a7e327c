"""The training step's hand-written kernels alone, at one rank's micro-batch (98,304 tokens): the fused
MLP (tile sizes, tensor-descriptor or pointer loads) and softcapped cross-entropy of record/kernels.py,
and FA4 with its 4 KV heads as they are (GQA inside the kernel) or repeated to the 8 query heads.

Each timing is forward + backward unless named otherwise: triton.testing.do_bench's median. Give
`--baseline` an older record/kernels.py (with `leaky_relu_square_up` and `softcapped_cross_entropy`)
for an A/B of the whole MLP and the cross-entropy in one process. Needs a CUDA device with Triton; FA4 is skipped
where it does not import.

Usage:
  python benchmarks/kernels.py --out benchmarks/results/kernels_h200.json
  python benchmarks/kernels.py --baseline OLD_KERNELS.py --data DATA_DIR   # real documents for FA4
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from record import kernels
from record.attention import DOC_BOS_ID, _known_kwargs, cu_seqlens_from_tokens
from record.data import list_shards, read_shard

ROWS, SEQ_LEN, DIM, HIDDEN, VOCAB = 48, 2048, 512, 2048, 8192
HEADS, KV_HEADS, HEAD_DIM = 8, 4, 64
SOFTCAP = 30.0
MLP_SWEEP = [  # (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages), GROUP_M 8
    (128, 128, 64, 8, 3),
    (128, 128, 64, 8, 4),
    (128, 256, 64, 8, 3),
    (128, 256, 64, 8, 4),
    (256, 128, 64, 8, 3),
    (128, 256, 64, 4, 3),
    (128, 128, 128, 8, 3),
]


def bench(fn: Callable[[], object]) -> float:
    import triton.testing

    return round(float(triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median")), 4)


def load_baseline(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("kernels_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mlp_section(baseline: ModuleType | None) -> dict:
    g = torch.Generator(device="cuda").manual_seed(0)
    tokens = ROWS * SEQ_LEN
    x = torch.randn(tokens, DIM, device="cuda", generator=g).bfloat16().requires_grad_()
    w_up = (torch.randn(HIDDEN, DIM, device="cuda", generator=g) / DIM**0.5).bfloat16().requires_grad_()
    w_down = (torch.randn(DIM, HIDDEN, device="cuda", generator=g) / HIDDEN**0.5).bfloat16().requires_grad_()
    grad = torch.randn(tokens, DIM, device="cuda", generator=g).bfloat16()
    out: dict = {"shape": f"x [{tokens}, {DIM}], W_up [{HIDDEN}, {DIM}], W_down [{DIM}, {HIDDEN}]"}
    out["fused_ms"] = bench(
        lambda: torch.autograd.grad(kernels.leaky_relu_square_mlp(x, w_up, w_down), (x, w_up, w_down), grad)
    )
    if baseline is not None:
        old = lambda: F.linear(baseline.leaky_relu_square_up(x, w_up), w_down)  # noqa: E731
        out["baseline_ms"] = bench(lambda: torch.autograd.grad(old(), (x, w_up, w_down), grad))
        new_grads = torch.autograd.grad(kernels.leaky_relu_square_mlp(x, w_up, w_down), (x, w_up, w_down), grad)
        old_grads = torch.autograd.grad(old(), (x, w_up, w_down), grad)
        out["max_rel_grad_difference"] = max(
            float((a.float() - b.float()).abs().max() / b.float().abs().max())
            for a, b in zip(new_grads, old_grads, strict=True)
        )
    # Parts: the up matmul (forward), and its gradient form (grad @ W_down times the slope).
    pre = torch.empty(tokens, HIDDEN, device="cuda", dtype=torch.bfloat16)
    act = torch.empty_like(pre)
    x_, up_t, down = x.detach(), w_up.detach().t(), w_down.detach()
    out["cublas_up_mm_ms"] = bench(lambda: x_ @ up_t)
    out["cublas_grad_mm_ms"] = bench(lambda: grad @ down)
    out["default_parts_ms"] = round(
        bench(lambda: kernels._mlp_matmul(x_, up_t, pre, act, grad=False))
        + bench(lambda: kernels._mlp_matmul(grad, down, pre, act, grad=True)),
        4,
    )
    saved = (kernels.MLP_TMA, dict(kernels.MLP_TILES), dict(kernels.MLP_GRAD_TILES))
    sweep = []
    for tma in (True, False):
        kernels.MLP_TMA = tma
        for block_m, block_n, block_k, warps, stages in MLP_SWEEP:
            tiles = {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": 8}
            tiles |= {"num_warps": warps, "num_stages": stages}
            kernels.MLP_TILES.clear()
            kernels.MLP_TILES.update(tiles)
            kernels.MLP_GRAD_TILES.clear()
            kernels.MLP_GRAD_TILES.update(tiles)
            row: dict = {"tma": tma, "tiles": tiles}
            for name, a, b, target, is_grad in (("up_ms", x_, up_t, act, False), ("grad_ms", grad, down, act, True)):
                try:
                    row[name] = bench(lambda a=a, b=b, t=target, g=is_grad: kernels._mlp_matmul(a, b, pre, t, grad=g))
                except Exception as exc:  # a config the compiler refuses (shared memory) is reported, not fatal
                    row[name] = f"failed: {str(exc).splitlines()[0][:120]}"
            sweep.append(row)
            print("mlp", row, flush=True)
    kernels.MLP_TMA, tiles_up, tiles_grad = saved
    kernels.MLP_TILES.clear()
    kernels.MLP_TILES.update(tiles_up)
    kernels.MLP_GRAD_TILES.clear()
    kernels.MLP_GRAD_TILES.update(tiles_grad)
    out["tile_sweep"] = sweep
    best = {}
    for tma in (True, False):
        rows = [r for r in sweep if r["tma"] is tma]
        up = min((r for r in rows if isinstance(r["up_ms"], float)), key=lambda r: r["up_ms"], default=None)
        gr = min((r for r in rows if isinstance(r["grad_ms"], float)), key=lambda r: r["grad_ms"], default=None)
        if up and gr:
            best[str(tma)] = {"up": up["tiles"], "grad": gr["tiles"], "ms": round(up["up_ms"] + gr["grad_ms"], 4)}
    choice = min(best, key=lambda k: best[k]["ms"])
    out["best"] = {"tma": choice == "True", **best[choice], "by_tma": best}
    return out


def ce_section(baseline: ModuleType | None) -> dict:
    g = torch.Generator(device="cuda").manual_seed(1)
    tokens = ROWS * SEQ_LEN
    logits = torch.randn(tokens, VOCAB, device="cuda", generator=g).bfloat16().requires_grad_()
    targets = torch.randint(0, VOCAB, (tokens,), device="cuda", generator=g)
    out: dict = {"shape": f"logits [{tokens}, {VOCAB}]"}
    fused = kernels.softcapped_cross_entropy
    out["fused_ms"] = bench(lambda: torch.autograd.grad(fused(logits, targets, SOFTCAP).mean(), logits))
    if baseline is not None:
        old = baseline.softcapped_cross_entropy
        out["baseline_ms"] = bench(lambda: torch.autograd.grad(old(logits, targets, SOFTCAP).mean(), logits))
    return out


def micro_batch_tokens(data: Path | None) -> torch.Tensor:
    """One micro-batch [48, 2048] of real tokens (for their document boundaries), or synthetic BOS-started
    documents of 560-720 tokens as in benchmarks/train_step.py."""
    if data is not None:
        shards = list_shards(str(data / "fineweb_train_*.bin")) or list_shards(str(data / "*/*/fineweb_train_*.bin"))
        if not shards:
            raise SystemExit(f"--data {data}: no fineweb_train_*.bin shards (a `golfkit data prepare` folder)")
        shard = read_shard(shards[0])
        return torch.from_numpy(shard[: ROWS * SEQ_LEN].astype("int64")).view(ROWS, SEQ_LEN)
    g = torch.Generator().manual_seed(2)
    flat = torch.randint(2, VOCAB, (ROWS * SEQ_LEN,), generator=g)
    at = 0
    while at < flat.numel():
        flat[at] = DOC_BOS_ID
        at += int(torch.randint(560, 721, (1,), generator=g))
    return flat.view(ROWS, SEQ_LEN)


def fa4_section(data: Path | None) -> dict:
    try:
        import flash_attn.cute.interface as fa4
    except Exception as exc:
        return {"skipped": f"flash_attn.cute does not import: {exc}"}
    tokens = micro_batch_tokens(data).cuda()
    cu = cu_seqlens_from_tokens(tokens)
    lengths = (cu[1:] - cu[:-1]).float()
    total = ROWS * SEQ_LEN
    g = torch.Generator(device="cuda").manual_seed(3)
    q = torch.randn(total, HEADS, HEAD_DIM, device="cuda", generator=g, dtype=torch.bfloat16)
    k = torch.randn(total, KV_HEADS, HEAD_DIM, device="cuda", generator=g, dtype=torch.bfloat16)
    v = torch.randn(total, KV_HEADS, HEAD_DIM, device="cuda", generator=g, dtype=torch.bfloat16)
    dout = torch.randn_like(q)
    seqs = {"cu_seqlens_q": cu, "cu_seqlens_k": cu, "max_seqlen_q": SEQ_LEN, "max_seqlen_k": SEQ_LEN}
    bwd_seqs = _known_kwargs(fa4._flash_attn_bwd, **seqs)
    scale = 1.0 / math.sqrt(HEAD_DIM)
    groups = HEADS // KV_HEADS

    def forward(k_: torch.Tensor, v_: torch.Tensor) -> tuple:
        return fa4._flash_attn_fwd(q, k_, v_, **seqs, softmax_scale=scale, causal=True, return_lse=True)[:2]

    def backward_gqa() -> tuple:
        return fa4._flash_attn_bwd(q, k, v, o, dout, lse, softmax_scale=scale, causal=True, **bwd_seqs)[:3]

    def backward_repeated() -> tuple:
        k_rep, v_rep = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        dq, dk, dv = fa4._flash_attn_bwd(q, k_rep, v_rep, o, dout, lse, softmax_scale=scale, causal=True, **bwd_seqs)[
            :3
        ]
        fold = (total, KV_HEADS, groups, HEAD_DIM)
        return dq, dk.view(fold).sum(2), dv.view(fold).sum(2)

    o, lse = forward(k, v)
    out = {
        "documents": int(lengths.numel()),
        "mean_document_tokens": round(float(lengths.mean()), 1),
        "forward_gqa_ms": bench(lambda: forward(k, v)),
        "forward_repeated_kv_ms": bench(
            lambda: forward(k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1))
        ),
        "backward_gqa_ms": bench(backward_gqa),
        "backward_repeated_kv_ms": bench(backward_repeated),
    }
    a, b = backward_gqa(), backward_repeated()
    out["max_abs_grad_difference"] = max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b, strict=True))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, default=None, help="an older record/kernels.py to A/B against")
    parser.add_argument("--data", type=Path, default=None, help="shard folder: FA4 on real document lengths")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default: printed only)")
    args = parser.parse_args()
    if not torch.cuda.is_available() or not kernels.fused_kernels_available():
        print("benchmarks/kernels.py needs a CUDA device with Triton", file=sys.stderr)
        return 2
    baseline = load_baseline(args.baseline) if args.baseline else None
    started = time.time()
    result = {
        "benchmark": "kernels",
        "command": " ".join(sys.argv),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": __import__("triton").__version__,
        "mlp": mlp_section(baseline),
        "softcapped_cross_entropy": ce_section(baseline),
        "fa4": fa4_section(args.data),
    }
    result["seconds"] = round(time.time() - started, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
