"""The per-document LoRA adapters of test-time training, and the optimizer that steps them.

One independent low-rank delta per document (batch row), per block application and site: the model
reads them through its `lora` hook (record.model), the phased evaluation in record/ttt.py resets and
steps them. A smaller last batch gets a fresh set, as the reference does; `reset_lora_optimizer`
lets the usual-size set be reused without reallocating its moments.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from record.config import Config

# Sites a config switch may turn off; q, v and the head are always adapted (TTT_K/O/MLP_LORA).
_LORA_OPTIONAL_SITES = {"k": "ttt_k_lora", "o": "ttt_o_lora", "mlp": "ttt_mlp_lora"}


class LoraSet(nn.Module):
    """Per-row LoRA deltas for every block application ("slot") and site the model exposes.

    Row b of a batch gets delta(x) = x A_b^T B_b^T * alpha/rank. A starts uniform in +-1/sqrt(in), B at
    zero, so a fresh set changes nothing. A site's A and B of all slots live in one tensor
    [slots, rows, ...] so the optimizer steps a few large tensors. Adam is elementwise, hence rows never
    influence each other: a document's adaptation depends on its own tokens only (and, with
    `warm_start_a`, on the A its row learnt on the rank's earlier, already scored, documents).
    The model reads the deltas through `rows_view()`, taken once per forward.
    """

    def __init__(
        self,
        *,
        rows: int,
        slots: int,
        model_dim: int,
        out_dims: dict[str, int],
        rank: int,
        alpha: float,
        warm_start_a: bool = True,
    ) -> None:
        super().__init__()
        self.rows, self.slots, self.rank = rows, slots, rank
        self.scale = alpha / rank
        self.warm_start_a = warm_start_a
        self._bound = 1.0 / math.sqrt(model_dim)
        self.a = nn.ParameterDict()
        self.b = nn.ParameterDict()
        for site, out_dim in out_dims.items():
            site_slots = 1 if site == "head" else slots
            a = torch.empty(site_slots, rows, rank, model_dim).uniform_(-self._bound, self._bound)
            self.a[site] = nn.Parameter(a)
            self.b[site] = nn.Parameter(torch.zeros(site_slots, rows, out_dim, rank))
        self.out_dims = dict(out_dims)
        self._row_index: Tensor | None = None

    @classmethod
    def for_model(cls, model: nn.Module, cfg: Config, rows: int) -> LoraSet:
        """The record's adapter set for `model` as it is now (looping decides the slot count)."""
        out_dims = {"q": cfg.num_heads * cfg.head_dim, "k": cfg.kv_dim, "v": cfg.kv_dim}
        out_dims |= {"o": cfg.model_dim, "mlp": cfg.model_dim, "head": cfg.vocab_size}
        for site, switch in _LORA_OPTIONAL_SITES.items():
            if not getattr(cfg, switch):
                del out_dims[site]
        return cls(
            rows=rows,
            slots=len(model.block_order()),
            model_dim=cfg.model_dim,
            out_dims=out_dims,
            rank=cfg.ttt_lora_rank,
            alpha=cfg.ttt_lora_alpha,
        )

    @torch.no_grad()
    def reset(self) -> None:
        """Start a new batch of documents: B = 0 (no delta); A is redrawn unless warm-started."""
        for site in self.b:
            self.b[site].zero_()
            if not self.warm_start_a:
                self.a[site].uniform_(-self._bound, self._bound)

    def use_rows(self, row_index: Tensor | None) -> None:
        """Restrict the next forwards to these rows (documents still running); None = all rows.
        The compiled TTT forward is always given a tensor: a None/tensor switch is a recompile."""
        self._row_index = row_index

    def running_rows(self) -> Tensor | None:
        """The row index set by `use_rows` (None: every row)."""
        return self._row_index

    def rows_view(self) -> _LoraRows:
        """The running rows' adapters for one forward (the model's `lora` hook): the rows are selected
        once per site (one index_select, one index_add in the backward), then split into per-slot
        tensors by one unbind, whose backward stacks all slots' gradients in one write. Taking a slot
        out of the stacked tensor by indexing instead costs, per slot and site, a zero-filled gradient
        the size of the whole stack (in TTT about 30 GB of memory traffic per step)."""
        a, b = {}, {}
        for site in self.a:
            a_site, b_site = self.a[site], self.b[site]
            if self._row_index is not None:
                a_site, b_site = a_site.index_select(1, self._row_index), b_site.index_select(1, self._row_index)
            a[site], b[site] = a_site.transpose(2, 3).unbind(0), b_site.transpose(2, 3).unbind(0)
            if not torch.compiler.is_compiling():
                for t in (*a[site], *b[site]):
                    torch._dynamo.maybe_mark_dynamic(t, 0)  # the running rows: one compiled block for every count
        return _LoraRows(a, b, self.scale, self.out_dims)


