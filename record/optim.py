"""The record's optimisers: Muon with Polar-Express orthogonalisation on the weight banks, AdamW on the rest,
and the exponential moving average of the weights that is loaded after training.

Muon turns each bank slice's momentum into (nearly) the orthogonal factor of its SVD, so every direction of
a matrix moves at the same rate; that needs the whole slice on one device, which is why the bank gradients
are reduce-scattered by slice across ranks, orthogonalised where they land, and all-gathered back. Small
tensors (embedding, gains, gates) are cheap and replicated: their gradients are averaged and AdamW steps
them on every rank. One process takes the same path with no communication.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn

from record.dist import is_dist_active

# Per-iteration (a, b, c) of X <- a X + (b A + c A^2) X, A = X X^T: the Polar-Express minimax quintics
# (Amsel et al., 2025) the record uses instead of stock Muon's one fixed tuple; 5 iterations. Kept as
# columns: iteration i uses (_PE_LINEAR[i], _PE_CUBIC[i], _PE_QUINTIC[i]).
_PE_LINEAR = (8.156554524902461, 4.042929935166739, 3.8916678022926607, 3.285753657755655, 2.3465413258596377)
_PE_CUBIC = (-22.48329292557795, -2.808917465908714, -2.772484153217685, -2.3681294933425376, -1.7097828382687081)
_PE_QUINTIC = (15.878769915207462, 0.5000178451051316, 0.5060648178503393, 0.46449024233003106, 0.42323551169305323)
POLAR_EXPRESS_COEFFS: tuple[tuple[float, float, float], ...] = tuple(
    zip(_PE_LINEAR, _PE_CUBIC, _PE_QUINTIC, strict=True)
)

BANK_NAMES = ("qo_bank", "kv_bank", "mlp_up_bank", "mlp_down_bank")
EMBED_NAME = "tok_emb.weight"
# Gains, gates and mixing weights: stepped by the scalar AdamW (the reference's control-tensor list).
CONTROL_NAME_PATTERNS = (
    "attn_scale",
    "mlp_scale",
    "resid_mix",
    "q_gain",
    "skip_weights",
    "skip_gates",
    "parallel_post_lambdas",
    "parallel_resid_lambdas",
    "attn_gate_w",
    "smear_gate",
    "smear_lambda",
)

Orthogonalizer = Callable[[Tensor, int], Tensor]


def polar_express(update: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Approximate orthogonal polar factor of each [rows, cols] slice of `update` (2-D or batched 3-D).

    Works in bf16 on the wide orientation (rows <= cols) so X X^T is the smaller Gram matrix; the slice is
    first scaled to unit Frobenius norm so its singular values lie in (0, 1], where the quintics converge.
    """
    x = update.bfloat16()
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    for a, b, c in POLAR_EXPRESS_COEFFS[:steps]:
        gram = x @ x.mT
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.mT if tall else x


def make_orthogonalizer(compile_it: bool) -> Orthogonalizer:
    """`polar_express`, compiled on GPU (one fused graph per bank shape) or plain for CPU runs."""
    return torch.compile(polar_express) if compile_it else polar_express


def _muon_reduce_scatter_avg(shard: Tensor, full: Tensor) -> object:
    """Async: this rank's slice block of the rank-average of `full` (the *_single names are torch >= 2.12's)."""
    collective = getattr(torch_dist, "reduce_scatter_single", None) or torch_dist.reduce_scatter_tensor
    return collective(shard, full, op=torch_dist.ReduceOp.AVG, async_op=True)


def _muon_all_gather(full: Tensor, shard: Tensor) -> object:
    """Async: every rank's slice block, concatenated in rank order."""
    collective = getattr(torch_dist, "all_gather_single", None) or torch_dist.all_gather_into_tensor
    return collective(full, shard, async_op=True)


