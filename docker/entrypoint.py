"""The GPU image's entry point: run one nox session of the project with the image's own Python.

    IMAGE                          nox -s record -- seeds 42 314 999   (the record's three seeds)
    IMAGE SESSION [-- ARGS...]     nox -s SESSION -- ARGS
    IMAGE shell                    bash
    IMAGE exec CMD [ARGS...]       CMD ARGS
    IMAGE --dry-run ...            print the command instead of running it

nox runs with `--no-venv --no-install`: the image's locked environment *is* the environment, so no
session may install anything else (that would change the versions the log records). The script uses
only the standard library and finds the noxfile beside its own folder, so the same file runs outside
docker on a checkout (tests do that).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_ARGS = ("record", "--", "seeds", "42", "314", "999")
NOXFILE = Path(__file__).resolve().parents[1] / "noxfile.py"
USAGE = "usage: IMAGE [--dry-run] [SESSION [-- ARGS...] | shell | exec CMD [ARGS...]]"
_SESSION_NAME = re.compile(r"^[A-Za-z0-9_][\w.\-]*$")


class UsageError(Exception):
    """Arguments the entry point cannot turn into a command."""


def build_command(argv: Sequence[str], noxfile: Path = NOXFILE, python: str = sys.executable) -> list[str]:
    """The command `argv` (the container's arguments, without --dry-run) stands for."""
    args = list(argv) or list(DEFAULT_ARGS)
    head, rest = args[0], args[1:]
    if head == "shell":
        if rest:
            raise UsageError(f"shell takes no arguments, got {shlex.join(rest)} (use exec CMD ARGS)")
        return ["bash", "--login"]
    if head == "exec":
        if not rest:
            raise UsageError("exec needs a command (e.g. exec nvidia-smi)")
        return rest
    if not _SESSION_NAME.match(head):
        raise UsageError(f"{head!r} is not a nox session name ({USAGE})")
    if rest and rest[0] != "--":
        raise UsageError(f"put `--` between the session and its arguments: {head} -- {shlex.join(rest)}")
    command = [python, "-m", "nox", "--noxfile", str(noxfile), "--no-venv", "--no-install", "-s", head]
    return command + rest


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    dry_run = bool(args) and args[0] == "--dry-run"
    if dry_run:
        args = args[1:]
    try:
        command = build_command(args)
    except UsageError as exc:
        print(f"golfkit-image: {exc}", file=sys.stderr)
        return 2
    if dry_run:
        print(shlex.join(command))
        return 0
    print(f"golfkit-image: {shlex.join(command)}", file=sys.stderr, flush=True)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"golfkit-image: {command[0]}: {exc.strerror} (is it installed in the image?)", file=sys.stderr)
        return 127
    return 0  # not reached: execvp replaces this process


if __name__ == "__main__":
    raise SystemExit(main())
