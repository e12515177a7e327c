"""Document-masked causal attention: one interface, three backends, chosen once per process.

Rows hold several documents packed back to back, each starting with a BOS token; a token may attend
only to earlier tokens of its own document. The backends, fastest first:

- `fa4`: FlashAttention-4 (`flash_attn.cute`, package `flash-attn-4`) varlen kernels on Hopper. Its
  entry points are autograd Functions that torch.compile cannot trace, so the forward and backward are
  registered as torch custom ops (opaque to the compiler, with fake shapes and an autograd formula).
- `fa3`: FlashAttention-3's `flash_attn_interface.flash_attn_varlen_func`, what the reference imports.
- `sdpa`: torch's scaled_dot_product_attention with a block-diagonal causal boolean mask built from the
  document ids: exact, runs anywhere (CPU, other GPUs), slower.

Varlen kernels see the batch as one long sequence cut at `cu_seqlens` (every document start, and every
row start, so documents never cross rows). `attention_per_document_ref` is the plain exact definition
the tests hold every backend to.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from record.errors import RecordError

# The token that starts every document (SentencePiece's <s> in the record's tokenizer).
DOC_BOS_ID = 1
ATTENTION_BACKENDS = ("fa4", "fa3", "sdpa")


@dataclass(frozen=True)
class DocLayout:
    """Where the documents of a [B, T] batch start, in the forms the backends need."""

    doc_ids: Tensor  # [B, T] int32: index of each token's document within its row (SDPA's mask)
    cu_seqlens: Tensor | None  # [K + 1] int32 flattened starts then B*T, for varlen kernels
    max_seqlen: int  # an upper bound on document length (the row length)


def doc_starts(tokens: Tensor, doc_masked: bool = True) -> Tensor:
    """[B, T] bool: True where a document starts (every BOS, and every row start)."""
    col = torch.arange(tokens.shape[1], device=tokens.device)
    starts = (col == 0).expand(tokens.shape)
    return starts | (tokens == DOC_BOS_ID) if doc_masked else starts


def cu_seqlens_from_tokens(tokens: Tensor, doc_masked: bool = True, max_docs: int | None = None) -> Tensor:
    """Flattened document starts of `tokens` [B, T] followed by B*T, as int32 (varlen kernels' input).

    `max_docs` fixes the length (padding with empty documents) so the shape is static under
    torch.compile and no device sync is needed; it must be at least the number of documents, which the
    loader knows. Without it the exact list is taken (a dynamic shape and a device sync).
    """
    starts = doc_starts(tokens, doc_masked).reshape(-1)
    total = starts.numel()
    flat = torch.arange(total, device=tokens.device)
    if max_docs is None:
        begin = flat[starts]
    else:
        sentinel = torch.where(starts, flat, torch.full_like(flat, total))
        begin = torch.topk(sentinel, k=min(max_docs, total), largest=False, sorted=True).values
        if max_docs > total:
            begin = torch.cat([begin, begin.new_full((max_docs - total,), total)])
    return torch.cat([begin, begin.new_full((1,), total)]).to(torch.int32)


def doc_layout(
    tokens: Tensor, *, doc_masked: bool = True, cu_seqlens: Tensor | None = None, with_cu_seqlens: bool = True
) -> DocLayout:
    """The layout of `tokens` [B, T]; `doc_masked=False` makes each row one causal sequence (GPTQ
    calibration reads rows that way). Pass `cu_seqlens` when the loader already built it (see
    `cu_seqlens_from_tokens`); `with_cu_seqlens=False` skips it for the SDPA backend."""
    doc_ids = (torch.cumsum(doc_starts(tokens, doc_masked).to(torch.int32), dim=1) - 1).to(torch.int32)
    if cu_seqlens is None and with_cu_seqlens:
        cu_seqlens = cu_seqlens_from_tokens(tokens, doc_masked)
    return DocLayout(doc_ids=doc_ids, cu_seqlens=cu_seqlens, max_seqlen=tokens.shape[1])


def attention_per_document_ref(q: Tensor, k: Tensor, v: Tensor, doc_ids: Tensor) -> Tensor:
    """The definition: causal softmax attention run separately on every document (fp32 math).

    q [B, T, H, D], k and v [B, T, Hkv, D] -> [B, T, H, D]. Slow (a Python loop); tests only.
    """
    out = torch.zeros_like(q, dtype=torch.float32)
    groups = q.shape[2] // k.shape[2]
    for row in range(q.shape[0]):
        ids = doc_ids[row]
        for doc in torch.unique(ids).tolist():
            span = (ids == doc).nonzero().flatten()
            a, b = int(span[0]), int(span[-1]) + 1
            qd = q[row, a:b].transpose(0, 1).float()
            kd = k[row, a:b].transpose(0, 1).float().repeat_interleave(groups, dim=0)
            vd = v[row, a:b].transpose(0, 1).float().repeat_interleave(groups, dim=0)
            out[row, a:b] = F.scaled_dot_product_attention(qd, kd, vd, is_causal=True).transpose(0, 1)
    return out.to(q.dtype)


def _sdpa_doc_attention(q: Tensor, k: Tensor, v: Tensor, layout: DocLayout) -> Tensor:
    """Exact document masking with SDPA: allowed = same document and not in the future."""
    seq_len = q.shape[1]
    ids = layout.doc_ids
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=q.device).tril()
    mask = (ids[:, :, None] == ids[:, None, :]) & causal
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        attn_mask=mask[:, None],
        enable_gqa=q.shape[2] != k.shape[2],
    )
    return out.transpose(1, 2)


# --- FlashAttention-4 as opaque custom ops ---------------------------------------------------------


def _attn_call_with_known_kwargs(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call `fn`, passing only the keyword arguments its version accepts (FA4's signature drifts)."""
    accepted = inspect.signature(fn).parameters
    return fn(*args, **{key: value for key, value in kwargs.items() if key in accepted})


@functools.cache
def _fa4_ops() -> Any:
    """Register the FA4 varlen forward/backward as torch custom ops (once) and return the forward op."""
    interface = importlib.import_module("flash_attn.cute.interface")
    # FA4 4.0.0b36 passes an `aux_data` helper object that the CuTe DSL cannot turn into a JIT argument;
    # the DSL warns once per compiled kernel variant, a 600-character line in every seed log. The
    # kernels are correct regardless (tests/gpu checks them against the exact fallback), so only that
    # warning is silenced.
    warnings.filterwarnings(
        "ignore",
        message=r"Argument aux_data \(position \d+\) cannot be converted to a JitArgument",
        category=UserWarning,
    )

    @torch.library.custom_op("golfkit::fa4_varlen_fwd", mutates_args=())
    def fa4_varlen_fwd(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> tuple[Tensor, Tensor]:
        result = _attn_call_with_known_kwargs(
            interface._flash_attn_fwd,
            q,
            k,
            v,
            cu_seqlens_q=cu_seqlens,
            cu_seqlens_k=cu_seqlens,
            max_seqlen_q=max_seqlen,
            max_seqlen_k=max_seqlen,
            softmax_scale=1.0 / math.sqrt(q.shape[-1]),
            causal=True,
            return_lse=True,
        )
        return result[0], result[1]

    @fa4_varlen_fwd.register_fake
    def _(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> tuple[Tensor, Tensor]:
        total, heads, _ = q.shape
        return torch.empty_like(q), q.new_empty((heads, total), dtype=torch.float32)

    @torch.library.custom_op("golfkit::fa4_varlen_bwd", mutates_args=())
    def fa4_varlen_bwd(
        grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, cu_seqlens: Tensor, max_seqlen: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        dq, dk, dv = _attn_call_with_known_kwargs(
            interface._flash_attn_bwd,
            q,
            k,
            v,
            out,
            grad_out,
            lse,
            softmax_scale=1.0 / math.sqrt(q.shape[-1]),
            causal=True,
            cu_seqlens_q=cu_seqlens,
            cu_seqlens_k=cu_seqlens,
            max_seqlen_q=max_seqlen,
            max_seqlen_k=max_seqlen,
        )[:3]
        return dq, dk, dv

    @fa4_varlen_bwd.register_fake
    def _(grad_out, q, k, v, out, lse, cu_seqlens, max_seqlen):  # type: ignore[no-untyped-def]
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        q, k, v, cu_seqlens, max_seqlen = inputs
        ctx.save_for_backward(q, k, v, output[0], output[1], cu_seqlens)
        ctx.max_seqlen = max_seqlen

    def backward(ctx: Any, grad_out: Tensor, _grad_lse: Tensor) -> tuple:
        q, k, v, out, lse, cu_seqlens = ctx.saved_tensors
        dq, dk, dv = fa4_varlen_bwd(grad_out.contiguous(), q, k, v, out, lse, cu_seqlens, ctx.max_seqlen)
        return dq, dk, dv, None, None

    fa4_varlen_fwd.register_autograd(backward, setup_context=setup_context)
    return fa4_varlen_fwd


def _varlen_doc_attention(q: Tensor, k: Tensor, v: Tensor, layout: DocLayout, backend: str) -> Tensor:
    rows, seq_len, heads, dim = q.shape
    if layout.cu_seqlens is None:
        raise RecordError("attention", f"the {backend} backend needs cu_seqlens", "build the layout with them")
    flat = [t.reshape(rows * seq_len, t.shape[2], dim).contiguous() for t in (q, k, v)]
    if backend == "fa4":
        # Register the ops eagerly (import + custom_op must not be traced); under torch.compile they
        # were registered by the warm-up, and `torch.ops` lookups trace into one opaque node.
        if not torch.compiler.is_compiling():
            _fa4_ops()
        out = torch.ops.golfkit.fa4_varlen_fwd(*flat, layout.cu_seqlens, layout.max_seqlen)[0]
    else:
        fa3 = importlib.import_module("flash_attn_interface")
        cu, n = layout.cu_seqlens, layout.max_seqlen
        out = fa3.flash_attn_varlen_func(*flat, cu, cu, n, n, causal=True)
        out = out[0] if isinstance(out, tuple) else out
    return out.reshape(rows, seq_len, heads, dim)


def doc_causal_attention(q: Tensor, k: Tensor, v: Tensor, layout: DocLayout, backend: str = "sdpa") -> Tensor:
    """Causal attention within documents. q [B, T, H, D]; k, v [B, T, Hkv, D] (GQA) -> [B, T, H, D]."""
    if backend == "sdpa" or q.device.type != "cuda":
        return _sdpa_doc_attention(q, k, v, layout)
    return _varlen_doc_attention(q, k, v, layout, backend)


def _attn_backend_works(name: str, device: torch.device) -> bool:
    """Import the backend and run it once on a tiny input (catches missing kernels for this GPU)."""
    try:
        g = torch.Generator(device=device).manual_seed(0)
        q = torch.randn(1, 128, 2, 64, device=device, dtype=torch.bfloat16, generator=g)
        tokens = torch.zeros(1, 128, dtype=torch.long, device=device)
        tokens[0, 64] = DOC_BOS_ID
        layout = doc_layout(tokens)  # exact starts: the GPU tests exercise padded ones
        got = doc_causal_attention(q, q[:, :, :1], q[:, :, :1], layout, name)
        return bool(torch.isfinite(got).all())
    except Exception:  # any failure (import, JIT, unsupported arch) means "use the next backend"
        return False


@functools.cache
def pick_attention_backend(device_type: str, device_index: int | None = None) -> str:
    """The fastest backend that imports and runs here; called once at startup, the result logged."""
    if device_type != "cuda":
        return "sdpa"
    device = torch.device("cuda", device_index)
    if torch.cuda.get_device_capability(device)[0] >= 9:
        for name in ("fa4", "fa3"):
            if _attn_backend_works(name, device):
                return name
    return "sdpa"


def available_attention_backends(device: torch.device) -> list[str]:
    """Every backend that works on `device` (the GPU tests compare each with the definition)."""
    if device.type != "cuda":
        return ["sdpa"]
    return [name for name in ATTENTION_BACKENDS if name == "sdpa" or _attn_backend_works(name, device)]