class BankMuon(torch.optim.Optimizer):
    """Muon over 3-D weight banks: each bank[i] is one matrix, orthogonalised on its own.

    Per step: momentum (Nesterov) on the bf16 gradient, optional row normalisation, Polar-Express, then
    decoupled weight decay p *= 1 - lr*wd and p -= lr * sqrt(max(1, rows/cols)) * update. Several ranks
    split each bank's slices: the momentum buffer of a rank holds only its slices.
    """

    def __init__(
        self,
        banks: Sequence[nn.Parameter],
        *,
        lr: float,
        momentum: float,
        backend_steps: int,
        weight_decay: float,
        row_normalize: bool,
        nesterov: bool = True,
        orthogonalize: Orthogonalizer = polar_express,
    ) -> None:
        if not 1 <= backend_steps <= len(POLAR_EXPRESS_COEFFS):
            raise ValueError(f"backend_steps must be 1..{len(POLAR_EXPRESS_COEFFS)}, got {backend_steps}")
        if any(p.ndim != 3 for p in banks):
            raise ValueError("BankMuon steps 3-D banks [slices, rows, cols] only")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            backend_steps=backend_steps,
            weight_decay=weight_decay,
            row_normalize=row_normalize,
            nesterov=nesterov,
        )
        super().__init__(list(banks), defaults)
        self.orthogonalize = orthogonalize
        self._muon_buffers: dict[int, tuple[Tensor, Tensor, Tensor]] = {}

    def _muon_comm_buffers(self, p: Tensor, world: int) -> tuple[Tensor, Tensor, Tensor]:
        """Padded gradient, this rank's shard and the gathered update: allocated once per bank."""
        key = id(p)
        if key not in self._muon_buffers:
            slices = p.shape[0]
            shard = -(-slices // world)
            tail = p.shape[1:]
            self._muon_buffers[key] = (
                torch.zeros(shard * world, *tail, device=p.device, dtype=torch.bfloat16),
                torch.zeros(shard, *tail, device=p.device, dtype=torch.bfloat16),
                torch.zeros(shard * world, *tail, device=p.device, dtype=torch.bfloat16),
            )
        return self._muon_buffers[key]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        world = torch_dist.get_world_size() if is_dist_active() else 1
        for group in self.param_groups:
            banks = sorted((p for p in group["params"] if p.grad is not None), key=lambda p: -p.numel())
            shards: list[Tensor] = []
            waits: list[object] = []
            for p in banks:
                if world == 1:
                    shards.append(p.grad.bfloat16())
                    waits.append(None)
                    continue
                padded, shard, _ = self._muon_comm_buffers(p, world)
                padded[: p.shape[0]].copy_(p.grad)
                waits.append(_muon_reduce_scatter_avg(shard, padded))
                shards.append(shard)
            gathers: list[tuple[nn.Parameter, Tensor, object]] = []
            for p, grad, pending in zip(banks, shards, waits, strict=True):
                if pending is not None:
                    pending.wait()
                update = self._muon_direction(p, grad, group)
                if world == 1:
                    self._muon_apply(p, update, group)
                    continue
                gathered = self._muon_comm_buffers(p, world)[2]
                handle = _muon_all_gather(gathered, update.contiguous())
                gathers.append((p, gathered, handle))
            for p, gathered, handle in gathers:
                handle.wait()
                self._muon_apply(p, gathered[: p.shape[0]], group)

    def _muon_direction(self, p: Tensor, grad: Tensor, group: dict) -> Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad)
        buf = state["momentum_buffer"]
        momentum = group["momentum"]
        buf.mul_(momentum).add_(grad)
        update = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
        if group["row_normalize"]:
            row_norm = update.float().norm(dim=-1, keepdim=True).clamp_min(1e-7)
            update = update / row_norm.to(update.dtype)
        return self.orthogonalize(update, group["backend_steps"])

    @staticmethod
    def _muon_apply(p: Tensor, update: Tensor, group: dict) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        if wd > 0.0:
            p.mul_(1.0 - lr * wd)
        aspect_scale = max(1.0, p.shape[-2] / p.shape[-1]) ** 0.5
        p.add_(update, alpha=-lr * aspect_scale)


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """(banks for Muon, the tied embedding, the scalar/control tensors), each in model order.

    A parameter that fits none of them is a model change the optimiser does not know about: fail loudly
    rather than leave it untrained.
    """
    banks, embed, scalars = [], [], []
    for name, p in model.named_parameters():
        if name in BANK_NAMES:
            banks.append(p)
        elif name == EMBED_NAME:
            embed.append(p)
        elif p.ndim < 2 or any(pattern in name for pattern in CONTROL_NAME_PATTERNS):
            scalars.append(p)
        else:
            raise ValueError(f"parameter {name} {tuple(p.shape)} belongs to no optimiser group")
    return banks, embed, scalars


