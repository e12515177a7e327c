"""Exact bits-per-byte evaluation of a model on the validation stream (no test-time training).

The metric is the challenge's: summed per-token cross-entropy (fp32 nats, accumulated in float64) of
every scored target, divided by ln 2 and by the original UTF-8 bytes those targets stand for
(`record.data.bits_per_byte`). This module gives the pieces every evaluator shares (the result type,
byte credit, autocast and clock helpers), `build_model` (the one builder of the program's models,
training's included) and the plain evaluation that prints the reference's
`diagnostic pre-quantization post-ema ...` and `diagnostic quantized ...` lines. The headline score is
the phased TTT evaluation in record/ttt.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from record.attention import cu_seqlens_from_tokens, pick_attention_backend
from record.config import Config
from record.data import ValidationSet, bits_per_byte
from record.dist import DistEnv, all_reduce_sum_
from record.errors import RecordError
from record.logkeys import fmt_eval_result
from record.model import GPT
from record.tokenizer import ByteLuts


@dataclass(frozen=True, slots=True)
class EvalResult:
    """A reduced score: val_loss in nats per target, val_bpb, what it covers, and wall seconds."""

    val_loss: float
    val_bpb: float
    token_count: int
    byte_count: float
    seconds: float

    def with_seconds(self, seconds: float) -> EvalResult:
        return dataclasses.replace(self, seconds=seconds)


def eval_result_from_sums(loss_sum: float, token_count: int, byte_count: float, seconds: float) -> EvalResult:
    """The result of all ranks' summed NLL, targets and bytes."""
    if token_count <= 0:
        raise RecordError("evaluation", "no target was scored", "give the evaluator a longer validation stream")
    return EvalResult(
        val_loss=loss_sum / token_count,
        val_bpb=bits_per_byte(loss_sum, byte_count),
        token_count=int(token_count),
        byte_count=float(byte_count),
        seconds=seconds,
    )


def credited_bytes(val: ValidationSet, luts: ByteLuts | None = None) -> np.ndarray:
    """Bytes credited to the target at each stream position (position 0 is never a target: 0).

    With CaseOps the byte sidecar gives them (original UTF-8 bytes; operators and BOS 0). Without a
    sidecar, `luts` credit base[y] plus a leading space unless the previous token is a boundary."""
    byte_counts = np.asarray(val.byte_counts)
    tokens = np.asarray(val.tokens)
    if byte_counts.size >= tokens.size:
        return byte_counts[: tokens.size].astype(np.int64)
    if luts is None:
        raise RecordError("evaluation", "the validation set has no byte sidecar", "pass the tokenizer's ByteLuts")
    credit = np.zeros(tokens.size, dtype=np.int64)
    credit[1:] = luts.target_bytes(tokens[:-1].astype(np.int64), tokens[1:].astype(np.int64))
    return credit


def byte_prefix_sums(credit: np.ndarray) -> np.ndarray:
    """cum[i] = bytes credited to positions < i, so targets [a, b) carry cum[b] - cum[a] (exact ints)."""
    return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(credit, dtype=np.int64)])


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU (as the reference evaluates); exact fp32 on CPU, where tests compare bits."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def sync_clock(device: torch.device) -> None:
    """Wait for queued GPU work, so a clock read measures finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fix_attention_backend(model: nn.Module, device: torch.device) -> None:
    """Choose the attention kernel eagerly: the model cannot probe backends inside a compiled graph.
    `build_model` does it for the program's models; this catches one built elsewhere (tests, benchmarks)."""
    if getattr(model, "attention_backend", "") is None:
        model.attention_backend = pick_attention_backend(device.type, device.index)


def build_model(cfg: Config, place: DistEnv) -> GPT:
    """The one place the program builds a GPT, for training and for every evaluation model: on this
    process's device with the reference's dtypes (fp32 banks and control tensors, bf16 embedding on
    GPU) and the attention backend chosen once, outside any compiled graph."""
    model = GPT(cfg).to(place.device)
    if place.device.type == "cuda":
        model.tok_emb.weight.data = model.tok_emb.weight.data.bfloat16()
    fix_attention_backend(model, place.device)
    return model


@contextlib.contextmanager
def _evaluate_eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def plain_row_range(num_rows: int, rows_per_batch: int, place: DistEnv, reference_truncation: bool) -> range:
    """This rank's contiguous share of the rows, [R*r/W, R*(r+1)/W). `reference_truncation` cuts the
    share down to whole batches as PR #1855 does (leaving ~0.3% of the record's rows unscored)."""
    first = num_rows * place.rank // place.world_size
    last = num_rows * (place.rank + 1) // place.world_size
    if reference_truncation:
        last = first + (last - first) // rows_per_batch * rows_per_batch
    return range(first, last)


