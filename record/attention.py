"""Document-masked causal attention: one interface, four backends, chosen once per process.

Rows hold several documents packed back to back, each starting with a BOS token; a token may attend
only to earlier tokens of its own document. The backends, fastest first:

- `fa4`: FlashAttention-4 (`flash_attn.cute`, package `flash-attn-4`) varlen kernels on Hopper. Its
  entry points are autograd Functions that torch.compile cannot trace, so the forward and backward are
  registered as torch custom ops (opaque to the compiler, with fake shapes and an autograd formula).
- `fa3`: FlashAttention-3's `flash_attn_interface.flash_attn_varlen_func`, what the reference imports.
- `torch`: PyTorch's own `torch.nn.attention.varlen.varlen_attn` (torch >= 2.10, CUDA): no extra
  install, runs on Ampere too.
- `sdpa`: torch's scaled_dot_product_attention with a block-diagonal causal boolean mask built from the
  document ids: exact, runs anywhere (CPU, other GPUs), slower.

Every import happens once, eagerly, when the backend is picked (`attention_backend_report`): compiled
code only calls functions already loaded, so nothing is imported inside a torch.compile trace. The pick
logs which backend runs and, for each faster one refused, why.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from record.errors import RecordError

# The token that starts every document (SentencePiece's <s> in the record's tokenizer).
DOC_BOS_ID = 1
ATTENTION_BACKENDS = ("fa4", "fa3", "torch", "sdpa")  # fastest first
# Backends whose kernels exist only on CUDA: a model moved to the CPU computes the same attention with SDPA.
CUDA_ONLY_BACKENDS = ("fa4", "torch")


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


def _known_kwargs(fn: Any, **kwargs: Any) -> dict[str, Any]:
    """The keyword arguments `fn`'s version accepts (FA4's signature drifts between betas); read once,
    at registration, so no call pays for `inspect`."""
    accepted = inspect.signature(fn).parameters
    return {key: value for key, value in kwargs.items() if key in accepted}


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
    fwd_flags = _known_kwargs(interface._flash_attn_fwd, causal=True, return_lse=True)
    bwd_takes_max = "max_seqlen_q" in _known_kwargs(interface._flash_attn_bwd, max_seqlen_q=0)

    @torch.library.custom_op("golfkit::fa4_varlen_fwd", mutates_args=())
    def fa4_varlen_fwd(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> tuple[Tensor, Tensor]:
        seqs = {"cu_seqlens_q": cu_seqlens, "cu_seqlens_k": cu_seqlens, "max_seqlen_q": max_seqlen}
        result = interface._flash_attn_fwd(
            q, k, v, **seqs, max_seqlen_k=max_seqlen, softmax_scale=1.0 / math.sqrt(q.shape[-1]), **fwd_flags
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
        seqs = {"cu_seqlens_q": cu_seqlens, "cu_seqlens_k": cu_seqlens}
        seqs |= {"max_seqlen_q": max_seqlen, "max_seqlen_k": max_seqlen} if bwd_takes_max else {}
        dq, dk, dv = interface._flash_attn_bwd(
            q, k, v, out, grad_out, lse, softmax_scale=1.0 / math.sqrt(q.shape[-1]), causal=True, **seqs
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


# --- FlashAttention-3 and PyTorch's varlen kernel: loaded eagerly, called from compiled code ---------

# name -> the loaded callable (q, k, v, cu_seqlens, max_seqlen) -> out. Filled by `load_attention_backend`
# outside any trace; compiled code only reads it (a dict lookup Dynamo guards on), never imports.
_LOADED_VARLEN: dict[str, Callable[[Tensor, Tensor, Tensor, Tensor, int], Tensor]] = {}


def _fa3_varlen() -> Callable[[Tensor, Tensor, Tensor, Tensor, int], Tensor]:
    module = importlib.import_module("flash_attn_interface")
    varlen = module.flash_attn_varlen_func

    def call(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
        out = varlen(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, causal=True)
        return out[0] if isinstance(out, tuple) else out  # some FA3 versions also return the LSE

    return call


def _torch_varlen() -> Callable[[Tensor, Tensor, Tensor, Tensor, int], Tensor]:
    """torch.nn.attention.varlen.varlen_attn. Its keywords differ by release: torch 2.11 has no
    `enable_gqa` (the KV heads are repeated here) and takes causality as `window_size=(-1, 0)`."""
    varlen = importlib.import_module("torch.nn.attention.varlen").varlen_attn
    accepted = inspect.signature(varlen).parameters
    causal = {"is_causal": True} if "is_causal" in accepted else {"window_size": (-1, 0)}
    native_gqa = "enable_gqa" in accepted

    def call(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
        gqa = q.shape[1] != k.shape[1]
        if gqa and not native_gqa:
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        extra = {"enable_gqa": True} if gqa and native_gqa else {}
        return varlen(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, **causal, **extra)

    return call


def load_attention_backend(name: str) -> None:
    """Import a backend's kernels (once). Raises whatever the import raises: the pick reports it."""
    if name == "fa4":
        _fa4_ops()
    elif name in ("fa3", "torch") and name not in _LOADED_VARLEN:
        _LOADED_VARLEN[name] = _fa3_varlen() if name == "fa3" else _torch_varlen()