class OptimizerSet:
    """The three optimisers of the record and the gradient averaging of the replicated tensors."""

    def __init__(self, model: nn.Module, cfg: object, orthogonalize: Orthogonalizer = polar_express) -> None:
        banks, embed, scalars = split_parameters(model)
        fused = all(p.is_cuda for p in embed + scalars)
        betas = (cfg.beta1, cfg.beta2)
        self.embed = torch.optim.AdamW(
            [{"params": embed, "lr": cfg.tied_embed_lr, "base_lr": cfg.tied_embed_lr}],
            betas=betas,
            eps=cfg.adam_eps,
            weight_decay=cfg.embed_wd,
            fused=fused,
        )
        self.muon = BankMuon(
            banks,
            lr=cfg.matrix_lr,
            momentum=cfg.muon_momentum,
            backend_steps=cfg.muon_backend_steps,
            weight_decay=cfg.muon_wd,
            row_normalize=cfg.muon_row_normalize,
            orthogonalize=orthogonalize,
        )
        for group in self.muon.param_groups:
            group["base_lr"] = cfg.matrix_lr
        self.scalars = torch.optim.AdamW(
            [{"params": scalars, "lr": cfg.scalar_lr, "base_lr": cfg.scalar_lr}],
            betas=betas,
            eps=cfg.adam_eps,
            weight_decay=cfg.adam_wd,
            fused=fused,
        )
        self.replicated = embed + scalars
        self.clip_params = [p for p in model.parameters() if p.requires_grad]

    def __iter__(self) -> Iterator[torch.optim.Optimizer]:
        return iter((self.embed, self.muon, self.scalars))

    def set_schedule(self, lr_scale: float, muon_momentum: float) -> None:
        """This step's learning-rate multiplier (all groups) and Muon momentum."""
        for opt in self:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * lr_scale
        for group in self.muon.param_groups:
            group["momentum"] = muon_momentum

    def zero_grad(self) -> None:
        for opt in self:
            opt.zero_grad(set_to_none=True)

    def _average_replicated_grads(self) -> None:
        """One all-reduce per dtype over the packed small gradients (hundreds of tiny tensors otherwise)."""
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for p in self.replicated:
            if p.grad is not None:
                by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
        for grads in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch_dist.all_reduce(flat, op=torch_dist.ReduceOp.AVG)
            for grad, averaged in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
                grad.copy_(averaged.view_as(grad))

    def step(self) -> None:
        """Average gradients over ranks (banks inside Muon), step all three optimisers, clear gradients."""
        if is_dist_active():
            self._average_replicated_grads()
        self.muon.step()
        self.embed.step()
        self.scalars.step()
        self.zero_grad()

    def state_dicts(self) -> list[dict]:
        return [opt.state_dict() for opt in self]

    def load_state_dicts(self, states: Sequence[dict]) -> None:
        for opt, state in zip(self, states, strict=True):
            opt.load_state_dict(state)


class WeightEma:
    """fp32 exponential moving average of every state-dict tensor, updated after each optimizer step.

    The reference averages with ema = decay*ema + (1-decay)*w and loads the average (cast back to each
    tensor's dtype) once training ends; evaluation and export then see the averaged weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        live = model.state_dict(keep_vars=True)
        self.shadow = {name: t.detach().float().clone() for name, t in live.items()}
        pairs = [(self.shadow[name], t) for name, t in live.items()]
        self._ema_fp32 = [(s, t) for s, t in pairs if t.dtype == torch.float32]
        self._ema_other = [(s, t) for s, t in pairs if t.dtype != torch.float32]

    @torch.no_grad()
    def update(self) -> None:
        if self._ema_fp32:
            shadows = [s for s, _ in self._ema_fp32]
            torch._foreach_mul_(shadows, self.decay)
            torch._foreach_add_(shadows, [t.detach() for _, t in self._ema_fp32], alpha=1.0 - self.decay)
        for shadow, live in self._ema_other:
            shadow.mul_(self.decay).add_(live.detach().float(), alpha=1.0 - self.decay)

    def apply_to(self, model: nn.Module) -> None:
        current = model.state_dict()
        model.load_state_dict({name: s.to(dtype=current[name].dtype) for name, s in self.shadow.items()})
