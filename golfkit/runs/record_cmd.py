"""`golfkit record` (behind `nox -s record`): preflight, then every seed in turn, then verify and assemble.

Usage: `golfkit record seeds 42 314 999 [--nproc N] [--name NAME] [--force] [ENV=VALUE ...]`.
Seeds whose log is already complete are skipped (their log is never touched), so an interrupted run is
resumed by running the same command again. Ctrl-C stops the current seed cleanly and keeps its log as
`train_seed<S>.partial.log`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from golfkit.runs import presets
from golfkit.runs.runner import run_plan
from golfkit.runs.runplan import configure as configure_plan
from golfkit.runs.runplan import plan_from_args

# `seeds 42 ENV=VALUE` words may follow options: parse positionals and options intermixed.
INTERMIXED = True


def configure(parser: argparse.ArgumentParser) -> None:
    configure_plan(parser)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan = plan_from_args(args, default_nproc=presets.default_nproc(args.preset))
    return run_plan(plan, out, err)


def main() -> int:
    from golfkit.cli import run as cli_run

    return cli_run(["record", *sys.argv[1:]], sys.stdout, sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
