"""Post-training quantization: Hessians, GPTQ with SDClip scales, LQER corrections, int8 gates.

The trained fp32 state dict becomes a `QuantizedModel`: a flat dict of small integer tensors plus fp16
scales that `record.artifact` compresses into the submitted file. Every matrix the model multiplies by is
quantized with GPTQ (6-bit blocks, 7-bit tied embedding) against the Hessian of its own inputs, gathered
from training data through the model's `calib_capture` hook; the matrices GPTQ hurts most get a rank-4
correction (LQER); the attention-gate weights get int8 rows; small tensors stay fp16. The maths follows
PR #1855 (docs/quant.md §1-4) so the reference's golden GPTQ outputs (tests/unit/test_quant.py) match
bit for bit.
Bank tensors are split into per-layer matrices ("unbanked") because GPTQ, the routing rules and the
per-group compressor all work per matrix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from record.config import Config
from record.errors import RecordError
from record.logkeys import fmt_gptq_collected, fmt_gptq_collecting

GPTQ_BLOCK_SIZE = 128  # columns updated together; the reference's value
GPTQ_DAMPING = 0.01  # added to diag(H) as a fraction of its mean: keeps the Cholesky stable
PASSTHROUGH_MAX_NUMEL = 65_536  # tensors this small are kept in fp16: quantizing them saves little
GATE_MIN_NUMEL, GATE_MAX_NUMEL = 32, 8_192  # the attention gate (heads x gate_window) fits here
GATE_CLIP = 127
LQER_ASYM_A_LEVELS = (-2, 1)  # 2-bit A with one scale: max|A| maps to 1.5, the top level clips to 1
LQER_ASYM_B_LEVELS = (-8, 7)  # int4 B with one scale per group; max|g| maps to 7.5

# Tags recorded per original tensor name; dequantization dispatches on them.
TAG_PASSTHROUGH = "passthrough (float16)"
TAG_PASSTHROUGH_RAW = "passthrough"
TAG_GATE = "gate_int8_row"
TAG_LQER_ASYM = "+lqer_asym"
TAG_LQER_SYM = "+lqer"

# Unbanked per-layer matrix names: bank -> (suffix of the first L slices, suffix of the second L slices).
BANK_LAYOUT: dict[str, tuple[str, str | None]] = {
    "qo_bank": ("attn.c_q.weight", "attn.proj.weight"),
    "kv_bank": ("attn.c_k.weight", "attn.c_v.weight"),
    "mlp_up_bank": ("mlp.fc.weight", None),
    "mlp_down_bank": ("mlp.proj.weight", None),
}

# calib_capture site -> the unbanked matrices whose input it is (c_q/c_k/c_v share one Hessian).
CALIB_SITE_TARGETS: dict[str, tuple[str, ...]] = {
    "attn_in": ("attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight"),
    "proj_in": ("attn.proj.weight",),
    "mlp_in": ("mlp.fc.weight",),
    "down_in": ("mlp.proj.weight",),
}
HEAD_SITE, HEAD_TARGET = "head_in", "tok_emb.weight"


@dataclass
class QuantizedModel:
    """What the artifact stores: quantized tensors by storage key, and per original tensor its tag
    (how it was quantized), dtype (restored on load) and shape.

    Storage keys are the original name plus a suffix: `.q`/`.scale` (GPTQ), `.gq`/`.gs` (gate),
    `.lqA_a`/`.lqAs_a`/`.lqB_a`/`.lqBs_a` (asymmetric LQER) or `.lqA`/`.lqAs`/`.lqB`/`.lqBs` (symmetric),
    and no suffix for passthrough tensors.
    """

    tensors: dict[str, Tensor]
    tags: dict[str, str]
    dtypes: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    num_layers: int
    lqer_errors: dict[str, float] = field(default_factory=dict)  # ||W - Q s||_F of every GPTQ tensor


# ---------------------------------------------------------------- bank <-> per-layer names


def unbank_state_dict(state_dict: Mapping[str, Tensor], num_layers: int) -> dict[str, Tensor]:
    """Split the 4 banks into `blocks.{i}.<matrix>` fp32 CPU tensors; copy every other tensor to CPU.

    A dict that is already unbanked passes through unchanged (apart from the CPU copy).
    """
    flat: dict[str, Tensor] = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu()
        if name not in BANK_LAYOUT:
            flat[name] = tensor
            continue
        first, second = BANK_LAYOUT[name]
        expected = num_layers * (2 if second else 1)
        if tensor.shape[0] != expected:
            raise RecordError(
                f"quant.unbank {name}",
                f"has {tensor.shape[0]} slices, expected {expected} for {num_layers} layers",
                "quantize with the Config the model was built from",
            )
        for i in range(num_layers):
            flat[f"blocks.{i}.{first}"] = tensor[i].float().clone()
            if second:
                flat[f"blocks.{i}.{second}"] = tensor[num_layers + i].float().clone()
    return flat


def rebank_state_dict(flat: Mapping[str, Tensor], num_layers: int) -> dict[str, Tensor]:
    """Inverse of `unbank_state_dict`: stack the per-layer matrices back into fp32 banks."""
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    for bank, (first, second) in BANK_LAYOUT.items():
        suffixes = [first] + ([second] if second else [])
        names = [f"blocks.{i}.{suffix}" for suffix in suffixes for i in range(num_layers)]
        if not any(n in flat for n in names):
            continue
        missing = [n for n in names if n not in flat]
        if missing:
            raise RecordError("quant.rebank", f"missing {missing[0]} for {bank}", "the artifact is incomplete")
        out[bank] = torch.stack([flat[n].float() for n in names])
        used.update(names)
    for name, tensor in flat.items():
        if name not in used:
            out[name] = tensor
    return out


# ---------------------------------------------------------------- Hessians


def collect_hessians(model: torch.nn.Module, batches: Iterable[Tensor | tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    """Sum XᵀX of every quantized matrix's input over the calibration batches (docs/quant.md §1).

    The model runs in eval mode without document masking (plain causal, as the reference calibrates)
    and calls `calib_capture(layer, site, x)` at each block application, so looped layers add one
    term per pass. Each sum is divided by the number of batches only; GPTQ is invariant to the scale.
    c_q, c_k and c_v share one tensor (they read the same input).
    """
    sums: dict[tuple[int, str], Tensor] = {}

    def capture(layer: int, site: str, x: Tensor) -> None:
        flat = x.detach().reshape(-1, x.shape[-1]).float()
        key = (layer, site)
        if key not in sums:
            sums[key] = torch.zeros(flat.shape[1], flat.shape[1], dtype=torch.float32, device=flat.device)
        sums[key].addmm_(flat.T, flat)

    was_training = model.training
    model.eval()
    model.calib_capture = capture
    count = 0
    try:
        with torch.no_grad():
            for batch in batches:
                inputs = batch[0] if isinstance(batch, tuple | list) else batch
                model.forward_logits(inputs, doc_masked=False)
                count += 1
    finally:
        model.calib_capture = None
        model.train(was_training)
    if count == 0:
        raise RecordError("quant.collect_hessians", "no calibration batches", "set GPTQ_CALIBRATION_BATCHES >= 1")
    hessians: dict[str, Tensor] = {}
    for (layer, site), total in sorted(sums.items()):
        h = (total / count).cpu()
        if site == HEAD_SITE:
            hessians[HEAD_TARGET] = h
        elif site in CALIB_SITE_TARGETS:
            for target in CALIB_SITE_TARGETS[site]:
                hessians[f"blocks.{layer}.{target}"] = h
    return hessians


# ---------------------------------------------------------------- quantizers


def sdclip_row_scales(weight: Tensor, clip_sigmas: float, clip_range: int) -> Tensor:
    """fp16 per-row step so that ±clip_range steps span ±clip_sigmas standard deviations of the row."""
    return (clip_sigmas * weight.float().std(dim=1) / clip_range).clamp_min(1e-10).to(torch.float16)


def gptq_quantize_weight(
    weight: Tensor, hessian: Tensor, clip_sigmas: float, bits: int, block_size: int = GPTQ_BLOCK_SIZE
) -> tuple[Tensor, Tensor]:
    """GPTQ with act-order and SDClip row scales: returns (int8 codes [rows, cols], fp16 scales [rows]).

    Columns are quantized in order of decreasing Hessian diagonal; each column's rounding error is
    pushed onto the not-yet-quantized columns through the upper Cholesky factor of H⁻¹, so the
    output error XᵀX-weighted is far below round-to-nearest at the same scales.
    """
    w = weight.detach().float().cpu()
    h = hessian.detach().float().cpu().clone()
    rows, cols = w.shape
    clip_range = 2 ** (bits - 1) - 1
    scales = sdclip_row_scales(w, clip_sigmas, clip_range)  # from the untouched row, dead columns included
    step = scales.float()
    work = w.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    work[:, dead] = 0.0
    h.diagonal().add_(GPTQ_DAMPING * h.diagonal().mean())
    order = torch.argsort(torch.diag(h), descending=True)
    inverse_order = torch.argsort(order)
    work = work[:, order]
    h = h[order][:, order]
    upper = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    codes = torch.zeros(rows, cols, dtype=torch.float32)
    for start in range(0, cols, block_size):
        stop = min(start + block_size, cols)
        block = work[:, start:stop].clone()
        block_err = torch.zeros(rows, stop - start)
        u_block = upper[start:stop, start:stop]
        for j in range(stop - start):
            q = torch.clamp(torch.round(block[:, j] / step), -clip_range, clip_range)
            codes[:, start + j] = q
            err = (block[:, j] - q * step) / u_block[j, j]
            block[:, j:] -= err[:, None] * u_block[j, j:][None, :]
            block_err[:, j] = err
        work[:, stop:] -= block_err @ upper[start:stop, stop:]
    return codes[:, inverse_order].to(torch.int8), scales


def quantize_rows_absmax(weight: Tensor, clip: float, levels: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
    """Per-row quantization with scale max|row|/clip in fp16 (all-zero rows get scale 1): int8 codes
    clamped to `levels` (lowest, highest), symmetric ±clip by default."""
    lo, hi = levels or (-clip, clip)
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / clip).to(torch.float16)
    scales = torch.where(scales == 0, torch.ones_like(scales), scales)
    q = torch.clamp(torch.round(w / scales.float()[:, None]), lo, hi)
    return q.to(torch.int8), scales


def dequantize_rows(tensors: Mapping[str, Tensor], name: str, codes: str, scales: str) -> Tensor:
    """fp32 codes `name.codes` times their per-row scales `name.scales`."""
    return tensors[f"{name}.{codes}"].float() * tensors[f"{name}.{scales}"].float()[:, None]


def lqer_factors(error: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Best rank-r approximation of the quantization error: A = U_r diag(S_r), B = Vh_r."""
    u, s, vh = torch.linalg.svd(error.float(), full_matrices=False)
    r = min(rank, s.numel())
    return u[:, :r] * s[:r], vh[:r]