class _LoraRows:
    """LoraSet.rows_view's result: per site and slot, A^T [rows, in, rank] and B^T [rows, rank, out]."""

    def __init__(
        self,
        a_t: dict[str, tuple[Tensor, ...]],
        b_t: dict[str, tuple[Tensor, ...]],
        scale: float,
        out_dims: dict[str, int],
    ) -> None:
        self.a_t, self.b_t, self.scale, self.out_dims = a_t, b_t, scale, out_dims

    def at(self, slot: int) -> SlotRows:
        """The adapters of block application `slot` (-1 = the head), as tensors of their own: a compiled
        block function (GPT.compile_blocks) then serves every slot."""
        index = max(slot, 0)
        sites = [site for site in self.a_t if (site == "head") == (slot < 0)]
        a_t = {site: self.a_t[site][index] for site in sites}
        return SlotRows(a_t, {site: self.b_t[site][index] for site in sites}, self.scale, self.out_dims)


class SlotRows:
    """One slot's running rows: A^T [rows, in, rank] and B^T [rows, rank, out] per site."""

    def __init__(self, a_t: dict[str, Tensor], b_t: dict[str, Tensor], scale: float, out_dims: dict[str, int]):
        self.a_t, self.b_t, self.scale, self.out_dims = a_t, b_t, scale, out_dims

    def delta(self, site: str, x: Tensor) -> Tensor:
        """The LoRA term at `site`: [B, T, in] -> [B, T, out] (zeros where the site is not adapted)."""
        if site not in self.a_t:
            return x.new_zeros(*x.shape[:-1], self.out_dims.get(site, x.shape[-1]))
        return torch.bmm(torch.bmm(x, self.a_t[site]), self.b_t[site]) * self.scale


def make_lora_optimizer(lora: LoraSet, cfg: Config) -> torch.optim.Optimizer:
    """AdamW(beta1 0, TTT_BETA2, eps 1e-10, decoupled TTT_WEIGHT_DECAY) or SGD, as the reference."""
    fused = any(p.is_cuda for p in lora.parameters())
    if cfg.ttt_optimizer == "sgd":
        return torch.optim.SGD(
            lora.parameters(), lr=cfg.ttt_lora_lr, momentum=cfg.ttt_beta1, weight_decay=cfg.ttt_weight_decay
        )
    return torch.optim.AdamW(
        lora.parameters(),
        lr=cfg.ttt_lora_lr,
        betas=(cfg.ttt_beta1, cfg.ttt_beta2),
        eps=1e-10,
        weight_decay=cfg.ttt_weight_decay,
        fused=fused,
        foreach=False if not fused else None,
    )


def reset_lora_optimizer(opt: torch.optim.Optimizer) -> None:
    """Zero the moments and step counts in place (reusing their memory), as for a fresh optimizer."""
    for state in opt.state.values():
        for key, value in state.items():
            if isinstance(value, Tensor):
                value.zero_()
            elif key == "step":
                state[key] = 0
