"""The record program, in run order: settings and preflight, self-description, the model and its optimisers,
the untimed compile warm-up, the wallclock-capped training loop, EMA, then export and the evaluations.

`main()` is what `python -m record`, `torchrun -m record` and the bundled `train_gpt.py` run. The pieces
it strings together are testable on their own: `TrainSession` (one optimizer step, the warm-up) also
drives benchmarks/train_step.py, and `train_model` (the timed loop) runs on CPU in the unit tests.
"""

from __future__ import annotations

import copy
import random
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from record.artifact import preflight_compressor
from record.attention import (
    BackendReport,
    attention_backend_report,
    cu_seqlens_from_tokens,
    doc_starts,
    uses_varlen,
)
from record.config import Config
from record.data import TrainBatchLoader, ValidationSet, list_shards, load_validation, read_shard
from record.dist import (
    DistEnv,
    all_reduce_avg_,
    any_rank,
    init_distributed,
    read_dist_env,
    shutdown_distributed,
)
from record.envinfo import collect_versions, version_lines
from record.errors import RecordError
from record.eval_phase import run_evaluation_phase
from record.evaluate import autocast_for, build_model, run_diagnostic_eval, sync_clock
from record.logkeys import (
    fmt_attention_backend,
    fmt_attention_refused,
    fmt_ema_applying,
    fmt_gptq_reserve,
    fmt_layer_loop,
    fmt_loop_warmup,
    fmt_loop_warmup_step,
    fmt_model_params,
    fmt_peak_memory,
    fmt_stopping_early,
    fmt_train_shards,
    fmt_train_step,
    fmt_train_val,
    fmt_val_tokens,
    fmt_warmup_cu_buckets,
    fmt_warmup_step,
)
from record.model import GPT, layer_orders
from record.optim import OptimizerSet, WeightEma, make_orthogonalizer
from record.schedule import TrainBudget, TrainClock, TrainingSchedule
from record.sizes import unwrap_self_extracting
from record.tokenizer import load_tokenizer, sentencepiece_byte_luts

# cu_seqlens of a micro-batch are padded to one fixed capacity (rows + tokens / CU_MIN_MEAN_DOC entries),
# so the compiled step sees one shape per looping state and never syncs to read the document count. We
# differ from the reference here: its four buckets (64..256) mean four more compiles (~1 min each on an
# H100); a batch of unusually short documents rounds up to a multiple of the capacity (a rare recompile).
CU_MIN_MEAN_DOC = 256
CU_WARMUP_ITERS = 3  # forward+backward passes per looping state during the cu_seqlens warm-up


# ---- logging ------------------------------------------------------------------------------------------


class RunLog:
    """`log(msg)`: rank 0 prints the line and appends it to the run's log file; other ranks stay quiet."""

    def __init__(self, path: str | Path | None, is_main: bool) -> None:
        self.path = Path(path) if path and is_main else None
        self.is_main = is_main
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str, console: bool = True) -> None:
        if not self.is_main:
            return
        if console:
            print(msg, flush=True)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                print(msg, file=f)


def _running_source() -> str:
    """The code of this run: the source a bundled train_gpt.py carries (unwrapped, so the log holds
    readable code whatever the file's encoding), or the record package's modules."""
    here = Path(__file__)
    if here.name != "train.py":
        return unwrap_self_extracting(here.read_bytes()) or here.read_text(encoding="utf-8")
    return "".join(
        f"# ---- record/{p.name} ----\n{p.read_text(encoding='utf-8')}" for p in sorted(here.parent.glob("*.py"))
    )


def describe_run(cfg: Config, attention: BackendReport, log: RunLog) -> None:
    """Style rule 9: settings and versions on the console; source and nvidia-smi in the file only.
    The attention backend that runs is named, and each faster one that was refused, with why."""
    for line in cfg.hyperparameter_lines():
        log(line)
    for line in version_lines(collect_versions(attention_backend=attention.name)):
        log(line)
    log(fmt_attention_backend(attention.name))
    for name, reason in attention.refused:
        log(fmt_attention_refused(name, reason))
    log("=" * 100, console=False)
    log(_running_source(), console=False)
    log("=" * 100, console=False)
    if torch.cuda.is_available():
        try:
            smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            smi = "nvidia-smi unavailable"
        log(smi, console=False)


# ---- preflight: every problem a user can fix, found before anything compiles ----------------------------