def lqer_quantize_asym(a: Tensor, b: Tensor, group: int) -> dict[str, Tensor]:
    """A: 2-bit codes with one fp16 scale for the whole matrix; B: int4 with one fp16 scale per
    `group` consecutive row-major entries (docs/quant.md §4). A is quantized as one row."""
    qa, scale_a = quantize_rows_absmax(a.reshape(1, -1), 1.5, LQER_ASYM_A_LEVELS)
    qb, scale_b = quantize_rows_absmax(b.reshape(-1, group), 7.5, LQER_ASYM_B_LEVELS)
    return {
        "lqA_a": qa.reshape(a.shape),
        "lqAs_a": scale_a.reshape(()),
        "lqB_a": qb.reshape(b.shape),
        "lqBs_a": scale_b,
    }


def lqer_quantize_sym(a: Tensor, b: Tensor, bits: int) -> dict[str, Tensor]:
    """Fallback when the asymmetric grouping does not divide B: per-row intB A and B."""
    clip = 2 ** (bits - 1) - 1
    qa, sa = quantize_rows_absmax(a, clip)
    qb, sb = quantize_rows_absmax(b, clip)
    return {"lqA": qa, "lqAs": sa, "lqB": qb, "lqBs": sb}


def lqer_correction(tensors: Mapping[str, Tensor], name: str) -> Tensor | None:
    """The dequantized low-rank term (qA·sA)(qB·sB) stored for `name`, or None if it has none."""
    if f"{name}.lqA_a" in tensors:
        qb = tensors[f"{name}.lqB_a"]
        a = tensors[f"{name}.lqA_a"].float() * tensors[f"{name}.lqAs_a"].float()
        groups = tensors[f"{name}.lqBs_a"].numel()
        b = (qb.float().reshape(groups, -1) * tensors[f"{name}.lqBs_a"].float()[:, None]).reshape(qb.shape)
        return a @ b
    if f"{name}.lqA" in tensors:
        return dequantize_rows(tensors, name, "lqA", "lqAs") @ dequantize_rows(tensors, name, "lqB", "lqBs")
    return None