def _varlen_doc_attention(q: Tensor, k: Tensor, v: Tensor, layout: DocLayout, backend: str) -> Tensor:
    rows, seq_len, heads, dim = q.shape
    if layout.cu_seqlens is None:
        raise RecordError("attention", f"the {backend} backend needs cu_seqlens", "build the layout with them")
    # Eager callers may come here first; under torch.compile the pick has already loaded the backend.
    if not torch.compiler.is_compiling():
        load_attention_backend(backend)
    flat = [t.reshape(rows * seq_len, t.shape[2], dim).contiguous() for t in (q, k, v)]
    if backend == "fa4":
        out = torch.ops.golfkit.fa4_varlen_fwd(*flat, layout.cu_seqlens, layout.max_seqlen)[0]
    else:
        out = _LOADED_VARLEN[backend](*flat, layout.cu_seqlens, layout.max_seqlen)
    return out.reshape(rows, seq_len, heads, dim)


def uses_varlen(backend: str, device_type: str) -> bool:
    """Whether `backend` on this device reads cu_seqlens (else SDPA's document-id mask is used)."""
    return backend != "sdpa" and (device_type == "cuda" or backend not in CUDA_ONLY_BACKENDS)


def doc_causal_attention(q: Tensor, k: Tensor, v: Tensor, layout: DocLayout, backend: str = "sdpa") -> Tensor:
    """Causal attention within documents. q [B, T, H, D]; k, v [B, T, Hkv, D] (GQA) -> [B, T, H, D]."""
    if not uses_varlen(backend, q.device.type):
        return _sdpa_doc_attention(q, k, v, layout)
    return _varlen_doc_attention(q, k, v, layout, backend)


# --- the pick: the fastest backend that imports and computes the definition here ---------------------


@dataclass(frozen=True)
class BackendReport:
    """The backend that runs, and for each faster one the one-line reason it was refused."""

    name: str
    refused: tuple[tuple[str, str], ...] = ()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def _backend_refusal(name: str, device: torch.device) -> str | None:
    """Why `name` cannot run on `device` (None: it runs). It is imported, then run once on a tiny
    two-document input and compared with the definition, so a kernel that loads but computes wrong
    (or has no code for this GPU) is refused too."""
    if device.type != "cuda":
        return "needs a CUDA GPU"
    major, minor = torch.cuda.get_device_capability(device)
    if name == "fa4" and major < 9:
        return f"needs compute capability 9.0 or newer (this GPU: {major}.{minor})"
    if name == "fa3" and major != 9:
        return f"FlashAttention-3 runs on Hopper (9.x) only (this GPU: {major}.{minor})"
    try:
        load_attention_backend(name)
        g = torch.Generator(device=device).manual_seed(0)
        q, k, v = (torch.randn(1, 128, h, 64, device=device, dtype=torch.bfloat16, generator=g) for h in (4, 2, 2))
        tokens = torch.zeros(1, 128, dtype=torch.long, device=device)
        tokens[0, 64] = DOC_BOS_ID
        layout = doc_layout(tokens)
        got = doc_causal_attention(q, k, v, layout, name).float()
        want = attention_per_document_ref(q, k, v, layout.doc_ids).float()
    except ModuleNotFoundError as exc:
        return f"not installed (no module {exc.name!r})"
    except Exception as exc:  # any failure (JIT, missing arch, driver) refuses this backend
        return f"failed a test run: {_first_line(exc)}"
    error = float((got - want).abs().max())
    if not error < 5e-2:
        return f"differs from the definition on a test input (max abs error {error:.3g})"
    return None


@functools.cache
def attention_backend_report(device_type: str, device_index: int | None = None) -> BackendReport:
    """Try the backends fastest first on this device; called once at startup, the result logged."""
    refused = []
    for name in ATTENTION_BACKENDS[:-1]:
        reason = _backend_refusal(name, torch.device(device_type, device_index))
        if reason is None:
            return BackendReport(name, tuple(refused))
        refused.append((name, reason))
    return BackendReport("sdpa", tuple(refused))


def pick_attention_backend(device_type: str, device_index: int | None = None) -> str:
    """The fastest backend that runs here (see `attention_backend_report`)."""
    return attention_backend_report(device_type, device_index).name