def preflight_run(cfg: Config, place: DistEnv) -> None:
    """Data present, tokenizer matching it, compressor installed, batch divisible: or one RecordError."""
    if not Path(cfg.datasets_dir).is_dir():
        raise RecordError(cfg.datasets_dir, "data folder not found", "run `golfkit data download` or set DATA_DIR")
    for pattern, what in ((cfg.train_files, "training"), (cfg.val_files, "validation")):
        if not list_shards(pattern):
            raise RecordError(pattern, f"no {what} shards", "run `golfkit data download` or set DATA_DIR")
    if cfg.caseops_enabled and not list_shards(cfg.val_bytes_files):
        raise RecordError(cfg.val_bytes_files, "no validation byte sidecar", "re-download or set CASEOPS_ENABLED=0")
    load_tokenizer(cfg.tokenizer_path, cfg.vocab_size, caseops=cfg.caseops_enabled)
    first_shard = list_shards(cfg.train_files)[0]
    top_id = int(read_shard(first_shard).max(initial=0))
    if top_id >= cfg.vocab_size:
        raise RecordError(
            first_shard,
            f"holds token id {top_id}, outside VOCAB_SIZE {cfg.vocab_size}: shards and tokenizer do not match",
            "rebuild the shards with this tokenizer or point TOKENIZER_PATH/VOCAB_SIZE at theirs",
        )
    micro = place.world_size * place.grad_accum_steps * cfg.train_seq_len
    if cfg.train_batch_tokens % micro:
        raise RecordError(
            "TRAIN_BATCH_TOKENS", f"{cfg.train_batch_tokens} is not a multiple of {micro}", "use e.g. 786432"
        )
    preflight_compressor(cfg)


# ---- the model and one optimizer step --------------------------------------------------------------------


# Inductor's mix-order reductions fuse an RMS-norm backward (a reduction along each row) with the
# per-channel gradient sums of the scales and mixes around it (reductions down each column). With the
# depth loop on, some of these fused kernels carry 14-21 input streams; on an H100 one ran 7.4 ms per
# micro-batch (the per-layer RMS-norm backward kernels take 0.42 ms). Off for the training graph: loops-on steps
# 1,185 -> 1,141 ms, before loops 751 -> 760 ms (A/B on one H100: train_step_h100_mixorder_ab_202611.json;
# this code measured alone: 1,145 / 766 ms, train_step_h100_nomix_202611.json, in benchmarks/results/).
# The reference runs with inductor's default; same maths up to summation order. Only config.py and
# dist.py read the environment, so TORCHINDUCTOR_MIX_ORDER_REDUCTION does not change this graph.


def training_inductor_options() -> dict[str, bool]:
    """Inductor options for the compiled training step: mix-order reductions off, where torch has them."""
    import torch._inductor.config as inductor_config

    if not hasattr(inductor_config.triton, "mix_order_reduction"):  # torch 2.9 has none
        return {}
    return {"triton.mix_order_reduction": False}