def evaluate_plain(
    model: nn.Module,
    val: ValidationSet,
    cfg: Config,
    place: DistEnv,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    luts: ByteLuts | None = None,
    reference_truncation: bool = False,
) -> EvalResult:
    """Score every target of the stream once with the model as it is (no adaptation).

    The stream is cut into rows of EVAL_SEQ_LEN targets; rank r takes rows [R*r/W, R*(r+1)/W) in
    batches of VAL_BATCH_TOKENS/(W*grad_accum) tokens (32 rows in the record). Attention is causal and
    stops at every BOS and row start. Two differences from the reference, both on purpose:
    - every target is scored: the reference truncates each rank's rows to whole batches and never scores
      0.3% of them; `reference_truncation=True` restores that (e.g. to compare with its logs), and a
      stream not cut to whole rows gets a final short row instead of losing its tail;
    - a document crossing a row boundary loses its earlier context at the boundary, where the reference
      (one flat row of 65,536 tokens per batch) cuts it 2048 tokens after the document's own start.
    Diagnostic values therefore differ from the reference's in the 4th decimal; the headline TTT score
    is unaffected. `loss_fn(inputs, targets) -> [B, T]` defaults to the model's `per_token_loss`.
    """
    started = time.perf_counter()
    seq = cfg.eval_seq_len
    rows_per_batch = cfg.val_batch_tokens // (place.world_size * place.grad_accum_steps) // seq
    if rows_per_batch < 1:
        raise RecordError(
            "VAL_BATCH_TOKENS", f"{cfg.val_batch_tokens} gives no whole row of {seq} per rank", "raise it"
        )
    tokens = torch.as_tensor(np.asarray(val.tokens))
    num_targets = tokens.numel() - 1
    num_rows = num_targets // seq if reference_truncation else -(-num_targets // seq)
    byte_cum = byte_prefix_sums(credited_bytes(val, luts))
    loss_fn = loss_fn or model.per_token_loss
    loss_sum = torch.zeros((), dtype=torch.float64, device=place.device)
    counts = torch.zeros(2, dtype=torch.float64, device=place.device)  # targets, bytes
    rows = plain_row_range(num_rows, rows_per_batch, place, reference_truncation)
    with _evaluate_eval_mode(model), torch.inference_mode(), autocast_for(place.device):
        for row in range(rows.start, rows.stop, rows_per_batch):
            start = row * seq
            stop = min(min(row + rows_per_batch, rows.stop) * seq, num_targets)
            whole = start + (stop - start) // seq * seq
            for lo, hi in ((start, whole), (whole, stop)):
                if hi > lo:
                    width = min(seq, hi - lo)
                    x = tokens[lo:hi].view(-1, width).to(place.device, torch.int64)
                    y = tokens[lo + 1 : hi + 1].view(-1, width).to(place.device, torch.int64)
                    loss_sum += loss_fn(x, y).double().sum()
            counts[0] += stop - start
            counts[1] += float(byte_cum[stop + 1] - byte_cum[start + 1])
    all_reduce_sum_(loss_sum)
    all_reduce_sum_(counts)
    return eval_result_from_sums(
        loss_sum.item(), int(counts[0].item()), counts[1].item(), time.perf_counter() - started
    )


def run_diagnostic_eval(
    tag: str,
    model: nn.Module,
    val: ValidationSet,
    cfg: Config,
    place: DistEnv,
    log: Callable[[str], None],
    *,
    compile_model: bool | None = None,
    luts: ByteLuts | None = None,
) -> EvalResult:
    """`evaluate_plain`, timed (GPU-synchronised, compile included as in the reference) and logged as
    `{tag} val_loss:... val_bpb:... eval_time:...ms` (tags TAG_PRE_QUANT / TAG_QUANTIZED). Not part of
    the challenge's evaluation time: these are diagnostics outside both timers."""
    compile_model = place.device.type == "cuda" if compile_model is None else compile_model
    loss_fn = None
    if compile_model:
        fix_attention_backend(model, place.device)
        compiled = torch.compile(model.per_token_loss)

        def loss_fn(inputs: Tensor, targets: Tensor) -> Tensor:
            # Document starts padded to a multiple of 64 entries (as the reference), found outside the
            # compiled graph, so the graph sees few distinct shapes and never syncs.
            bound = -(-(int((inputs == 1).sum()) + inputs.shape[0] + 1) // 64) * 64
            cu_seqlens = cu_seqlens_from_tokens(inputs, max_docs=bound)
            return compiled(inputs, targets, cu_seqlens=cu_seqlens)

    sync_clock(place.device)
    started = time.perf_counter()
    result = evaluate_plain(model, val, cfg, place, loss_fn=loss_fn, luts=luts)
    sync_clock(place.device)
    seconds = time.perf_counter() - started
    log(fmt_eval_result(tag, result.val_loss, result.val_bpb, 1000.0 * seconds))
    return result.with_seconds(seconds)
