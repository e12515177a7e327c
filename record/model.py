"""The PR #1934 network, and only the network (device and dtypes: evaluate.build_model; compiling: train.py).

A U-Net of pre-norm transformer blocks whose matrices live in four 3-D banks (so Muon can
orthogonalise them slice by slice): tied SP8192 embedding, BOS-safe SmearGate, GQA attention with
QK-norm, partial RoPE, per-head query gain, XSA and a sparse per-head output gate, LeakyReLU(0.5)^2
MLP, layer-norm scaling 1/sqrt(layer+1), gated U-Net skips, two residual lanes in the late decoder,
depth recurrence of a middle segment (switched on during training), logit softcap.

Two hooks serve later stages without touching this file: `lora` (test-time training adds low-rank
deltas at named sites) and `calib_capture` (GPTQ records the input of every matrix).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from record.attention import (
    DOC_BOS_ID,
    DocLayout,
    doc_causal_attention,
    doc_layout,
    load_attention_backend,
    pick_attention_backend,
    uses_varlen,
)
from record.config import Config
from record.errors import RecordError
from record.kernels import (
    fused_kernels_available,
    leaky_relu_square_mlp,
    register_kernel_ops,
    softcapped_cross_entropy,
)


class SlotLora(Protocol):
    """One block application's adapters: a delta [B, T, out] for input x [B, T, in] at `site`."""

    def delta(self, site: str, x: Tensor) -> Tensor: ...


class LoraHook(Protocol):
    """What TTT's adapter set provides: the adapters of block application `slot` (-1 = the head)."""

    def at(self, slot: int) -> SlotLora: ...


CalibCapture = Callable[[int, str, Tensor], None]


def _model_rms(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.shape[-1],))


def _model_linear(x: Tensor, weight: Tensor) -> Tensor:
    """x @ weight^T with the weight cast to the activations' dtype (banks stay fp32 for the optimiser)."""
    return F.linear(x, weight.to(x.dtype))


def rotate_partial(x: Tensor, cos: Tensor, sin: Tensor, rope_dims: int) -> Tensor:
    """RoPE on the first `rope_dims` dims of each head (halves paired), the rest passed through.

    x [B, T, H, D]; cos, sin [T, rope_dims/2]."""
    half = rope_dims // 2
    x1, x2, rest = x[..., :half], x[..., half:rope_dims], x[..., rope_dims:]
    cos, sin = cos[None, :, None, :].to(x.dtype), sin[None, :, None, :].to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin, rest), dim=-1)


class Attention(nn.Module):
    """Per-layer control tensors of the attention; its matrices are slices of the GPT's banks."""

    def __init__(self, cfg: Config, layer_idx: int) -> None:
        super().__init__()
        self.q_gain = nn.Parameter(torch.full((cfg.num_heads,), cfg.qk_gain_init))
        if cfg.sparse_attn_gate_enabled:
            self.attn_gate_w = nn.Parameter(torch.zeros(cfg.num_heads, cfg.gate_window))
        self.use_xsa = layer_idx >= cfg.num_layers - cfg.xsa_last_n


class Block(nn.Module):
    """Per-layer scales and the residual mix; `layer_idx` fixes the layer-norm scale."""

    def __init__(self, cfg: Config, layer_idx: int) -> None:
        super().__init__()
        self.attn = Attention(cfg, layer_idx)
        self.attn_scale = nn.Parameter(torch.ones(cfg.model_dim))
        self.mlp_scale = nn.Parameter(torch.ones(cfg.model_dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(cfg.model_dim), torch.zeros(cfg.model_dim))))
        self.ln_scale = layer_norm_scale(cfg, layer_idx)


def layer_norm_scale(cfg: Config, layer_idx: int) -> float:
    """The constant a block's normed inputs are scaled by: 1/sqrt(layer+1) (LN_SCALE), else 1."""
    return 1.0 / math.sqrt(layer_idx + 1) if cfg.ln_scale else 1.0