def _cu_bucket_docs(num_starts: int, capacity: int) -> int:
    """max_docs for cu_seqlens_from_tokens: entries (starts + end) rounded up to a multiple of `capacity`."""
    return -(-(num_starts + 1) // capacity) * capacity - 1


class TrainSession:
    """The model, its compiled step, optimisers, schedule and data of one training run."""

    def __init__(self, cfg: Config, place: DistEnv, log: Callable[[str], None], compile_model: bool) -> None:
        self.cfg, self.place, self.log = cfg, place, log
        self.model = build_model(cfg, place)
        if compile_model:
            torch._dynamo.config.cache_size_limit = 64  # looping on/off x rare cu_seqlens roundings (above)
            self.step_model: Callable[..., Tensor] = torch.compile(
                self.model, dynamic=False, fullgraph=True, options=training_inductor_options()
            )
        else:
            self.step_model = self.model
        self.compiled = compile_model
        self.varlen = uses_varlen(self.model.attention_backend, place.device.type)
        self.opts = OptimizerSet(self.model, cfg, orthogonalize=make_orthogonalizer(compile_model))
        self.schedule = TrainingSchedule.from_config(cfg)
        self.tokens_per_micro = cfg.train_batch_tokens // (place.world_size * place.grad_accum_steps)
        rows = max(1, self.tokens_per_micro // cfg.train_seq_len)
        self.cu_capacity = rows + self.tokens_per_micro // CU_MIN_MEAN_DOC + 1
        self.loader = self.new_loader()

    def new_loader(self) -> TrainBatchLoader:
        """A loader at the start of the data (each rank its own slice of every span, as the reference)."""
        return TrainBatchLoader(
            self.cfg, self.place.rank, self.place.world_size, self.cfg.train_seq_len, self.tokens_per_micro, "cpu"
        )

    def _to_device(self, inputs: Tensor, targets: Tensor, cu: Tensor | None) -> tuple[Tensor, ...]:
        device = self.place.device
        if device.type != "cuda":
            return inputs, targets, cu
        moved = [t.pin_memory().to(device, non_blocking=True) if t is not None else None for t in (inputs, targets, cu)]
        return tuple(moved)

    def micro_batch(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """The next micro-batch on the device, with cu_seqlens padded to the fixed capacity when attention is
        varlen."""
        inputs, targets = self.loader.next_batch()
        cu = None
        if self.varlen:
            starts = int(doc_starts(inputs).sum())
            cu = cu_seqlens_from_tokens(inputs, max_docs=_cu_bucket_docs(starts, self.cu_capacity))
        return self._to_device(inputs, targets, cu)

    def forward_backward(self, inputs: Tensor, targets: Tensor, cu: Tensor | None) -> Tensor:
        with autocast_for(self.place.device):
            loss = self.step_model(inputs, targets, cu_seqlens=cu)
        (loss / self.place.grad_accum_steps).backward()
        return loss.detach()

    def step(self, step: int, lr_scale: float) -> Tensor:
        """One optimizer step over grad_accum_steps micro-batches; returns this rank's mean loss.

        As the reference: the gradient is clipped per rank before ranks average it (with 8 GPUs each rank
        clips its own micro-batch's gradient), then Muon/AdamW step; momentum follows the step number."""
        total = torch.zeros((), device=self.place.device)
        for _ in range(self.place.grad_accum_steps):
            total += self.forward_backward(*self.micro_batch())
        self.opts.set_schedule(lr_scale, self.schedule.momentum_at(step))
        if self.cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.opts.clip_params, self.cfg.grad_clip_norm)
        self.opts.step()
        return total / self.place.grad_accum_steps

    def set_looping(self, enabled: bool) -> None:
        self.model.set_looping(enabled)

    def loop_orders(self) -> tuple[list[int], list[int]]:
        return layer_orders(self.cfg, self.model.looping)

    def _warm_up_cu_buckets(self) -> None:
        """Compile the fixed cu_seqlens length on one batch whose rows are the documents."""
        inputs, targets, _ = self.micro_batch()
        buckets = [self.cu_capacity]
        self.log(fmt_warmup_cu_buckets(buckets, CU_WARMUP_ITERS))
        for looping in (False, True) if self.cfg.num_loops > 0 else (False,):
            self.set_looping(looping)
            for bucket in buckets:
                cu = cu_seqlens_from_tokens(inputs, doc_masked=False, max_docs=bucket - 1)
                for _ in range(CU_WARMUP_ITERS):
                    self.forward_backward(inputs, targets, cu)
            self.opts.zero_grad()
        self.set_looping(False)

    def warm_up(self) -> None:
        """Untimed: compile every graph training will need (the cu_seqlens capacity, WARMUP_STEPS steps,
        the same with looping on), then restore the initial weights and optimiser state and restart the data, so the
        timed run starts exactly where an uncompiled one would."""
        if self.cfg.warmup_steps <= 0:
            return
        initial_model = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        initial_opts = copy.deepcopy(self.opts.state_dicts())
        self.model.train()
        if self.compiled and self.varlen:
            self._warm_up_cu_buckets()
        phases = [(False, fmt_warmup_step)]
        if self.cfg.num_loops > 0:
            phases.append((True, fmt_loop_warmup_step))
        for looping, fmt in phases:
            self.set_looping(looping)
            if looping:
                self.log(fmt_loop_warmup(*self.loop_orders()))
            for i in range(self.cfg.warmup_steps):
                self.step(i, 1.0)
                if i <= 5 or (i + 1) % 10 == 0 or i + 1 == self.cfg.warmup_steps:
                    self.log(fmt(i + 1, self.cfg.warmup_steps))
        self.set_looping(False)
        self.model.load_state_dict(initial_model, strict=True)
        self.opts.load_state_dicts(initial_opts)
        self.opts.zero_grad()
        self.loader = self.new_loader()


# ---- the timed loop -----------------------------------------------------------------------------------


def peak_memory_bytes(device: torch.device) -> tuple[int, int]:
    """(allocated, reserved) peak bytes: the CUDA allocator's, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return rss, rss


def train_model(
    session: TrainSession,
    val: ValidationSet | None,
    clock: TrainClock | None = None,
) -> GPT:
    """Warm up, train until the budget is spent, apply the EMA; returns the (uncompiled) model.

    `val` is scored with the live weights at the last step (and every VAL_LOSS_EVERY steps), the training
    clock paused, as the reference does; None skips it."""
    cfg, place, log, model = session.cfg, session.place, session.log, session.model
    budget = TrainBudget.from_config(cfg)
    if budget.cap_ms is not None:
        log(fmt_gptq_reserve(cfg.gptq_reserve_seconds, budget.cap_ms))
    session.warm_up()
    ema = WeightEma(model, cfg.ema_decay)
    clock = clock or TrainClock(sync=lambda: sync_clock(place.device))
    clock.start()
    step, stop_after = 0, None
    while True:
        last_step = step == cfg.iterations or (stop_after is not None and step >= stop_after)
        if val is not None and (last_step or (cfg.val_loss_every > 0 and step % cfg.val_loss_every == 0)):
            clock.pause()
            result = run_diagnostic_eval(
                "train", model, val, cfg, place, lambda _: None, compile_model=session.compiled
            )
            log(fmt_train_val(step, cfg.iterations, result.val_loss, result.val_bpb))
            model.train()
            clock.start()
        if last_step:
            if stop_after is not None and step < cfg.iterations:
                log(fmt_stopping_early(clock.elapsed_ms(), step, cfg.iterations))
            break
        frac = budget.fraction(step, clock.elapsed_ms(sync=False))
        settings = session.schedule.lookup(step, frac)
        if settings.looping and not model.looping:
            session.set_looping(True)
            log(fmt_layer_loop(step, frac, *session.loop_orders()))
        train_loss = session.step(step, settings.lr_scale)
        ema.update()
        step += 1
        logging = cfg.train_log_every > 0 and (step <= 5 or step % cfg.train_log_every == 0 or stop_after is not None)
        elapsed = clock.elapsed_ms(sync=logging)  # no sync on other steps: see TrainClock
        if logging:
            mean_loss = all_reduce_avg_(train_loss.clone()).item()
            log(
                fmt_train_step(
                    step, cfg.iterations, mean_loss, elapsed, step * cfg.train_batch_tokens / (elapsed / 1000)
                )
            )
        if stop_after is None and any_rank(budget.reached(elapsed), place.device):
            stop_after = step
    log(fmt_peak_memory(*peak_memory_bytes(place.device)))
    log(fmt_ema_applying())
    ema.apply_to(model)
    return model


def seed_everything(seed: int) -> None:
    """The same seed on every rank: each builds identical initial weights (no broadcast needed)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def run_program(cfg: Config, place: DistEnv, log: RunLog, compile_model: bool) -> None:
    """Everything after the process group is up: describe, load, train, export, evaluate."""
    seed_everything(cfg.seed)
    if place.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
    session = TrainSession(cfg, place, log, compile_model)
    describe_run(cfg, attention_backend_report(place.device.type, place.device.index), log)
    val = load_validation(cfg, seq_len=cfg.eval_seq_len, with_bytes=cfg.caseops_enabled)
    luts = None
    if not cfg.caseops_enabled:
        luts = sentencepiece_byte_luts(load_tokenizer(cfg.tokenizer_path, cfg.vocab_size, False), cfg.vocab_size)
    log(fmt_train_shards(len(list_shards(cfg.train_files))))
    log(fmt_val_tokens(val.num_targets))
    log(fmt_model_params(sum(p.numel() for p in session.model.parameters())))
    model = train_model(session, val)
    torch._dynamo.reset()  # the training graphs are done; evaluation compiles its own
    run_evaluation_phase(model, val, cfg, place, log, luts=luts)


def main(argv: Sequence[str] | None = None) -> int:
    """The program. Settings come from the environment (see `golfkit params`); exit 2 on a RecordError."""
    argv = sys.argv[1:] if argv is None else argv
    place = None
    finished = False
    try:
        if argv:
            raise RecordError("arguments", f"unexpected {' '.join(argv)!r}", "pass settings as environment variables")
        place = read_dist_env()
        cfg = Config.from_env().with_runtime(place.rank, place.world_size, place.local_rank)
        preflight_run(cfg, place)
        place = init_distributed()
        log = RunLog(cfg.logfile, place.is_main)
        run_program(cfg, place, log, compile_model=place.device.type == "cuda")
        finished = True
    except RecordError as exc:
        prefix = f"[rank {place.rank}] " if place is not None and place.distributed else ""
        print(f"{prefix}{exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        shutdown_distributed(wait_for_peers=finished)
    return 0
