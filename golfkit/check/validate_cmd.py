"""golfkit validate: check submission.json files against schemas/submission.schema.json.

Two profiles live in the one schema file. `strict` (the default) is what a NEW submission must carry:
identity, scores, per-seed numbers with artifact bytes, hardware and versions. `lenient` accepts the
historical files of the repository that are not defective. Strict adds cross-field checks JSON Schema
cannot express: the seed list matches the per-seed results, the means and spreads match the per-seed
values, the byte summaries match the per-seed bytes. Both profiles refuse what no schema sees: numbers
that are not finite (`NaN`, `Infinity`, `1e999`, which Python's json reads) and invisible characters in
text (controls such as NUL and BEL, bidirectional overrides, lone surrogates).

Every problem is one line, `FILE: $.json.path: what (fix)`, the most useful one (jsonschema's
`best_match`) first. Exit 0 when every file is valid, 1 when any is not, 2 when a file cannot be read
or is not JSON.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from golfkit.check.validate import PROFILES, validate_file
from golfkit.errors import GolfkitError

EXIT_OK, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="submission.json files to check")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="strict",
        help="strict: what a new submission must carry (default); lenient: what historical files carry",
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Check every file, print every problem, end with one summary line."""
    invalid, unreadable = 0, 0
    for name in args.files:
        try:
            problems = validate_file(name, args.profile)
        except GolfkitError as exc:
            print(exc.one_line(), file=err)
            unreadable += 1
            continue
        for problem in problems:
            print(problem.line(name), file=out)
        invalid += bool(problems)
    valid = len(args.files) - invalid - unreadable
    verdict = "PASS" if valid == len(args.files) else "FAIL"
    summary = f"{verdict}: {valid} valid, {invalid} invalid, {unreadable} unreadable ({args.profile} profile)"
    print(summary, file=out)
    if unreadable:
        return EXIT_UNREADABLE
    return EXIT_INVALID if invalid else EXIT_OK