# ---------------------------------------------------------------- routing


def clip_family(name: str, cfg: Config) -> tuple[float, int]:
    """(clip sigmas, bits) of a GPTQ tensor, chosen by name as the reference does."""
    if "tok_emb" in name:
        return cfg.embed_clip_sigmas, cfg.embed_bits
    if ".mlp." in name:
        return cfg.mlp_clip_sigmas, cfg.matrix_bits
    if ".attn." in name:
        return cfg.attn_clip_sigmas, cfg.matrix_bits
    return cfg.matrix_clip_sigmas, cfg.matrix_bits


def _quant_is_gate(name: str, tensor: Tensor, cfg: Config) -> bool:
    return (
        cfg.gated_attn_quant_gate
        and tensor.is_floating_point()
        and tensor.ndim == 2
        and name.endswith(".attn_gate_w")
        and GATE_MIN_NUMEL <= tensor.numel() <= GATE_MAX_NUMEL
    )


def quantize_state_dict(
    state_dict: Mapping[str, Tensor],
    hessians: Mapping[str, Tensor],
    cfg: Config,
    *,
    passthrough_max_numel: int = PASSTHROUGH_MAX_NUMEL,
    quantizer: Callable[[Tensor, Tensor, float, int], tuple[Tensor, Tensor]] | None = None,
) -> QuantizedModel:
    """Route every tensor (gate int8 / fp16 passthrough / GPTQ) and add LQER to the worst GPTQ ones.

    `passthrough_max_numel` exists so CPU tests on tiny models can exercise GPTQ; the record uses the
    reference's 65,536. `quantizer` swaps GPTQ for another (w, h, sigmas, bits) -> (q, s) function,
    e.g. round-to-nearest in the test that shows GPTQ's gain.
    """
    flat = unbank_state_dict(state_dict, cfg.num_layers)
    gptq = quantizer or gptq_quantize_weight
    out: dict[str, Tensor] = {}
    tags: dict[str, str] = {}
    errors: dict[str, float] = {}
    for name in sorted(flat):
        tensor = flat[name]
        if _quant_is_gate(name, tensor, cfg):
            out[f"{name}.gq"], out[f"{name}.gs"] = quantize_rows_absmax(tensor, GATE_CLIP)
            tags[name] = TAG_GATE
        elif not tensor.is_floating_point() or tensor.numel() <= passthrough_max_numel:
            out[name] = tensor.to(torch.float16) if tensor.is_floating_point() else tensor.clone()
            tags[name] = TAG_PASSTHROUGH if tensor.is_floating_point() else TAG_PASSTHROUGH_RAW
        else:
            if name not in hessians:
                raise RecordError(
                    f"quant {name}", "has no Hessian", "the model's calib_capture hook must feed every matrix"
                )
            sigmas, bits = clip_family(name, cfg)
            q, s = gptq(tensor.float(), hessians[name], sigmas, bits)
            out[f"{name}.q"], out[f"{name}.scale"] = q, s
            tags[name] = f"gptq (int{bits})"
            errors[name] = float(torch.linalg.matrix_norm(tensor.float() - dequantize_rows(out, name, "q", "scale")))
    if cfg.lqer_enabled and cfg.lqer_top_k > 0:
        _quant_add_lqer(flat, out, tags, errors, cfg)
    return QuantizedModel(
        tensors=out,
        tags=tags,
        dtypes={n: str(t.dtype).removeprefix("torch.") for n, t in flat.items()},
        shapes={n: tuple(t.shape) for n, t in flat.items()},
        num_layers=cfg.num_layers,
        lqer_errors=errors,
    )


