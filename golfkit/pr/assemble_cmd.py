"""golfkit assemble: build the records/track_<track>/<YYYY-MM-DD>_<Name>/ folder of a submission PR.

From the seed logs and a little metadata it writes README.md (results per seed, means and spreads,
compliance margins, significance against --baseline, reproduction commands), submission.json (read from
the logs, checked against the strict schema), a PNG of every seed's curves, requirements.txt, and copies
of train_gpt.py and the logs. Every number comes from the logs, so README, submission.json and logs agree.

Overwriting: an existing folder is refused unless --force. With --force the files this command writes
(README.md, submission.json, train_curves.png, requirements.txt, train_gpt.py) are replaced, and a log is
copied in only where the folder has no file of that name or already holds the identical bytes. A log
that differs is refused, and files the command does not write are left alone and listed. Source logs
are only ever read. A new folder is built beside its final place and renamed into it, so a failure never
leaves half a folder.
"""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from golfkit.pr.assemble import DEFAULT_REASON, GENERATED, TRACKS, assemble_record


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logs", nargs="+", required=True, metavar="LOG", help="one training log per seed (copied, never moved)"
    )
    parser.add_argument(
        "--name", required=True, help="one-line title; also the folder name after the date (spaces become _)"
    )
    parser.add_argument("--author", required=True, help="the author's name, as submission.json's author")
    parser.add_argument("--github-id", required=True, help="the author's GitHub login")
    parser.add_argument("--blurb", required=True, help="a paragraph on what the submission does")
    parser.add_argument(
        "--code", required=True, metavar="PATH", help="the train_gpt.py to ship (from `golfkit bundle`)"
    )
    parser.add_argument("--date", help="YYYY-MM-DD of the PR (default: today, UTC); starts the folder name")
    parser.add_argument("--out", default="records", help="root of the records tree (default: ./records)")
    parser.add_argument(
        "--track", choices=TRACKS, default="10min_16mb", help="records/track_<TRACK>/ (default 10min_16mb)"
    )
    parser.add_argument(
        "--not-a-record",
        action="store_true",
        help="mark README and submission.json as not a record (track non_record_16mb), e.g. for the CPU demo",
    )
    parser.add_argument(
        "--reason",
        help="why it is not a record; required for --track non_record_16mb "
        f"(--not-a-record default: {DEFAULT_REASON!r})",
    )
    parser.add_argument(
        "--baseline",
        metavar="SPEC",
        help="what to beat, read as `golfkit verify --baseline` reads it: a record folder, a submission.json, "
        "a val_loss in nats (2.327) or bpb:1.0810; adds the significance section (both t-tests, in nats) and "
        "comparison_baseline_bpb / delta_vs_leaderboard_* to submission.json",
    )
    parser.add_argument("--hardware", help="the machine, when the logs lack nvidia-smi (e.g. '8xH100 80GB SXM')")
    parser.add_argument("--pytorch-version", help="torch version, when the logs do not record it")
    parser.add_argument("--cuda-version", help="CUDA version, when the logs do not record it")
    parser.add_argument("--flash-attn-version", help="FlashAttention build used, e.g. 'FA3 (cu128_torch291 wheel)'")
    parser.add_argument(
        "--requirements", metavar="PATH", help="requirements.txt to ship (default: numpy, sentencepiece, brotli)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="refresh an existing folder: rewrite the generated files, add missing logs; never replaces or "
        "deletes a log or any file this command does not write",
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    target = assemble_record(
        args.logs,
        name=args.name,
        author=args.author,
        github_id=args.github_id,
        blurb=args.blurb,
        code=args.code,
        out=args.out,
        date=args.date,
        track=args.track,
        not_a_record=args.not_a_record,
        reason=args.reason,
        baseline=args.baseline,
        hardware=args.hardware,
        pytorch_version=args.pytorch_version,
        cuda_version=args.cuda_version,
        flash_attn_version=args.flash_attn_version,
        requirements=args.requirements,
        force=args.force,
    )
    written = set(GENERATED) | {
        f"train_seed{seed}.log" for seed in json.loads((target / "submission.json").read_text())["seeds"]
    }
    others = sorted(p.name for p in target.iterdir() if p.name not in written)
    print(f"assembled {target}", file=out)
    if others:
        print(f"kept files assemble does not write: {', '.join(others)}", file=out)
    return 0
