"""How long phased score-first TTT takes: the default-size model on a slice of validation-like documents.

Runs `record.eval_phase.run_ttt_evaluation` (compile warm-up outside the timer, then the timed evaluation)
on `--docs` documents and reports seconds per 1000 documents, seconds per million scored tokens, and
the projection to the record's full split (50,000 documents, 47,851,520 targets) on 8 GPUs, assuming the
8 ranks share the work evenly (the reference loses up to ~200 s to one rank holding the longest
documents at the phase-1 pause; the projection does not model that straggler).

Documents are synthetic by default: random token ids (timing does not depend on their values) with
lognormal lengths whose mean is the record's 957 tokens per document, capped at the record's longest
document (97,114). The phase prefix is scaled with the slice (2000 of 50,000 -> 4%), so global SGD
does a proportional share of work. `--tiny` is a seconds-long CPU smoke run of the tiny config.

    python benchmarks/ttt_eval.py --docs 2000            # on the H100; writes benchmarks/results/
    python benchmarks/ttt_eval.py --tiny --out /tmp/x.json
    python benchmarks/ttt_eval.py --warmup-only --out /tmp/w.json   # compile warm-up alone, CPU too
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch._dynamo.utils import counters

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from golfkit.runs.presets import tiny_config  # noqa: E402
from record.config import Config  # noqa: E402
from record.data import ValidationSet  # noqa: E402
from record.dist import DistEnv  # noqa: E402
from record.eval_phase import run_ttt_evaluation, ttt_warmup_shapes, warm_up_ttt_compile  # noqa: E402
from record.model import GPT  # noqa: E402
from record.ttt import make_ttt_loss_fn, ttt_scored_tail  # noqa: E402

RECORD_DOCS = 50_000
RECORD_TARGETS = 47_851_520
RECORD_PREFIX_DOCS = 2_000
RECORD_LONGEST_DOC = 97_114
RECORD_GPUS = 8


def _triton_version() -> str | None:
    """The installed Triton, or None: results record it beside torch (tests/unit/test_docker_pins.py)."""
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None


def synthetic_validation(docs: int, mean_len: float, max_len: int, vocab: int, seed: int) -> ValidationSet:
    """BOS-led documents of random ids with lognormal lengths (sigma 1), and 4 bytes credited per token."""
    rng = np.random.default_rng(seed)
    sigma = 1.0
    lengths = rng.lognormal(math.log(mean_len) - sigma**2 / 2, sigma, docs).astype(np.int64)
    lengths = np.clip(lengths, 2, max_len)
    tokens = rng.integers(2, vocab, int(lengths.sum()) + docs + 1).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths + 1)])
    tokens[starts] = 1  # BOS before each document and at the end
    credit = np.where(tokens == 1, 0, 4).astype(np.int32)
    return ValidationSet(torch.from_numpy(tokens), torch.from_numpy(credit), torch.from_numpy(starts[:-1]))


def _looped_model(cfg: Config, device: torch.device, seed: int) -> GPT:
    """The default-architecture model with its depth loop on, as TTT evaluates it after training."""
    torch.manual_seed(seed)
    model = GPT(cfg).to(device)
    model.set_looping(True)
    return model


def _report_head(benchmark: str, device: torch.device, config: str) -> dict:
    """The fields every report of this script starts with: what ran, where, with which versions."""
    return {
        "benchmark": benchmark,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "triton": _triton_version(),
        "python": platform.python_version(),
        "config": config,
    }


def run_warmup_only(args: argparse.Namespace) -> dict:
    """Only the TTT compile warm-up, timed, with the graphs it compiles: runs on a CPU at the default
    size too (inductor's C++ backend), where compile time can be compared without a GPU."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = Config() if args.rows is None else dataclasses.replace(Config(), ttt_batch_size=args.rows)
    model = _looped_model(cfg, device, args.seed)
    loss_fn = make_ttt_loss_fn(model, ttt_scored_tail(cfg), compile_model=True)
    before = counters["stats"]["unique_graphs"]
    started = time.perf_counter()
    warm_up_ttt_compile(model, loss_fn, cfg, device)
    seconds = time.perf_counter() - started
    config = "default (PR #1934)" if args.rows is None else f"default, TTT_BATCH_SIZE={args.rows}"
    return {
        **_report_head("ttt_warmup", device, config),
        "cpu_threads": torch.get_num_threads(),
        "warmup_shapes": [list(shape) for shape in ttt_warmup_shapes(cfg)],
        "warmup_seconds": round(seconds, 1),
        "graphs_compiled_in_warmup": counters["stats"]["unique_graphs"] - before,
        "compile_seconds_by_stage": compile_stage_seconds(),
        "inductor_options": args.inductor_options,
        "date": datetime.date.today().isoformat(),
    }


# The compile stages worth reading, outermost first (torch._dynamo.utils.compile_times' names).
COMPILE_STAGES = (
    "_compile.compile_inner",
    "bytecode_tracing",
    "aot_trace_joint_graph",
    "min_cut_rematerialization_partition",
    "compile_fx.<locals>.fw_compiler_base",
    "compile_fx.<locals>.bw_compiler",
    "GraphLowering.run",
    "Scheduler.__init__",
    "Scheduler.fused_nodes",
    "Scheduler.codegen",
    "GraphLowering.codegen",
    "async_compile.wait",
    "PyCodeCache.load_by_key_path",
)


def compile_stage_seconds() -> dict[str, float]:
    """Seconds per compile stage, summed over the graphs compiled so far: where the warm-up goes."""
    from torch._dynamo.utils import compile_times

    table = compile_times(repr="csv", aggregate=True)
    names, values = table if isinstance(table, tuple) else ([], [])
    seconds = dict(zip(names, values, strict=False))
    return {name: round(float(seconds[name]), 1) for name in COMPILE_STAGES if name in seconds}


def run_benchmark(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        cfg = tiny_config(ttt_chunk_size=16, ttt_eval_seq_len=64, ttt_batch_size=8, eval_seq_len=64)
        cfg = dataclasses.replace(cfg, global_ttt_chunk_tokens=512)
        mean_len, max_len = 60.0, 400
    else:
        cfg = Config()
        mean_len, max_len = RECORD_TARGETS / RECORD_DOCS, RECORD_LONGEST_DOC
    prefix = max(1, round(args.docs * RECORD_PREFIX_DOCS / RECORD_DOCS))
    cfg = dataclasses.replace(cfg, phased_ttt_prefix_docs=prefix)
    val = synthetic_validation(args.docs, mean_len, max_len, cfg.vocab_size, args.seed)
    model = _looped_model(cfg, device, args.seed)
    place = DistEnv(rank=0, world_size=1, local_rank=0, device=device)
    lines: list[str] = []
    graphs = {"start": counters["stats"]["unique_graphs"]}

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("beginning TTT eval timer"):
            graphs["timer"] = counters["stats"]["unique_graphs"]
        if args.verbose or not line.startswith(("ttp:", "tttg:")):
            print(line, flush=True)

    started = time.perf_counter()
    result = run_ttt_evaluation(model, val, cfg, place, log)
    warmup_line = next(ln for ln in lines if ln.startswith("ttt_lora:compile warmup done"))
    warmup_s = float(warmup_line.split("(")[1].rstrip("s)"))
    graphs["end"] = counters["stats"]["unique_graphs"]
    per_1000 = 1000.0 * result.seconds / args.docs
    per_mtok = 1e6 * result.seconds / result.token_count
    return {
        **_report_head("ttt_eval", device, "tiny" if args.tiny else "default (PR #1934)"),
        "docs": args.docs,
        "prefix_docs": prefix,
        "scored_tokens": result.token_count,
        "mean_doc_tokens": result.token_count / args.docs,
        "warmup_seconds": warmup_s,
        "graphs_compiled_in_warmup": graphs["timer"] - graphs["start"],
        "graphs_compiled_in_timer": graphs["end"] - graphs["timer"],
        "compile_seconds_by_stage": compile_stage_seconds(),
        "eval_seconds": result.seconds,
        "wall_seconds": time.perf_counter() - started,
        "val_bpb": result.val_bpb,
        "seconds_per_1000_docs": per_1000,
        "seconds_per_million_tokens": per_mtok,
        "projected_full_split_8gpu_seconds_by_docs": per_1000 * RECORD_DOCS / 1000.0 / RECORD_GPUS,
        "projected_full_split_8gpu_seconds_by_tokens": per_mtok * RECORD_TARGETS / 1e6 / RECORD_GPUS,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "date": datetime.date.today().isoformat(),
    }


def apply_inductor_options(settings: list[str], parser: argparse.ArgumentParser) -> dict[str, object]:
    """Parse KEY=VALUE (True/False/None/int/float or a string) and set each on torch._inductor.config."""
    import ast

    import torch._inductor.config as inductor_config

    options: dict[str, object] = {}
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep:
            parser.error(f"--inductor {setting!r}: give KEY=VALUE")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        owner = inductor_config
        *path, leaf = key.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, leaf):
            parser.error(f"--inductor {key}: torch._inductor.config has no such option")
        setattr(owner, leaf, value)
        options[key] = value
    return options


def default_output(report: dict) -> Path:
    gpu = "cpu-tiny" if report["config"] == "tiny" else report["device"].lower().replace("nvidia ", "")
    slug = "".join(c if c.isalnum() else "-" for c in gpu).strip("-")
    return REPO / "benchmarks" / "results" / f"ttt_eval_{slug}_{datetime.date.today():%Y%m}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000, help="documents in the slice (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run of the tiny config")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/...)")
    parser.add_argument("--verbose", action="store_true", help="print every ttp:/tttg: line too")
    parser.add_argument(
        "--warmup-only", action="store_true", help="time only the compile warm-up (default size; CPU allowed)"
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="with --warmup-only: TTT_BATCH_SIZE for the warm-up (the graph does not depend on it; a CPU "
        "needs more than 24 GiB at the default 64)",
    )
    parser.add_argument(
        "--inductor",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a torch._inductor.config option for this run (repeatable), e.g. "
        "loop_ordering_after_fusion=False: the A/B of compile-time settings",
    )
    args = parser.parse_args(argv)
    if args.docs < 1:
        parser.error("--docs must be at least 1")
    args.inductor_options = apply_inductor_options(args.inductor, parser)
    if args.warmup_only:
        if args.out is None:
            parser.error("--warmup-only needs --out")
        report = run_warmup_only(args)
    else:
        report = run_benchmark(args)
    out = args.out or default_output(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