def _quant_add_lqer(
    flat: Mapping[str, Tensor],
    out: dict[str, Tensor],
    tags: dict[str, str],
    errors: Mapping[str, float],
    cfg: Config,
) -> None:
    """Rank-r corrections for the LQER_TOP_K GPTQ tensors with the largest absolute error norm."""
    chosen = sorted(errors, key=lambda n: (-errors[n], n))[: cfg.lqer_top_k]
    for name in chosen:
        residual = flat[name].float() - dequantize_rows(out, name, "q", "scale")
        a, b = lqer_factors(residual, cfg.lqer_rank)
        if cfg.lqer_asym_enabled and b.numel() % cfg.lqer_asym_group == 0:
            parts, tag = lqer_quantize_asym(a, b, cfg.lqer_asym_group), TAG_LQER_ASYM
        else:
            parts, tag = lqer_quantize_sym(a, b, cfg.lqer_factor_bits), TAG_LQER_SYM
        for suffix, tensor in parts.items():
            out[f"{name}.{suffix}"] = tensor
        tags[name] += tag


# ---------------------------------------------------------------- dequantization and logging


def dequantize_flat(qm: QuantizedModel) -> dict[str, Tensor]:
    """Per-layer (unbanked) tensors rebuilt from the codes, each in the dtype it was trained in."""
    flat: dict[str, Tensor] = {}
    t = qm.tensors
    for name, tag in qm.tags.items():
        dtype = getattr(torch, qm.dtypes[name])
        if tag == TAG_GATE:
            value = dequantize_rows(t, name, "gq", "gs")
        elif tag.startswith("gptq"):
            value = dequantize_rows(t, name, "q", "scale")
            correction = lqer_correction(t, name)
            if correction is not None:
                value = value + correction
        elif tag in (TAG_PASSTHROUGH, TAG_PASSTHROUGH_RAW):
            value = t[name]
        else:
            raise RecordError(
                f"quant.dequantize {name}", f"unknown tag {tag!r}", "the artifact is from another version"
            )
        flat[name] = value.to(dtype).reshape(qm.shapes[name])
    return flat


