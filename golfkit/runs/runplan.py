"""What a `nox -s record` invocation asks for, parsed from its arguments.

The command line is `seeds 42 314 999 [--nproc N] [--name NAME] [--force] [--preset P] [ENV=VALUE ...]`:
plain words keep the challenge's habit of listing seeds, options follow argparse, and `ENV=VALUE` words
override the record's hyperparameters for every seed alike.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

from golfkit.errors import GolfkitError

PRESETS = ("record", "demo")
_OVERRIDE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")

USAGE = (
    "nox -s record -- seeds 42 314 999 [--nproc N] [--name NAME] [--force] [--preset record|demo] "
    "[--runs-dir DIR] [ENV=VALUE ...]"
)


@dataclass(frozen=True, slots=True)
class RunPlan:
    """One multi-seed run: the seeds in order, how to launch each, and where the logs go."""

    seeds: tuple[int, ...]
    nproc: int
    preset: str
    runs_dir: Path
    name: str | None = None
    force: bool = False
    overrides: dict[str, str] = field(default_factory=dict)
    records_dir: Path = Path("records")
    author: str | None = None
    github_id: str | None = None
    blurb: str | None = None
    program: Path | None = None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "words",
        nargs="*",
        metavar="seeds SEED... | ENV=VALUE",
        help="`seeds` followed by one or more integer seeds, then any ENV=VALUE hyperparameter overrides "
        "(the record's variable names, e.g. MAX_WALLCLOCK_SECONDS=120)",
    )
    parser.add_argument("--nproc", type=int, default=None, help="processes (GPUs) per seed; default: all GPUs")
    parser.add_argument("--preset", choices=PRESETS, default="record", help="record (8xH100) or demo (CPU)")
    parser.add_argument("--name", help="also assemble records/track_10min_16mb/<date>_<NAME>/ at the end")
    parser.add_argument("--force", action="store_true", help="rerun seeds whose log is already complete")
    parser.add_argument("--runs-dir", type=Path, default=None, help="where seed logs go (default: runs/<preset>)")
    parser.add_argument("--records-dir", type=Path, default=Path("records"), help="root of assembled folders")
    parser.add_argument(
        "--program",
        type=Path,
        default=None,
        help="run this script (e.g. a bundled train_gpt.py) instead of the installed `record` package",
    )
    parser.add_argument("--author", help="author name for the assembled submission.json")
    parser.add_argument("--github-id", help="GitHub id for the assembled submission.json")
    parser.add_argument("--blurb", help="what the submission does, for the assembled submission.json")


def plan_from_args(args: argparse.Namespace, default_nproc: int = 1) -> RunPlan:
    """Turn parsed arguments into a RunPlan, refusing anything ambiguous with one line."""
    words: list[str] = list(args.words)
    seeds: list[int] = []
    overrides: dict[str, str] = {}
    if not words or words[0] != "seeds":
        raise GolfkitError("arguments", "expected `seeds` followed by the seeds to run", f"usage: {USAGE}")
    for word in words[1:]:
        match = _OVERRIDE.match(word)
        if match:
            name, value = match.groups()
            if name == "SEED":
                raise GolfkitError(word, "SEED is set per run from the seed list", "list seeds after `seeds`")
            overrides[name] = value
            continue
        if overrides:
            raise GolfkitError(word, "seeds must come before ENV=VALUE overrides", f"usage: {USAGE}")
        try:
            seeds.append(int(word))
        except ValueError:
            raise GolfkitError(word, "not an integer seed nor an ENV=VALUE override", f"usage: {USAGE}") from None
    if not seeds:
        raise GolfkitError("seeds", "the seed list is empty", "e.g. `seeds 42 314 999`")
    duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
    if duplicates:
        raise GolfkitError("seeds", f"seed {duplicates[0]} is listed twice", "list each seed once")
    nproc = args.nproc if args.nproc is not None else default_nproc
    if not 1 <= nproc <= 8:
        raise GolfkitError("--nproc", f"{nproc} is outside 1..8", "the record runs on 1 to 8 GPUs")
    if args.program is not None and not args.program.is_file():
        raise GolfkitError(str(args.program), "no such program file", "give the path of a train_gpt.py")
    runs_dir = args.runs_dir or Path("runs") / args.preset
    return RunPlan(
        seeds=tuple(seeds),
        nproc=nproc,
        preset=args.preset,
        runs_dir=runs_dir,
        name=args.name,
        force=args.force,
        overrides=overrides,
        records_dir=args.records_dir,
        author=args.author,
        github_id=args.github_id,
        blurb=args.blurb,
        program=args.program,
    )
