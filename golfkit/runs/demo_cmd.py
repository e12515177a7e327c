"""`golfkit demo`: the whole record pipeline on a CPU in a few minutes, with nothing to download.

Usage: `golfkit demo [--seeds 42 ...] [--runs-dir runs/demo] [--force] [--threads N]`.

1. Data (kept between runs, rebuilt only when missing or incomplete): the Python standard library's
   documentation (golfkit.data.demo_corpus) as a docs jsonl, a 512-piece CaseOps tokenizer trained on it,
   and the shards + validation byte sidecar built by `golfkit data prepare`'s code (golfkit.data.dataprep).
2. The program: record/ bundled into one train_gpt.py (golfkit bundle), the file the folder ships,
   so the logged code size is that of the code that ran.
3. The seeds, through `golfkit record`'s runner with the demo preset (golfkit.runs.presets.DEMO_SETTINGS):
   a tiny looped model trains for about a minute, then GPTQ + LQER, the pergroup lrzip artifact and
   phased LoRA TTT run as in the record.
4. A folder under <runs-dir>/records/track_non_record_16mb/, marked not a record, verified against
   golfkit/check/rules/demo.yaml; the verified per-seed table is printed last.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TextIO

from golfkit.errors import GolfkitError
from golfkit.runs import presets
from golfkit.runs.demo import (
    DEMO_NAME,
    DEMO_THREADS,
    bundle_demo_program,
    prepare_demo_data,
    ran_other_code,
    set_aside_old_folder,
    thread_env,
)
from golfkit.runs.runplan import RunPlan


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], metavar="SEED", help="seeds to run (default 42)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/demo"), help="where everything goes")
    parser.add_argument("--force", action="store_true", help="rerun seeds whose log is already complete")
    parser.add_argument(
        "--threads",
        type=int,
        default=DEMO_THREADS,
        metavar="N",
        help=f"CPU threads of the training process (default {DEMO_THREADS}, which suits a busy 2-core machine)",
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from golfkit.runs.runner import run_plan

    started = time.monotonic()
    duplicates = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
    if duplicates:
        raise GolfkitError("--seeds", f"seed {duplicates[0]} is listed twice", "list each seed once")
    threads = thread_env(args.threads)
    runs_dir: Path = args.runs_dir
    data = prepare_demo_data(presets.demo_data_dir(runs_dir), out)
    program = bundle_demo_program(runs_dir, out)
    # Seed logs made from other data, or by other code (the record changed since), are stale: every seed
    # reruns (old logs are kept), where `golfkit record` would refuse and ask for --force.
    force = args.force or not data.reused or ran_other_code(runs_dir, args.seeds, program)
    plan = RunPlan(
        seeds=tuple(args.seeds),
        nproc=1,
        preset="demo",
        runs_dir=runs_dir,
        name=DEMO_NAME,
        force=force,
        records_dir=runs_dir / "records",
        program=program,
    )
    if force:
        set_aside_old_folder(plan, out)
    print(f"demo threads: {args.threads} for the training process (--threads N to change)", file=out)
    status = run_plan(plan, out, err, extra_env={"TOKENIZER_PATH": str(data.tokenizer)}, process_env=threads)
    verdict = "done" if status == 0 else "FAILED"
    print(f"golfkit demo: {verdict} in {time.monotonic() - started:.0f} s (not a record: a CPU demo)", file=out)
    return status
