"""Check a record folder (README.md, submission.json, train logs, train_gpt.py) against a track's rules.

Prints a per-seed table and every check; exits 0 when every rule holds, 1 when one fails, 2 when the
input cannot be used (no folder, a truncated log, a bad baseline or rule file).
"""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from golfkit.check.verify import verify_folder
from golfkit.check.verify.report import to_json, to_text


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("record_dir", metavar="RECORD_DIR", help="the records/<track>/<date>_<name>/ folder")
    parser.add_argument(
        "--baseline",
        metavar="DIR_OR_JSON",
        help="what to beat: a record folder, its submission.json, a val_loss in nats, or bpb:1.0810",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    parser.add_argument(
        "--rules",
        metavar="PATH_OR_NAME",
        help="rule file or track name (default: the track of the folder's path or its submission.json, "
        "else track_10min_16mb)",
    )
    parser.add_argument(
        "--against",
        metavar="PUBLISHED_JSON",
        help="compare this reproduction seed by seed with a published submission.json (GK115)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        metavar="BPB",
        help="per-seed val_bpb tolerance for --against (default: the track's record margin in bpb)",
    )
    parser.add_argument(
        "--no-code",
        action="store_true",
        help="do not require train_gpt.py (auditing a folder whose code is kept elsewhere)",
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    report = verify_folder(
        args.record_dir,
        baseline=args.baseline,
        rules=args.rules,
        require_code=not args.no_code,
        against=args.against,
        tolerance=args.tolerance,
    )
    if args.json:
        json.dump(to_json(report), out, indent=2)
        out.write("\n")
    else:
        print(to_text(report), file=out)
    return 0 if report.ok else 1
