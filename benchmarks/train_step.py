"""Speed of the record's optimizer step: ms/step, tok/s and MFU before and after depth recurrence, compile
time and peak memory, with the trainer's own code (record.train.TrainSession).

Usage:
  python benchmarks/train_step.py                       # 1 GPU, full default config
  python benchmarks/train_step.py --nproc 2             # relaunches itself under torchrun on 2 GPUs
  torchrun --standalone --nproc_per_node=2 benchmarks/train_step.py
  python benchmarks/train_step.py --tiny --steps 4 --loops-at 2   # CPU smoke run
  python benchmarks/train_step.py --data DATA_DIR --attention torch  # real shards, PyTorch's varlen kernel

One GPU accumulates 8 micro-batches of 98,304 tokens (48 x 2048), the per-call shapes of one rank of 8;
N GPUs accumulate 8/N each, 786,432 tokens per step in every case. The data are synthetic shards written
here: BOS-started documents of 560-720 tokens (random ids), the reference benchmark's shape
(spec/attention.md); `--data DIR` times real shards instead (a `golfkit data prepare` folder: real
documents average ~1,700 tokens, so attention does more work per token). Steps before `--loops-at` run
without looping, the rest with it; the warm-up compiles both first and is timed as compile time. MFU
follows spec/README.md: 3 x (2 x matrix weights applied + causal attention 2*2*(T/2)*d per block) FLOPs
per token against 989 TFLOP/s (the dense bf16 peak of an H100 SXM, and of an H200).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from golfkit.data.dataprep import TRAIN_SHARD_NAME, write_shard
from golfkit.runs.presets import tiny_config
from record.attention import ATTENTION_BACKENDS, attention_backend_report, uses_varlen
from record.config import Config
from record.data import list_shards, read_shard
from record.dist import barrier, init_distributed, shutdown_distributed
from record.model import layer_orders
from record.train import TrainSession, peak_memory_bytes, seed_everything

H100_DENSE_BF16_FLOPS = 989e12
DOC_LENGTHS = (560, 720)  # inclusive range of synthetic document lengths
SHARD_TOKENS = 4_000_000
# The reference program measured the same way on one H100 80GB HBM3 (spec/attention.md), FA4 for FA3.
REFERENCE_H100_MS_PER_STEP = {"before_loops": 689.0, "loops_on": 1029.0}
SKIP_FIRST = 2  # steps of each phase left out of the statistics (allocator and cache settling)


def _triton_version() -> str | None:
    """The installed Triton, or None: results record it beside torch (tests/unit/test_docker_pins.py)."""
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None


def flops_per_token(cfg: Config, looping: bool) -> float:
    """Training FLOPs per token by the convention of spec/README.md (forward x 3)."""
    encoder, decoder = layer_orders(cfg, looping)
    applications = len(encoder) + len(decoder)
    d, kv, hidden = cfg.model_dim, cfg.kv_dim, cfg.mlp_hidden
    block_weights = d * d + 2 * d * kv + d * d + 2 * d * hidden
    attention = 2 * 2 * (cfg.train_seq_len / 2) * d
    forward = 2 * (applications * block_weights + cfg.vocab_size * d) + applications * attention
    return 3.0 * forward


def write_synthetic_shards(data_dir: Path, cfg: Config, num_shards: int, seed: int = 0) -> None:
    """BOS-started documents of 560-720 random tokens, packed into shards of the record's format."""
    rng = np.random.default_rng(seed)
    shard_dir = Path(cfg.datasets_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    for index in range(num_shards):
        lengths = rng.integers(DOC_LENGTHS[0], DOC_LENGTHS[1] + 1, SHARD_TOKENS // DOC_LENGTHS[0] + 1)
        total = int(np.searchsorted(np.cumsum(lengths), SHARD_TOKENS)) + 1
        tokens = rng.integers(2, cfg.vocab_size, int(lengths[:total].sum()))
        tokens[np.concatenate(([0], np.cumsum(lengths[: total - 1])))] = 1
        write_shard(shard_dir / TRAIN_SHARD_NAME.format(index), tokens[:SHARD_TOKENS])


class StepMark:
    """A point between steps: a CUDA event on the GPU's timeline (no host sync), the host clock on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.event = torch.cuda.Event(enable_timing=True) if device.type == "cuda" else None
        if self.event is not None:
            self.event.record()
        self.host = time.perf_counter()

    def ms_until(self, later: StepMark) -> float:
        if self.event is not None:
            return self.event.elapsed_time(later.event)
        return 1000.0 * (later.host - self.host)


def mean_doc_tokens(session: TrainSession) -> float:
    """Mean document length (tokens per BOS) of the first training shard the run reads."""
    tokens = read_shard(list_shards(session.cfg.train_files)[0])
    return tokens.size / max(1, int((tokens == 1).sum()))


def benchmark_config(args: argparse.Namespace, data_dir: Path) -> Config:
    overrides = {
        "data_dir": str(data_dir),
        "iterations": args.steps,
        "warmup_steps": args.warmup_steps,
        "max_wallclock_seconds": 0,
    }
    base = tiny_config() if args.tiny else Config()
    return Config.from_overrides(overrides, base=base)


def phase_stats(step_ms: list[float], tokens_per_step: int, cfg: Config, looping: bool, gpus: int) -> dict:
    kept = step_ms[SKIP_FIRST:] or step_ms
    if not kept:
        return {}
    ms = statistics.median(kept)
    tok_s = tokens_per_step / (ms / 1000.0)
    mfu = flops_per_token(cfg, looping) * tok_s / (H100_DENSE_BF16_FLOPS * gpus) if gpus else None
    return {
        "steps_timed": len(kept),
        "ms_per_step_median": round(ms, 2),
        "ms_per_step_mean": round(statistics.fmean(kept), 2),
        "tok_per_s": round(tok_s),
        "mfu": round(mfu, 4) if mfu is not None else None,
        "flops_per_token": flops_per_token(cfg, looping),
    }


def relaunch_under_torchrun(nproc: int) -> int:
    """Run this script again as `torchrun --standalone --nproc_per_node=N`, without --nproc (torchrun's
    own parser would take it for its --nproc-per-node)."""
    forwarded, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg.startswith("--nproc="):
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        forwarded.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return subprocess.call([*command, __file__, *forwarded])


def device_info(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"device": f"cpu ({platform.machine()}, {os.cpu_count()} cores)", "driver": None}
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        driver = subprocess.run(query, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        driver = "unknown"
    return {"device": torch.cuda.get_device_name(device), "driver": driver}


def default_out(device: torch.device, world_size: int) -> Path:
    """benchmarks/results/train_step_<h100|h200|gpu|cpu>[xN]_<yyyymm>.json"""
    name = "cpu"
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device).lower()
        name = next((model for model in ("h100", "h200", "a100") if model in gpu), "gpu")
    suffix = f"x{world_size}" if world_size > 1 else ""
    return Path("benchmarks/results") / f"train_step_{name}{suffix}_{time.strftime('%Y%m')}.json"


# Kernel families of a training step, by kernel name (the first pattern that matches wins).
KERNEL_FAMILIES = (
    ("matmul (cuBLAS)", ("nvjet", "gemm", "xmma")),
    ("attention (FA4/FA3)", ("flash",)),
    ("fused MLP (Triton)", ("_leaky_sq", "_mlp_matmul")),
    ("softcapped CE (Triton)", ("_softcap_ce",)),
    ("inductor fused elementwise/norm", ("triton_",)),
)
# CUPTI markers that the profiler lists among device events but that are not kernels.
NOT_KERNELS = ("Command Buffer Full",)


def kernel_family(name: str) -> str:
    return next((family for family, keys in KERNEL_FAMILIES if any(k in name for k in keys)), "other")


def kernel_breakdown(kernels: list[tuple[str, float]], steps: int) -> dict[str, float]:
    """ms per step by kernel family, largest first, from (kernel name, self device us) pairs."""
    totals: dict[str, float] = {}
    for name, micros in kernels:
        if name not in NOT_KERNELS:
            family = kernel_family(name)
            totals[family] = totals.get(family, 0.0) + micros / 1000.0 / steps
    return {family: round(ms, 1) for family, ms in sorted(totals.items(), key=lambda kv: -kv[1])}


GAP_MIN_US = 20.0  # idle stretches shorter than this are launch latency, not a cause worth naming


def idle_gaps(trace: dict, steps: int, top: int = 12) -> dict:
    """Where the GPU runs no kernel, from a chrome trace: idle ms per step in stretches over GAP_MIN_US,
    and the host work under those stretches (the CPU ops running at each stretch's midpoint, and the
    kernels on either side), largest first. A stretch under a host op is the GPU waiting for the host."""
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
    device = sorted(
        (e["ts"], e["ts"] + e.get("dur", 0), e["name"])
        for e in events
        if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")
    )
    host = [
        (e["ts"], e["ts"] + e.get("dur", 0), e["name"])
        for e in events
        if e.get("cat") in ("cpu_op", "cuda_runtime", "cuda_driver")
    ]
    idle_us, by_host, by_pair = 0.0, {}, {}
    busy_until, previous = None, None
    for start, end, name in device:
        if busy_until is not None and start - busy_until > GAP_MIN_US:
            gap = start - busy_until
            idle_us += gap
            middle = busy_until + gap / 2
            under = sorted({h[2] for h in host if h[0] <= middle <= h[1]}) or ["(no host op: Python)"]
            for op in under:
                by_host[op] = by_host.get(op, 0.0) + gap
            pair = f"{previous[:60]} -> {name[:60]}"
            by_pair[pair] = by_pair.get(pair, 0.0) + gap
        if busy_until is None or end > busy_until:
            busy_until, previous = end, name

    def ranked(table: dict[str, float]) -> dict[str, float]:
        return {k: round(v / 1000.0 / steps, 2) for k, v in sorted(table.items(), key=lambda kv: -kv[1])[:top]}

    return {
        "idle_ms_per_step": round(idle_us / 1000.0 / steps, 1),
        "host_ops_under_idle_ms_per_step": ranked(by_host),
        "kernel_pairs_around_idle_ms_per_step": ranked(by_pair),
    }


def profile_steps(
    session: TrainSession, steps: int, first_step: int, cfg: Config, sync: Callable[[], None], out: Path
) -> dict:
    """Profile `steps` optimizer steps with looping off and then on: per state, the wall time, the time
    the GPU spent in kernels (busy share = kernel time / wall time; the rest is the GPU waiting for the
    host), that time by kernel family, and a table of the kernels by total time, written to
    <out stem>_profile_<state>.txt."""
    from torch.profiler import ProfilerActivity, profile

    summary = {}
    for looping in (False, True) if cfg.num_loops > 0 else (False,):
        session.set_looping(looping)
        session.step(first_step, 1.0)  # settle after the switch
        sync()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        with profile(activities=activities) as prof:
            t0 = time.perf_counter()
            for i in range(steps):
                session.step(first_step + 1 + i, 1.0)
            sync()
            wall_ms = 1000.0 * (time.perf_counter() - t0)
        trace = out.with_name(f"{out.stem}_trace_{'loops_on' if looping else 'before_loops'}.json")
        prof.export_chrome_trace(str(trace))
        gaps = idle_gaps(json.loads(trace.read_text(encoding="utf-8")), steps)
        trace.unlink()  # tens of MB; the gap summary keeps what it showed
        events = prof.key_averages()
        kernels = [(e.key, e.self_device_time_total) for e in events if e.device_type.name == "CUDA"]
        kernel_us = sum(micros for name, micros in kernels if name not in NOT_KERNELS)
        state = "loops_on" if looping else "before_loops"
        table = events.table(sort_by="self_device_time_total", row_limit=160, max_name_column_width=90)
        table += "\n\nHost side, by self CPU time:\n"
        table += events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=90)
        path = out.with_name(f"{out.stem}_profile_{state}.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(table + "\n", encoding="utf-8")
        summary[state] = {
            "steps": steps,
            "wall_ms_per_step": round(wall_ms / steps, 1),
            "gpu_kernel_ms_per_step": round(kernel_us / 1000.0 / steps, 1),
            "gpu_busy_share": round(kernel_us / 1000.0 / wall_ms, 3) if wall_ms else None,
            "kernel_ms_per_step_by_family": kernel_breakdown(kernels, steps),
            "idle": gaps,
            "table": path.name,
        }
        print(f"profile {state}: {summary[state]}", flush=True)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed optimizer steps (default 40)")
    parser.add_argument("--loops-at", type=int, default=20, help="first step with looping on (default 20)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="compile warm-up steps per looping state")
    parser.add_argument("--nproc", type=int, default=1, help="GPUs; >1 relaunches this script under torchrun")
    parser.add_argument("--tiny", action="store_true", help="tiny config, CPU allowed (smoke test)")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the synthetic shards go")
    parser.add_argument(
        "--data", type=Path, default=None, metavar="DIR", help="time real shards: a `golfkit data prepare` folder"
    )
    parser.add_argument(
        "--sync-ab",
        type=int,
        default=6,
        metavar="N",
        help="after each phase, N more steps with a host sync after every step (the A/B of the trainer's "
        "unsynced clock; 0 skips)",
    )
    parser.add_argument(
        "--attention",
        choices=ATTENTION_BACKENDS,
        default=None,
        help="force an attention backend (default: the trainer's pick, the fastest that runs)",
    )
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/...)")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="after the timed steps, profile N more steps in each looping state (torch.profiler) and write "
        "the kernel tables and the GPU-busy share next to the JSON",
    )
    args = parser.parse_args()
    if args.nproc > 1 and "RANK" not in os.environ:
        return relaunch_under_torchrun(args.nproc)

    place = init_distributed()
    scratch = Path(tempfile.gettempdir()) / f"golfkit_train_step_{'tiny' if args.tiny else 'full'}"
    data_dir = args.data or args.data_dir or scratch
    cfg = benchmark_config(args, data_dir).with_runtime(place.rank, place.world_size, place.local_rank)
    if place.device.type != "cuda" and not args.tiny:
        parser.error("the full config needs a GPU; use --tiny for a CPU smoke run")
    if args.data is not None and not list_shards(cfg.train_files):
        parser.error(f"--data {args.data}: no training shards ({cfg.train_files}); run `golfkit data prepare`")
    if place.is_main and args.data is None:
        write_synthetic_shards(data_dir, cfg, num_shards=2 if args.tiny else 4)
    barrier()
    if place.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
    seed_everything(cfg.seed)
    log = print if place.is_main else (lambda _msg: None)
    started = time.perf_counter()
    session = TrainSession(cfg, place, log, compile_model=place.device.type == "cuda")
    if args.attention is not None:  # before the first call, which compiles the step
        session.model.attention_backend = args.attention
        session.varlen = uses_varlen(args.attention, place.device.type)
    report_attention = attention_backend_report(place.device.type, place.device.index)
    session.warm_up()
    compile_seconds = time.perf_counter() - started

    def sync() -> None:
        if place.device.type == "cuda":
            torch.cuda.synchronize(place.device)

    # Steps run back to back with no host sync between them, as in training; each step's time is the
    # GPU's, between events recorded at step boundaries (so idle time the host causes is counted).
    times: dict[bool, list[float]] = {False: [], True: []}
    sync_ab: dict[bool, dict] = {}
    for looping in (False, True):
        phase = [step for step in range(args.steps) if (cfg.num_loops > 0 and step >= args.loops_at) == looping]
        if not phase:
            continue
        session.set_looping(looping)
        sync()
        marks = [StepMark(place.device)]
        for step in phase:
            loss = session.step(step, 1.0)
            marks.append(StepMark(place.device))
        sync()
        times[looping] = [a.ms_until(b) for a, b in itertools.pairwise(marks)]
        # A/B: the same steps with a host sync after each, as the trainer's clock did before it stopped
        # synchronising on every read (record/schedule.py TrainClock).
        synced = []
        for step in phase[: args.sync_ab]:
            sync()
            t0 = time.perf_counter()
            session.step(step, 1.0)
            sync()
            synced.append(1000.0 * (time.perf_counter() - t0))
        if synced:
            sync_ab[looping] = {
                "steps": len(synced),
                "ms_per_step_median_no_host_sync": round(statistics.median(times[looping][-len(synced) :]), 2),
                "ms_per_step_median_host_sync_each_step": round(statistics.median(synced), 2),
            }
        if place.is_main:
            median = statistics.median(times[looping])
            print(f"looping:{looping} steps:{len(phase)} loss:{loss.item():.4f} median ms:{median:.1f}", flush=True)

    out = args.out or default_out(place.device, place.world_size)
    profiles = {}
    if args.profile > 0 and place.is_main:
        profiles = profile_steps(session, args.profile, args.steps, cfg, sync, out)

    info = device_info(place.device)
    gpus = place.world_size if place.device.type == "cuda" else 0
    allocated, reserved = peak_memory_bytes(place.device)
    report = {
        "benchmark": "train_step",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        **info,
        "gpu_count": gpus,
        "world_size": place.world_size,
        "torch": torch.__version__,
        "triton": _triton_version(),
        "cuda": torch.version.cuda,
        "attention_backend": session.model.attention_backend,
        "attention_refused": dict(report_attention.refused),
        "data": f"real shards: {args.data}" if args.data else "synthetic, {}-{} tokens a document".format(*DOC_LENGTHS),
        "mean_document_tokens": round(mean_doc_tokens(session), 1),
        "config": "tiny" if args.tiny else "default (PR #1934)",
        "tokens_per_step": cfg.train_batch_tokens,
        "grad_accum_steps": place.grad_accum_steps,
        "micro_batch_tokens": session.tokens_per_micro,
        "compile_and_warmup_seconds": round(compile_seconds, 1),
        "peak_memory_allocated_mib": allocated // 2**20,
        "peak_memory_reserved_mib": reserved // 2**20,
        "before_loops": phase_stats(times[False], cfg.train_batch_tokens, cfg, False, gpus),
        "loops_on": phase_stats(times[True], cfg.train_batch_tokens, cfg, True, gpus),
        "host_sync_ab": {("loops_on" if looping else "before_loops"): ab for looping, ab in sync_ab.items()},
        "date": time.strftime("%Y-%m-%d"),
    }
    if not args.tiny and place.world_size == 1 and "H100" in str(info.get("device", "")):
        report["reference_h100"] = {
            phase: {
                "ms_per_step": ref_ms,
                "ratio_reference_over_ours": round(ref_ms / report[phase]["ms_per_step_median"], 3),
            }
            for phase, ref_ms in REFERENCE_H100_MS_PER_STEP.items()
            if report[phase].get("ms_per_step_median")
        }
    if profiles:
        report["profile"] = profiles
    if place.is_main:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(report, indent=2))
        print(f"wrote {out}")
    shutdown_distributed(wait_for_peers=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