def dequantize(qm: QuantizedModel) -> dict[str, Tensor]:
    """A state dict `GPT.load_state_dict(strict=True)` accepts: dequantized and re-banked."""
    return rebank_state_dict(dequantize_flat(qm), qm.num_layers)


def layer_free_name(name: str) -> str:
    """`blocks.3.attn.c_q.weight` -> `blocks.attn.c_q.weight`: how the log lists categories."""
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit():
        del parts[1]
    return ".".join(parts)


def quantization_summary(qm: QuantizedModel) -> dict[str, list[str]]:
    """Tag -> sorted layer-free names, tags sorted: the body of the `Quantized weights:` log block."""
    by_tag: dict[str, set[str]] = {}
    for name, tag in qm.tags.items():
        by_tag.setdefault(tag, set()).add(layer_free_name(name))
    return {tag: sorted(names) for tag, names in sorted(by_tag.items())}


def timed_hessians(model: torch.nn.Module, batches: Iterable[Tensor], log: Callable[[str], None]) -> dict[str, Tensor]:
    """`collect_hessians` with the reference's two log lines around it (67 Hessians by default:
    c_q, c_k and c_v count separately though they share one sum)."""
    log(fmt_gptq_collecting())
    started = time.perf_counter()
    hessians = collect_hessians(model, batches)
    log(fmt_gptq_collected(len(hessians), time.perf_counter() - started))
    return hessians
