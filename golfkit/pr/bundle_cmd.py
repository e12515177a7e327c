"""Turn the record/ package into the one file the challenge runs and counts: train_gpt.py.

The modules of record/__init__.py's BUNDLE_ORDER are concatenated under `# ---- record/<mod>.py ----`
banners; `from record.<mod> import ...` lines (one-line or parenthesized) are dropped, since every
name now lives in one namespace, and `from __future__` imports are hoisted to the top. A module named
in BUNDLE_ORDER but missing, a record/*.py file missing from BUNDLE_ORDER, a top-level name defined in
two modules, or an import the concatenation would break is an error, never skipped silently.

The file is then written in the smallest of three forms, measured each time (`--wrap` forces one):
- plain: the concatenated source, readable as is;
- lzma or brotli: a self-extracting program (record/shipform.py writes it, record/sizes.py reads it)
  carrying the source minified like the reference's (python-minifier, the reference's options;
  annotations kept only where custom_op or triton.jit read them), compressed and base85-encoded.
The brotli form wins. The code bytes the challenge counts are the written file's size, which `golfkit
bundle` prints and the program measures itself at run time. Output is byte-stable: the same record/
gives the same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from golfkit.pr.bundle import RECORD_DIR, WRAPS, build_program


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="train_gpt.py", help="where to write the program (default train_gpt.py)")
    parser.add_argument("--wrap", choices=("auto", *WRAPS), default="auto", help="file form; auto picks the smallest")
    parser.add_argument("--record-dir", default=str(RECORD_DIR), help=argparse.SUPPRESS)
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="leave out BUNDLE_ORDER modules that do not exist yet (with a warning)",
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    text, sizes = build_program(Path(args.record_dir), args.wrap, args.allow_missing, err)
    path = Path(args.out)
    path.write_bytes(text.encode())
    measured = ", ".join(f"{form} {size}" for form, size in sizes.items())
    print(f"wrote {path} ({path.stat().st_size} bytes; measured: {measured})", file=out)
    print(f"counted code bytes: {path.stat().st_size} (the file's size; the challenge counts it)", file=out)
    return 0