def layer_orders(cfg: Config, looping: bool) -> tuple[list[int], list[int]]:
    """(encoder, decoder) layer indices of each block application.

    Without looping the layers split in half. With looping the segment loop_start..loop_end runs
    num_loops + 1 times and the whole sequence splits in half (17 = 8 + 9 applications by default).
    """
    if not looping:
        half = cfg.num_layers // 2
        return list(range(half)), list(range(half, cfg.num_layers))
    segment = list(range(cfg.loop_start, cfg.loop_end + 1))
    order = list(range(cfg.loop_start)) + segment * (cfg.num_loops + 1)
    order += list(range(cfg.loop_end + 1, cfg.num_layers))
    return order[: len(order) // 2], order[len(order) // 2 :]


def _last_positions(width: int, count: int, device: torch.device) -> Tensor:
    """Indices of the last `count` of `width` positions. Selecting them with `index_select`, not a view
    like `[:, -count:]` or `narrow`, keeps one compiled graph for every width: a view of the last
    positions is the whole tensor when width == count, and the compiler then guards on that equality
    (the slice's length, or the view's contiguity in the head's matmul) the first time it sees it."""
    return torch.arange(width - count, width, device=device)


class GPT(nn.Module):
    """The record's language model. `forward` is the training loss; the rest serve evaluation."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        if cfg.gated_attn_enabled or cfg.attn_out_gate_enabled:
            raise RecordError(
                "GATED_ATTN_ENABLED/ATTN_OUT_GATE_ENABLED", "only the sparse attention gate is implemented", "set 0"
            )
        self.cfg = cfg
        register_kernel_ops()  # custom_op registration cannot happen inside a torch.compile trace
        layers, dim = cfg.num_layers, cfg.model_dim
        self.tok_emb = nn.Embedding(cfg.vocab_size, dim)
        self.qo_bank = nn.Parameter(torch.empty(2 * layers, dim, dim))
        self.kv_bank = nn.Parameter(torch.empty(2 * layers, cfg.kv_dim, dim))
        self.mlp_up_bank = nn.Parameter(torch.empty(layers, cfg.mlp_hidden, dim))
        self.mlp_down_bank = nn.Parameter(torch.empty(layers, dim, cfg.mlp_hidden))
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(layers))
        # Skips are sized for the looped order so the parameter set never changes mid-run.
        encoder, decoder = layer_orders(cfg, looping=cfg.num_loops > 0)
        self.num_skips = min(len(encoder), len(decoder))
        self.skip_weights = nn.Parameter(torch.ones(self.num_skips, dim))
        if cfg.skip_gates_enabled:
            self.skip_gates = nn.Parameter(torch.zeros(self.num_skips, dim))
        self.parallel_post_lambdas = nn.Parameter(torch.ones(layers, 2, 2))
        self.parallel_resid_lambdas = nn.Parameter(torch.full((layers, 2), 1.1))
        if cfg.smear_gate_enabled:
            self.smear_gate = nn.Linear(cfg.gate_window, 1, bias=False)
            self.smear_lambda = nn.Parameter(torch.zeros(1))
        inv_freq = 1.0 / cfg.rope_base ** (torch.arange(0, cfg.rope_dims, 2, dtype=torch.float32) / cfg.rope_dims)
        self.register_buffer("rope_inv_freq", inv_freq, persistent=False)
        # The cos/sin tables, computed once: inside the compiled step inductor otherwise recomputes
        # sin and cos for every element that reads them, in the QK-norm kernels forward and backward.
        angles = torch.outer(torch.arange(max(cfg.train_seq_len, cfg.eval_seq_len), dtype=torch.float32), inv_freq)
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)
        self.register_buffer("ln_scales", torch.tensor([layer_norm_scale(cfg, i) for i in range(layers)]), False)
        self._looping = False
        # Compiled block applications (compile_blocks), else None: the plain functions run or are inlined.
        self._block_fns: tuple[Callable[..., Tensor], Callable[..., tuple[Tensor, Tensor]]] | None = None
        # Set by the trainer before compiling (and logged); None = pick the fastest that works here.
        self._attention_backend: str | None = None
        # Training's fused Triton kernels: None = use them where they run (CUDA + Triton).
        self.use_fused_kernels: bool | None = None
        self.calib_capture: CalibCapture | None = None
        if not self.qo_bank.is_meta:
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The reference init: orthogonal Q/K/V/MLP-up slices, zero output projections and MLP-down."""
        layers = self.cfg.num_layers
        nn.init.normal_(self.tok_emb.weight, mean=0.0, std=self.cfg.tied_embed_init_std)
        for i in range(layers):
            nn.init.orthogonal_(self.qo_bank[i])
            nn.init.zeros_(self.qo_bank[layers + i])
            nn.init.orthogonal_(self.kv_bank[i])
            nn.init.orthogonal_(self.kv_bank[layers + i])
            nn.init.orthogonal_(self.mlp_up_bank[i])
            nn.init.zeros_(self.mlp_down_bank[i])
        if self.cfg.sparse_attn_gate_init_std > 0:
            for block in self.blocks:
                nn.init.normal_(block.attn.attn_gate_w, std=self.cfg.sparse_attn_gate_init_std)
        if self.cfg.smear_gate_enabled:
            nn.init.zeros_(self.smear_gate.weight)

    @property
    def attention_backend(self) -> str | None:
        return self._attention_backend

    @attention_backend.setter
    def attention_backend(self, name: str | None) -> None:
        """Choosing a backend loads its kernels here, outside any trace: compiled code never imports, so
        a backend set but not loaded would only fail later, inside torch.compile."""
        if name not in (None, "sdpa"):
            load_attention_backend(name)
        self._attention_backend = name

    def compile_blocks(self, **options: object) -> None:
        """Compile one serial and one two-lane block application, each reused by every layer and loop
        repeat (regional compilation), instead of the whole unrolled forward: TTT's dynamic-shape
        compile then costs about two blocks, not 17 (benchmarks/results/ttt_eval_h200_*). The weights
        reach the compiled functions as arguments, so no layer index is baked into them."""
        self._block_fns = (torch.compile(serial_block, **options), torch.compile(parallel_block, **options))

    # --- depth recurrence ---
    @property
    def looping(self) -> bool:
        return self._looping

    def set_looping(self, enabled: bool) -> None:
        """Switch depth recurrence on or off (a no-op request to loop when num_loops is 0)."""
        self._looping = bool(enabled) and self.cfg.num_loops > 0

    def block_order(self) -> list[int]:
        encoder, decoder = layer_orders(self.cfg, self._looping)
        return encoder + decoder

    # --- public entry points ---
    def forward(self, inputs: Tensor, targets: Tensor, cu_seqlens: Tensor | None = None) -> Tensor:
        """Mean training loss (fused kernels where they run).

        Varlen attention backends need `cu_seqlens`; under torch.compile pass one of fixed length
        (`cu_seqlens_from_tokens(inputs, max_docs=bucket)`), else it is derived here (a device sync)."""
        fused = self._fused(inputs.device)
        hidden = self._hidden(inputs, self._layout(inputs, True, cu_seqlens), lora=None, fused=fused)
        logits = F.linear(hidden, self.tok_emb.weight.to(hidden.dtype))
        losses = softcapped_cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), self.cfg.logit_softcap, use_kernel=fused
        )
        return losses.mean()

    def forward_logits(
        self,
        inputs: Tensor,
        lora: LoraHook | None = None,
        doc_masked: bool = True,
        cu_seqlens: Tensor | None = None,
        only_last: int | None = None,
    ) -> Tensor:
        """Softcapped fp32 logits [B, T, V]; `doc_masked=False` attends over whole rows.
        `cu_seqlens` as in `forward` (only for compiled callers on a varlen backend). With `only_last`
        (<= T), the logits of the last `only_last` positions only, [B, only_last, V]: the head works
        position by position, so these equal the matching slice of the full logits."""
        hidden = self._hidden(inputs, self._layout(inputs, doc_masked, cu_seqlens), lora=lora, fused=False)
        if self.calib_capture is not None:
            self.calib_capture(-1, "head_in", hidden)
        if only_last is not None:
            hidden = hidden.index_select(1, _last_positions(hidden.shape[1], only_last, hidden.device))
        logits = F.linear(hidden, self.tok_emb.weight.to(hidden.dtype)).float()
        if lora is not None:
            logits = logits + lora.at(-1).delta("head", hidden).float()
        cap = self.cfg.logit_softcap
        return cap * torch.tanh(logits / cap)

    def per_token_loss(
        self,
        inputs: Tensor,
        targets: Tensor,
        lora: LoraHook | None = None,
        doc_masked: bool = True,
        cu_seqlens: Tensor | None = None,
        only_last: int | None = None,
    ) -> Tensor:
        """Cross-entropy of every position, fp32 nats [B, T]; with `only_last`, of the last `only_last`
        positions only (<= T; the whole window is still attended to)."""
        logits = self.forward_logits(
            inputs, lora=lora, doc_masked=doc_masked, cu_seqlens=cu_seqlens, only_last=only_last
        )
        if only_last is not None:
            targets = targets.index_select(1, _last_positions(targets.shape[1], only_last, targets.device))
        flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        return flat.view(targets.shape)

    # --- the network ---
    def _backend(self, device: torch.device) -> str:
        if self.attention_backend is not None:
            return self.attention_backend
        if torch.compiler.is_compiling():  # a caller bug, not a user error: a traceback is right
            raise RuntimeError("GPT.attention_backend is unset under torch.compile; set it before compiling")
        return pick_attention_backend(device.type, device.index)

    def _layout(self, inputs: Tensor, doc_masked: bool, cu_seqlens: Tensor | None) -> DocLayout:
        varlen = uses_varlen(self._backend(inputs.device), inputs.device.type)
        return doc_layout(inputs, doc_masked=doc_masked, cu_seqlens=cu_seqlens, with_cu_seqlens=varlen)

    def _fused(self, device: torch.device) -> bool:
        if self.calib_capture is not None:
            return False
        if self.use_fused_kernels is not None:
            return self.use_fused_kernels
        return device.type == "cuda" and fused_kernels_available()

    def _embed(self, inputs: Tensor) -> Tensor:
        """Token embedding, then SmearGate: x_t += lambda * sigmoid(w . x_t[:window]) * x_{t-1},
        except where token t is BOS, so no document sees the previous document's last token."""
        x = self.tok_emb(inputs)
        if not self.cfg.smear_gate_enabled:
            return x
        window = self.cfg.gate_window
        gate = self.smear_lambda.to(x.dtype) * torch.sigmoid(_model_linear(x[:, 1:, :window], self.smear_gate.weight))
        gate = gate * (inputs[:, 1:, None] != DOC_BOS_ID).to(x.dtype)
        return torch.cat((x[:, :1], x[:, 1:] + gate * x[:, :-1]), dim=1)

    def _rope_tables(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
        inv_freq = self.rope_inv_freq.to(device)
        rope_dims = self.cfg.rope_dims
        stretched = self.cfg.rope_yarn and seq_len > self.cfg.rope_train_seq_len
        if not stretched and seq_len <= self.rope_cos.shape[0]:
            return self.rope_cos[:seq_len].to(device), self.rope_sin[:seq_len].to(device)
        if stretched:
            base = self.cfg.rope_base * (seq_len / self.cfg.rope_train_seq_len) ** (rope_dims / (rope_dims - 2))
            inv_freq = 1.0 / base ** (torch.arange(0, rope_dims, 2, dtype=torch.float32, device=device) / rope_dims)
        angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
        return angles.cos(), angles.sin()

    def _hidden(self, inputs: Tensor, layout: DocLayout, lora: LoraHook | None, fused: bool) -> Tensor:
        """Embedding through every block application to the final RMS-normed hidden state."""
        x = _model_rms(self._embed(inputs))
        x0 = x
        rope = self._rope_tables(inputs.shape[1], inputs.device)
        run = _BlockRun(self, x0, layout, rope, self._backend(inputs.device), lora, fused)
        encoder, decoder = layer_orders(self.cfg, self._looping)
        skips: list[Tensor] = []
        for layer in encoder:
            x = run.serial(layer, x)
            skips.append(x)
        lane0: Tensor | None = None
        lane1: Tensor | None = None
        start = self.cfg.parallel_start_layer
        for j, layer in enumerate(decoder):
            two_lanes = 0 < start <= layer
            if two_lanes and lane0 is None:
                lane0 = lane1 = x
            if j < self.num_skips and skips:
                if two_lanes:
                    lane0 = self._blend_skip(j, skips.pop(), lane0)
                else:
                    x = self._blend_skip(j, skips.pop(), x)
            if two_lanes:
                lane0, lane1 = run.parallel(layer, lane0, lane1)
            else:
                x = run.serial(layer, x)
        if lane0 is not None:
            x = 0.5 * (lane0 + lane1)
        return _model_rms(x)

    def _blend_skip(self, j: int, skip: Tensor, x: Tensor) -> Tensor:
        scaled = self.skip_weights[j].to(x.dtype) * skip
        if not self.cfg.skip_gates_enabled:
            return x + scaled
        return torch.lerp(scaled, x, torch.sigmoid(self.skip_gates[j].to(x.dtype)))


class BlockSpec(NamedTuple):
    """What a block application's code depends on besides tensors (constants to torch.compile)."""

    cfg: Config
    backend: str
    fused: bool
    use_xsa: bool


class BlockWeights(NamedTuple):
    """One block application's tensors: its bank slices and its block's control tensors. `ln_scale` is
    a float, or a 0-d tensor where one compiled function serves every layer (`GPT.compile_blocks`)."""

    q: Tensor
    k: Tensor
    v: Tensor
    o: Tensor
    up: Tensor
    down: Tensor
    q_gain: Tensor
    gate: Tensor | None
    attn_scale: Tensor
    mlp_scale: Tensor
    resid_mix: Tensor
    ln_scale: float | Tensor
    resid_lambdas: Tensor
    post_lambdas: Tensor


class BlockContext(NamedTuple):
    """What every block application of one forward reads besides its weights, adapters and lanes."""

    x0: Tensor  # the normed embedding, read through resid_mix
    rope: tuple[Tensor, Tensor]  # cos, sin [T, rope_dims/2]
    doc_ids: Tensor
    cu_seqlens: Tensor | None


Tap = Callable[[str, Tensor], None] | None  # the calibration hook bound to a layer (eager only)


class _BlockRun:
    """One forward pass's block applications: gathers each one's weights, counts slots for the LoRA hook,
    binds the calibration hook to the layer, and calls the block functions (compiled or not)."""

    def __init__(
        self,
        model: GPT,
        x0: Tensor,
        layout: DocLayout,
        rope: tuple[Tensor, Tensor],
        backend: str,
        lora: LoraHook | None,
        fused: bool,
    ) -> None:
        self.m, self.cfg = model, model.cfg
        self.ctx = BlockContext(x0, rope, layout.doc_ids, layout.cu_seqlens)
        self.backend, self.lora, self.fused, self.capture = backend, lora, fused, model.calib_capture
        # The compiled block functions serve the TTT forward (the one with adapters); global SGD's training
        # forward between phases runs eagerly, as it always has (its weights require grad: other graphs).
        self.compiled = model._block_fns is not None and lora is not None
        self.fns = model._block_fns if self.compiled else (serial_block, parallel_block)
        self.slot = 0
        if self.compiled:
            mark_varying(x0, 0, 1)
            mark_varying(layout.doc_ids, 0, 1)
            for t in (layout.cu_seqlens, *rope):
                mark_varying(t, 0)

    def _call(self, fn: Callable, layer: int, *lanes: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        m, cfg, block = self.m, self.cfg, self.m.blocks[layer]
        layers = cfg.num_layers
        weights = BlockWeights(
            m.qo_bank[layer],
            m.kv_bank[layer],
            m.kv_bank[layers + layer],
            m.qo_bank[layers + layer],
            m.mlp_up_bank[layer],
            m.mlp_down_bank[layer],
            block.attn.q_gain,
            getattr(block.attn, "attn_gate_w", None),
            block.attn_scale,
            block.mlp_scale,
            block.resid_mix,
            m.ln_scales[layer] if self.compiled else block.ln_scale,
            m.parallel_resid_lambdas[layer],
            m.parallel_post_lambdas[layer],
        )
        spec = BlockSpec(cfg, self.backend, self.fused, block.attn.use_xsa)
        lora = None if self.lora is None else self.lora.at(self.slot)
        tap = None if self.capture is None else functools.partial(self.capture, layer)
        self.slot += 1
        if self.compiled:
            for lane in lanes:
                mark_varying(lane, 0, 1)
        return fn(spec, weights, *lanes, self.ctx, lora, tap)

    def serial(self, layer: int, x: Tensor) -> Tensor:
        return self._call(self.fns[0], layer, x)

    def parallel(self, layer: int, lane0: Tensor, lane1: Tensor) -> tuple[Tensor, Tensor]:
        return self._call(self.fns[1], layer, lane0, lane1)


def mark_varying(t: Tensor | None, *dims: int) -> None:
    """Tell torch.compile that these dims of `t` (rows, width) vary from call to call, so the first compile
    of a block function is already the dynamic one: no static graph is compiled and thrown away."""
    if t is not None:
        for dim in dims:
            torch._dynamo.maybe_mark_dynamic(t, dim)


def _with_lora(lora: SlotLora | None, site: str, x: Tensor, out: Tensor) -> Tensor:
    return out if lora is None else out + lora.delta(site, x).to(out.dtype)


def serial_block(
    spec: BlockSpec, w: BlockWeights, x: Tensor, ctx: BlockContext, lora: SlotLora | None, tap: Tap
) -> Tensor:
    """One block application on the residual stream x."""
    read, attn = _read_and_attend(spec, w, x, ctx, lora, tap)
    x = read + attn
    return x + w.mlp_scale.to(x.dtype) * block_mlp(spec, w, _model_rms(x) * w.ln_scale, lora, tap)


def parallel_block(
    spec: BlockSpec, w: BlockWeights, lane0: Tensor, lane1: Tensor, ctx: BlockContext, lora: SlotLora | None, tap: Tap
) -> tuple[Tensor, Tensor]:
    """A two-lane block application: attention reads lane 0, the MLP reads lane 1, each writes both."""
    _, attn = _read_and_attend(spec, w, lane0, ctx, lora, tap)
    mlp = w.mlp_scale.to(lane1.dtype) * block_mlp(spec, w, _model_rms(lane1) * w.ln_scale, lora, tap)
    resid = w.resid_lambdas.to(lane0.dtype)
    post = w.post_lambdas.to(lane0.dtype)  # [source (attn, mlp), lane]
    new0 = resid[0] * lane0 + post[0, 0] * attn + post[1, 0] * mlp
    new1 = resid[1] * lane1 + post[0, 1] * attn + post[1, 1] * mlp
    return new0, new1


def _read_and_attend(
    spec: BlockSpec, w: BlockWeights, lane: Tensor, ctx: BlockContext, lora: SlotLora | None, tap: Tap
) -> tuple[Tensor, Tensor]:
    """resid_mix's read of `lane` and x0, and the attention's scaled output on that read."""
    mix = w.resid_mix.to(lane.dtype)
    read = mix[0] * lane + mix[1] * ctx.x0
    attn = block_attention(spec, w, _model_rms(read) * w.ln_scale, lora, ctx, tap)
    return read, w.attn_scale.to(lane.dtype) * attn


def block_attention(
    spec: BlockSpec,
    w: BlockWeights,
    n: Tensor,
    lora: SlotLora | None,
    ctx: BlockContext,
    tap: Tap,
) -> Tensor:
    cfg = spec.cfg
    if tap is not None:
        tap("attn_in", n)
    rows, seq_len, _ = n.shape
    q = _with_lora(lora, "q", n, _model_linear(n, w.q)).view(rows, seq_len, cfg.num_heads, cfg.head_dim)
    k = _with_lora(lora, "k", n, _model_linear(n, w.k)).view(rows, seq_len, cfg.num_kv_heads, cfg.head_dim)
    v = _with_lora(lora, "v", n, _model_linear(n, w.v)).view(rows, seq_len, cfg.num_kv_heads, cfg.head_dim)
    q, k = _model_rms(q), _model_rms(k)
    if cfg.rope_dims:
        q = rotate_partial(q, *ctx.rope, cfg.rope_dims)
        k = rotate_partial(k, *ctx.rope, cfg.rope_dims)
    q = q * w.q_gain.to(q.dtype)[:, None]
    # Autocast may leave the normed q, k in fp32; the kernels want one dtype (v's, the matmul's).
    layout = DocLayout(doc_ids=ctx.doc_ids, cu_seqlens=ctx.cu_seqlens, max_seqlen=seq_len)
    y = doc_causal_attention(q.to(v.dtype), k.to(v.dtype), v, layout, spec.backend)
    if spec.use_xsa:
        y = _remove_value_direction(y, v)
    if w.gate is not None:
        logit = _model_linear(n[..., : cfg.gate_window], w.gate)
        y = y * torch.sigmoid(cfg.sparse_attn_gate_scale * logit)[..., None]
    y = y.reshape(rows, seq_len, cfg.model_dim)
    if tap is not None:
        tap("proj_in", y)
    return _with_lora(lora, "o", n, _model_linear(y, w.o))


def block_mlp(spec: BlockSpec, w: BlockWeights, n: Tensor, lora: SlotLora | None, tap: Tap) -> Tensor:
    if tap is not None:
        tap("mlp_in", n)
    if spec.fused:
        return _with_lora(lora, "mlp", n, leaky_relu_square_mlp(n, w.up.to(n.dtype), w.down.to(n.dtype)))
    hidden = F.leaky_relu(_model_linear(n, w.up), negative_slope=0.5).square()
    if tap is not None:
        tap("down_in", hidden)
    return _with_lora(lora, "mlp", n, _model_linear(hidden, w.down))


def _remove_value_direction(y: Tensor, v: Tensor) -> Tensor:
    """XSA: drop from each head's output its component along its KV head's (unit) value vector."""
    rows, seq_len, heads, dim = y.shape
    kv_heads = v.shape[2]
    grouped = y.view(rows, seq_len, kv_heads, heads // kv_heads, dim)
    unit = F.normalize(v, dim=-1).unsqueeze(3)
    grouped = grouped - (grouped * unit).sum(dim=-1, keepdim=True) * unit
    return grouped.view(rows, seq_len, heads, dim)
