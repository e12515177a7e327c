"""Phased score-first test-time training (TTT): the record's headline evaluation.

Every validation document is scored chunk by chunk (48 predictions at a time) by the quantized model plus
a per-document LoRA; after a chunk is scored, and only then, the LoRA takes one optimizer step on it, so
no token is ever predicted by weights that saw it. Three times during the run all ranks pause, gather the
documents scored so far, keep the first 666/1333/2000 of them (by batch id) and run one epoch of momentum
SGD of the base weights over them; later documents are scored by the updated model. This is the reference's
`eval_val_ttt_phased` (docs/eval.md §3) with three deliberate differences, each exact in the maths:

- rows of documents that have finished are dropped from the forward instead of running as padding
  (their LoRA rows still get the zero-gradient AdamW step the reference gives them); to keep the
  compiled forward from recompiling inside the timer, every adapter set has TTT_BATCH_SIZE rows (a
  smaller batch gets a fresh set, as in the reference, and uses its first rows) and the running rows
  are always passed as an index tensor, so the dynamic graphs serve every row count >= 2, and a
  single running row is run as two copies of itself (`never_one_row`), so the same graphs serve it;
- the TTT forward compiles one serial and one two-lane block function reused by all 17 block
  applications (`GPT.compile_blocks`), not the whole unrolled forward: the warm-up compiles about
  two blocks instead of 17 (264 s -> 64 s on an H200);
- batches are handed out through the process group's store instead of files in /tmp, and a rank that
  finds the queue empty waits for pending phase pauses instead of leaving (no deadlock on small sets);
  a pause that comes when no batch is left skips the useless global SGD;
- global SGD takes exactly one step per 32k-token chunk on every rank, the gradient being the mean over
  all the chunk's rows whatever their split over ranks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import Tensor, nn

from record.config import Config
from record.data import ValidationSet
from record.dist import DistEnv, all_reduce_sum_, barrier, is_dist_active
from record.evaluate import (
    EvalResult,
    autocast_for,
    byte_prefix_sums,
    credited_bytes,
    eval_result_from_sums,
    fix_attention_backend,
)
from record.logkeys import (
    fmt_ttp,
    fmt_ttpp,
    fmt_ttpr,
    fmt_ttt_phased,
    fmt_tttg,
)
from record.lora import LoraSet, make_lora_optimizer, reset_lora_optimizer
from record.tokenizer import ByteLuts
from record.ttt_plan import (
    DocSpan,
    TttObserver,
    TttWorkQueue,
    batch_queue,
    build_batches,
    find_documents,
    parse_batch_filter,
    phase_boundaries,
    select_documents,
)

TokenLossFn = Callable[..., Tensor]  # (inputs [B,T], targets [B,T], lora) -> NLL of the last positions [B,K]


@dataclass(slots=True)
class _TttSums:
    """This rank's score: NLL in nats and the bytes and targets it covers (reduced at the end)."""

    loss: Tensor
    bytes: float = 0.0
    tokens: int = 0
    scored_docs: list[tuple[int, int, DocSpan]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
# Global SGD over already-scored documents (between phases)


def global_sgd_lr(ci: int, num_chunks: int, cfg: Config) -> float:
    """Linear warm-up over GLOBAL_TTT_WARMUP_CHUNKS (0 in the record), then cosine to 0 at the end."""
    warmup = max(0, min(cfg.global_ttt_warmup_chunks, num_chunks - 1))
    if ci < warmup:
        frac = ci / max(warmup - 1, 1)
        return cfg.global_ttt_warmup_start_lr + (cfg.global_ttt_lr - cfg.global_ttt_warmup_start_lr) * frac
    decay_steps = max(num_chunks - 1 - warmup, 1)
    return cfg.global_ttt_lr * 0.5 * (1.0 + math.cos(math.pi * (ci - warmup) / decay_steps))


def global_sgd_on_scored(
    model: nn.Module,
    tokens: Tensor,
    positions: Tensor | None,
    cfg: Config,
    place: DistEnv,
    log: Callable[[str], None],
    observer: TttObserver | None = None,
) -> None:
    """One epoch of momentum SGD of every base weight over `tokens`, the concatenated spans of scored
    documents. The stream is cut into GLOBAL_TTT_CHUNK_TOKENS chunks (the last one is skipped, as in
    the reference); each chunk's rows of EVAL_SEQ_LEN are split over ranks and give ONE step whose
    gradient is the mean loss over all the chunk's rows, clipped to GLOBAL_TTT_GRAD_CLIP. The model's
    training forward masks attention at each BOS, so documents stay apart. `positions` (stream position
    of each token) only feeds the observer."""
    seq = cfg.eval_seq_len
    total = tokens.numel() - 1
    num_chunks = -(-total // cfg.global_ttt_chunk_tokens)
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.SGD(params, lr=cfg.global_ttt_lr, momentum=cfg.global_ttt_momentum)
    model.train()
    t0 = time.perf_counter()
    for ci in range(num_chunks - 1 if cfg.global_ttt_epochs > 0 else 0):
        lo = ci * cfg.global_ttt_chunk_tokens
        rows = (min(lo + cfg.global_ttt_chunk_tokens, total) - lo) // seq
        if rows == 0:
            continue
        lr = global_sgd_lr(ci, num_chunks, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        first = rows * place.rank // place.world_size
        last = rows * (place.rank + 1) // place.world_size
        for _ in range(cfg.global_ttt_epochs):
            opt.zero_grad(set_to_none=True)
            for r in range(first, last, cfg.global_ttt_batch_seqs):
                r_end = min(r + cfg.global_ttt_batch_seqs, last)
                a, b = lo + r * seq, lo + r_end * seq
                if observer is not None and positions is not None:
                    observer.trained(positions[a : b + 1])
                x = tokens[a:b].view(-1, seq).to(place.device, non_blocking=True)
                y = tokens[a + 1 : b + 1].view(-1, seq).to(place.device, non_blocking=True)
                with autocast_for(place.device):
                    loss = model(x, y)
                (loss * ((r_end - r) / rows)).backward()
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                all_reduce_sum_(p.grad)
            if cfg.global_ttt_grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.global_ttt_grad_clip)
            opt.step()
        log(fmt_tttg(ci + 1, num_chunks, lr, time.perf_counter() - t0))
    opt.zero_grad(set_to_none=True)
    for p in params:
        p.requires_grad_(False)
    model.eval()


# ---------------------------------------------------------------------------------------------------------
# Scoring a batch of documents chunk by chunk: score first, then one LoRA step


def per_row_token_loss_fn(model: nn.Module, tail: int) -> TokenLossFn:
    """Per-token NLL of rows that each hold one document window (plain causal attention per row), for
    the window's last `tail` positions only, [B, tail]. With `tail` = min(TTT_CHUNK_SIZE,
    TTT_EVAL_SEQ_LEN), every position a TTT step scores or trains on lies there (see
    `_ttt_score_and_adapt_batch`), and no window is narrower. The reference runs the head, softcap and
    cross-entropy over the whole window and then keeps those positions. Skipping the rest (up to 2000
    of 2048 per row) gives the same numbers (exactly on the CPU; a GPU matmul of another shape may
    round differently) with less head work and far less logit memory: benchmarks/ttt_tail.py."""

    def per_row_loss(inputs: Tensor, targets: Tensor, lora: LoraSet) -> Tensor:
        rows, width = inputs.shape
        # Row starts are the only document starts: known without looking at the tokens (no device sync).
        cu_seqlens = (torch.arange(rows + 1, device=inputs.device) * width).to(torch.int32)
        return model.per_token_loss(
            inputs, targets, lora=lora.rows_view(), doc_masked=False, cu_seqlens=cu_seqlens, only_last=tail
        )

    return per_row_loss


def ttt_scored_tail(cfg: Config) -> int:
    """How many of a TTT window's last positions the loss covers (see `per_row_token_loss_fn`)."""
    return min(cfg.ttt_chunk_size, cfg.ttt_eval_seq_len)


def make_ttt_loss_fn(
    model: nn.Module, tail: int, compile_model: bool, backend: str | Callable = "inductor"
) -> TokenLossFn:
    """The TTT forward. On GPU its block applications are compiled with dynamic shapes (widths 48..2048,
    varying row counts), one serial and one two-lane function serving all 17 (`GPT.compile_blocks`);
    a single running row is padded to two (`never_one_row`) so no size-1 graph is needed.
    `eval_phase.warm_up_ttt_compile` compiles them before the timer; `backend` lets a test count
    compilations without paying for code generation."""
    loss_fn = per_row_token_loss_fn(model, tail)
    if not compile_model:
        return loss_fn
    fix_attention_backend(model, next(model.parameters()).device)
    model.compile_blocks(dynamic=None, backend=backend)
    return never_one_row(loss_fn)


def never_one_row(loss_fn: TokenLossFn) -> TokenLossFn:
    """Run a one-row call as two copies of the row and return the first copy's NLL.

    torch.compile specialises a dimension of size 1, so with dynamic shapes a single running document
    (common: the longest document of a batch runs alone at its end) needs graphs of its own, which
    nearly doubled the warm-up (on a CPU 483 s against 277 s for the whole forward as one graph:
    benchmarks/results/ttt_warmup_cpu_202611.json). The copy reads the same adapter row and its output
    is dropped before any loss, so the gradient it sends back is zero: the row's NLL and LoRA step are
    the single-row ones, and the same graphs serve every row count. The copy
    costs little: single-row steps hold under 0.3% of the evaluation's token work. The reference
    compiles the single-row graph; this is our deliberate difference.
    """

    def padded(inputs: Tensor, targets: Tensor, lora: LoraSet) -> Tensor:
        if inputs.shape[0] != 1:
            return loss_fn(inputs, targets, lora)
        rows = lora.running_rows()
        index = rows if rows is not None else torch.zeros(1, dtype=torch.long, device=inputs.device)
        lora.use_rows(index.repeat(2))
        try:
            return loss_fn(inputs.repeat(2, 1), targets.repeat(2, 1), lora)[:1]
        finally:
            lora.use_rows(rows)

    return padded


def _ttt_score_and_adapt_batch(
    batch: list[DocSpan],
    lora: LoraSet,
    opt: torch.optim.Optimizer,
    loss_fn: TokenLossFn,
    tokens: np.ndarray,
    byte_cum: np.ndarray,
    cfg: Config,
    device: torch.device,
    sums: _TttSums,
    observer: TttObserver | None,
) -> None:
    """Run one batch: for each chunk index, one forward over every still-running document's window,
    add the chunk's NLL, bytes and target count to `sums` (fixed from here on), then one LoRA step on
    the chunk for the documents that have a later chunk (a document's last chunk is never trained)."""
    size, seq = cfg.ttt_chunk_size, cfg.ttt_eval_seq_len
    starts = np.array([d.start for d in batch], dtype=np.int64)
    preds = np.array([d.predictions for d in batch], dtype=np.int64)
    num_chunks = -(-preds // size)
    for ci in range(int(num_chunks.max())):
        rows = np.flatnonzero(num_chunks > ci)
        is_last = num_chunks[rows] - 1 == ci
        end = np.where(is_last, preds[rows], (ci + 1) * size)
        win_start = np.maximum(0, end - seq)
        width = min((ci + 1) * size, seq)
        offset, length = ci * size - win_start, end - ci * size
        cols = np.arange(width + 1)
        index = np.minimum((starts[rows] + win_start)[:, None] + cols, len(tokens) - 1)
        window = tokens[index].astype(np.int64)
        valid = cols[None, :width] < (end - win_start)[:, None]
        x = torch.from_numpy(np.where(valid, window[:, :-1], 0)).to(device)
        y = torch.from_numpy(np.where(valid, window[:, 1:], 0)).to(device)
        lora.use_rows(torch.from_numpy(rows).to(device))
        with autocast_for(device):
            nll = loss_fn(x, y, lora)
        # nll covers the window's last `tail` positions; every scored and trained position is there: a
        # chunk ends at its window's valid end and a window is at least `tail` wide.
        tail = ttt_scored_tail(cfg)
        offset = offset - (width - tail)
        assert (offset >= 0).all() and (offset + length <= tail).all(), "a chunk outside the scored tail"
        with torch.no_grad():
            pos = torch.arange(tail, device=device)
            lo = torch.from_numpy(offset).to(device)[:, None]
            mask = (pos >= lo) & (pos < lo + torch.from_numpy(length).to(device)[:, None])
            sums.loss += (nll.detach().double() * mask).sum()
        first_target = starts[rows] + ci * size + 1
        sums.bytes += float((byte_cum[starts[rows] + end + 1] - byte_cum[first_target]).sum())
        sums.tokens += int(length.sum())
        if observer is not None:
            scored = nll.detach().float().cpu()
            for r in range(len(rows)):
                targets = torch.arange(first_target[r], first_target[r] + length[r])
                observer.scored(targets, scored[r, offset[r] : offset[r] + length[r]])
        if is_last.all():
            continue
        trained_rows = np.flatnonzero(~is_last)
        if observer is not None:
            for r in trained_rows:
                observer.trained(torch.arange(starts[rows[r]] + win_start[r], starts[rows[r]] + end[r] + 1))
        weight = torch.from_numpy((~is_last).astype(np.float32)).to(device)
        chunk_at = ci * size - max(0, (ci + 1) * size - seq) - (width - tail)
        for step in range(cfg.ttt_grad_steps):
            if step > 0:
                with autocast_for(device):
                    nll = loss_fn(x, y, lora)
            per_doc = nll[:, chunk_at : chunk_at + size].mean(dim=-1)
            opt.zero_grad(set_to_none=True)
            (per_doc * weight).sum().backward()
            opt.step()
    lora.use_rows(None)


# ---------------------------------------------------------------------------------------------------------
# The evaluation: batches from the queue, phase pauses with global SGD, the reduced score


def _ttt_phase_pause(
    model: nn.Module,
    tokens: np.ndarray,
    cfg: Config,
    place: DistEnv,
    log: Callable[[str], None],
    work: TttWorkQueue,
    sums: _TttSums,
    phase: int,
    boundaries: list[int],
    queue_len: int,
    t0: float,
    observer: TttObserver | None,
) -> tuple[int, bool]:
    """All ranks meet; global SGD on the first boundary_i scored documents (by batch id, row = shortest
    first); returns the next phase and whether phases are over. With no batch left to score, the
    update could not change the result and is skipped. Every rank reads the claim counter between the
    barrier and the gather, when no rank can claim, so all take the same decision."""
    barrier()
    mine = (sums.scored_docs, work.claimed())
    gathered = [mine]
    if is_dist_active():
        gathered = [None] * place.world_size
        torch_dist.all_gather_object(gathered, mine)
    entries = sorted((e for docs, _ in gathered for e in docs), key=lambda e: (e[0], e[1]))
    chosen = [doc for _, _, doc in entries[: boundaries[phase]]]
    batches_left = max(claimed for _, claimed in gathered) < queue_len
    log(fmt_ttpp(phase + 1, len(boundaries), work.add_scored(0), len(chosen), time.perf_counter() - t0))
    if batches_left and chosen:
        spans = np.concatenate([tokens[d.start : d.start + d.length] for d in chosen]).astype(np.int64)
        positions = None
        if observer is not None:
            positions = torch.from_numpy(np.concatenate([np.arange(d.start, d.start + d.length) for d in chosen]))
        global_sgd_on_scored(model, torch.from_numpy(spans), positions, cfg, place, log, observer)
    phase += 1
    barrier()
    log(fmt_ttpr(phase, len(boundaries), time.perf_counter() - t0))
    return phase, phase >= len(boundaries) or not batches_left


def evaluate_phased_ttt(
    model: nn.Module,
    val: ValidationSet,
    cfg: Config,
    place: DistEnv,
    log: Callable[[str], None],
    *,
    loss_fn: TokenLossFn | None = None,
    observer: TttObserver | None = None,
    luts: ByteLuts | None = None,
) -> EvalResult:
    """Score every validation document with phased score-first TTT; the returned sums are reduced over
    ranks. `model` is a fresh copy of the quantized model with looping set as trained: global SGD
    changes its weights. `loss_fn` is the (compiled) TTT forward from `make_ttt_loss_fn`."""
    t0 = time.perf_counter()
    device = place.device
    tokens = np.asarray(val.tokens)
    byte_cum = byte_prefix_sums(credited_bytes(val, luts))
    docs = select_documents(find_documents(tokens), cfg.val_doc_fraction, cfg.seed)
    prefix = max(0, min(len(docs), cfg.phased_ttt_prefix_docs))
    boundaries = phase_boundaries(prefix, max(1, cfg.phased_ttt_num_phases))
    log(fmt_ttt_phased(len(docs), prefix, len(docs) - prefix, len(boundaries), boundaries))
    report = parse_batch_filter(cfg.ttt_eval_batches)
    batches = build_batches(docs, cfg.ttt_batch_size)
    queue = batch_queue(batches, ascending=report is not None)
    work = TttWorkQueue.for_run()
    loss_fn = loss_fn or per_row_token_loss_fn(model, ttt_scored_tail(cfg))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    sums = _TttSums(loss=torch.zeros((), dtype=torch.float64, device=device))
    phase, global_done = 0, prefix == 0
    reusable = LoraSet.for_model(model, cfg, cfg.ttt_batch_size).to(device)
    reusable_opt = make_lora_optimizer(reusable, cfg)
    while True:
        qi = work.claim()
        if qi >= len(queue):
            if global_done:
                break
            work.wait_for_pause(phase, boundaries[phase])
            phase, global_done = _ttt_phase_pause(
                model, tokens, cfg, place, log, work, sums, phase, boundaries, len(queue), t0, observer
            )
            reusable = LoraSet.for_model(model, cfg, cfg.ttt_batch_size).to(device)
            reusable_opt = make_lora_optimizer(reusable, cfg)
            continue
        batch_id = queue[qi]
        batch = batches[batch_id]
        if len(batch) == reusable.rows:
            lora, opt = reusable, reusable_opt
            lora.reset()
            reset_lora_optimizer(opt)
        else:  # a fresh set as the reference gives, of the usual shape so the compiled forward is reused
            lora = LoraSet.for_model(model, cfg, cfg.ttt_batch_size).to(device)
            opt = make_lora_optimizer(lora, cfg)
        reported = report is None or batch_id + 1 in report
        before = (sums.loss.item(), sums.bytes, sums.tokens) if reported else (0.0, 0.0, 0)
        _ttt_score_and_adapt_batch(batch, lora, opt, loss_fn, tokens, byte_cum, cfg, device, sums, observer)
        if reported:
            loss_now = sums.loss.item()
            d_loss, d_bytes, d_tokens = loss_now - before[0], sums.bytes - before[1], sums.tokens - before[2]
            lengths = [d.length for d in batch]
            log(
                fmt_ttp(
                    batch_id + 1,
                    len(queue),
                    d_loss / max(d_tokens, 1),
                    d_loss / math.log(2.0) / max(d_bytes, 1.0),
                    loss_now / max(sums.tokens, 1),
                    loss_now / math.log(2.0) / max(sums.bytes, 1.0),
                    min(lengths),
                    max(lengths),
                    int(global_done),
                )
            )
        if global_done:
            continue
        sums.scored_docs.extend((batch_id, row, doc) for row, doc in enumerate(batch))
        if work.add_scored(len(batch)) >= boundaries[phase]:
            work.request_pause(phase)
        if work.pause_requested(phase):
            phase, global_done = _ttt_phase_pause(
                model, tokens, cfg, place, log, work, sums, phase, boundaries, len(queue), t0, observer
            )
            reusable = LoraSet.for_model(model, cfg, cfg.ttt_batch_size).to(device)
            reusable_opt = make_lora_optimizer(reusable, cfg)
    totals = torch.tensor([sums.bytes, float(sums.tokens)], dtype=torch.float64, device=device)
    loss_sum = all_reduce_sum_(sums.loss.clone())
    all_reduce_sum_(totals)
    return eval_result_from_sums(loss_sum.item(), int(totals[1].item()), totals[0].item(), time.perf_counter() - t0)
