"""Turn the record/ package into the one file the challenge runs and counts: train_gpt.py.

The modules of record/__init__.py's BUNDLE_ORDER are concatenated under `# ---- record/<mod>.py ----`
banners; `from record.<mod> import ...` lines (one-line or parenthesized) are dropped, since every
name now lives in one namespace, and `from __future__` imports are hoisted to the top. A module named
in BUNDLE_ORDER but missing, a record/*.py file missing from BUNDLE_ORDER, a top-level name defined in
two modules, or an import the concatenation would break is an error, never skipped silently.

The file is then written in the smallest of three forms, measured each time (`--wrap` forces one):
- plain: the concatenated source, readable as is;
- lzma or brotli: a self-extracting program (record/shipform.py writes it, record/sizes.py reads it)
  carrying the source minified (python-minifier; names renamed except those read at run time,
  annotations kept only where custom_op, triton.jit or dataclasses read them), compressed, and
  held byte for byte in a string of a latin-1 file (about 2% over the compressed bytes; the default)
  or, with `--payload base85`, base85-encoded as the reference does (25% over, pure ASCII).
The brotli form wins. The code bytes the challenge counts are the written file's size, which `golfkit
bundle` prints and the program measures itself at run time. Output is byte-stable: the same record/
gives the same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from golfkit.pr.bundle import PAYLOADS, RECORD_DIR, WRAPS, build_program
from record.shipform import DEFAULT_PAYLOAD


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="train_gpt.py", help="where to write the program (default train_gpt.py)")
    parser.add_argument("--wrap", choices=("auto", *WRAPS), default="auto", help="file form; auto picks the smallest")
    parser.add_argument(
        "--payload",
        choices=PAYLOADS,
        default=DEFAULT_PAYLOAD,
        help="how the self-extracting form holds the compressed source: latin1 (default) keeps the compressed "
        "bytes in a string of a latin-1 file, ~2%% over them; base85 is pure ASCII, 25%% over",
    )
    parser.add_argument("--record-dir", default=str(RECORD_DIR), help=argparse.SUPPRESS)
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="leave out BUNDLE_ORDER modules that do not exist yet (with a warning)",
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    data, sizes = build_program(Path(args.record_dir), args.wrap, args.allow_missing, err, args.payload)
    path = Path(args.out)
    path.write_bytes(data)
    measured = ", ".join(f"{form} {size}" for form, size in sizes.items())
    print(f"wrote {path} ({path.stat().st_size} bytes; measured: {measured})", file=out)
    print(f"counted code bytes: {path.stat().st_size} (the file's size; the challenge counts it)", file=out)
    return 0
