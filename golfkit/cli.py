"""Command-line dispatch only: each command lives in its own module, `golfkit/<folder>/<name>_cmd.py`.

Every command module defines ``configure(parser)`` to declare its options and
``run(args, out, err) -> int`` to do the work, so tests can call ``run`` with in-memory streams.
Modules are imported only when their command is used, so ``golfkit verify`` never imports torch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Sequence
from typing import TextIO

from golfkit import __version__
from golfkit.errors import USER_ERRORS

# name -> (module, one-line help). The order is the order `golfkit --help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "verify": ("golfkit.check.verify_cmd", "check a record folder against the track's rules"),
    "validate": ("golfkit.check.validate_cmd", "validate submission.json files against the schema"),
    "assemble": ("golfkit.pr.assemble_cmd", "build the records/<track>/<date>_<name>/ PR folder from seed logs"),
    "caseops": ("golfkit.data.caseops_cmd", "apply or undo the CaseOps transform (stdin -> stdout)"),
    "data": ("golfkit.data.data_cmd", "download the CaseOps dataset or build shards from documents"),
    "bundle": ("golfkit.pr.bundle_cmd", "turn the record/ package into a one-file train_gpt.py"),
    "params": ("golfkit.runs.params_cmd", "print the record's config and parameter count without training"),
    "record": ("golfkit.runs.record_cmd", "run the record's seeds (preflight, resume, verify, assemble)"),
    "demo": ("golfkit.runs.demo_cmd", "run the whole pipeline on CPU with an offline corpus"),
}

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="golfkit",
        description="Reproduce, check and submit OpenAI Parameter Golf records.",
        epilog=f"commands:\n{lines}\n\nRun `golfkit COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"golfkit {__version__}")
    parser.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    return parser


def run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Dispatch ``argv`` (without the program name) to one command; return its exit code."""
    argv = list(argv)
    if not argv or argv[0] not in COMMANDS:
        top = _top_parser()
        if not argv or argv[0] in ("-h", "--help"):
            top.print_help(out)
            return EXIT_OK if argv else EXIT_USAGE
        if argv[0] == "--version":
            print(f"golfkit {__version__}", file=out)
            return EXIT_OK
        print(f"golfkit: unknown command {argv[0]!r} (choose from {', '.join(COMMANDS)})", file=err)
        return EXIT_USAGE
    name, rest = argv[0], argv[1:]
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"golfkit {name}",
        description=module.__doc__ or help_,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.configure(parser)
    try:
        # argparse prints help and usage errors itself: send them to the streams we were given.
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if getattr(module, "INTERMIXED", False):
                args = parser.parse_intermixed_args(rest)
            else:
                args = parser.parse_args(rest)
    except SystemExit as exc:  # argparse already printed usage or help
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        return int(module.run(args, out, err))
    except USER_ERRORS as exc:  # GolfkitError or the record's RecordError: one line, no traceback
        print(f"golfkit {name}: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"golfkit {name}: interrupted", file=err)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
