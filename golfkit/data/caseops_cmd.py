"""Apply or undo the CaseOps transform (lossless_caps_caseops_v1): UTF-8 text on stdin, result on stdout.

  golfkit caseops encode < doc.txt > doc.caseops
  golfkit caseops decode < doc.caseops > doc.txt

Nothing else is written to stdout, so the two commands pipe into each other and round-trip exactly.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from golfkit.data.caseops import caseops_decode, caseops_encode
from golfkit.errors import GolfkitError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("direction", choices=("encode", "decode"), help="encode = apply, decode = undo")
    parser.add_argument("--input", default="-", help="read this file instead of stdin")


def _read_utf8(source: str) -> str:
    """The input as text, decoded as UTF-8 whatever the locale, line endings untouched."""
    if source == "-":
        stream = sys.stdin
        raw = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
    else:
        try:
            with open(source, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise GolfkitError(source, f"cannot read ({exc.strerror})", "check the path") from None
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = "stdin" if source == "-" else source
        raise GolfkitError(where, f"not UTF-8 (byte {exc.start})", "convert the text to UTF-8") from None


def _write_utf8(out: TextIO, text: str) -> None:
    """Write UTF-8 bytes when the stream has a byte layer (the private-use operators must survive any
    locale); in-memory text streams get the string."""
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(text)
        return
    out.flush()
    buffer.write(text.encode("utf-8"))
    buffer.flush()


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    text = _read_utf8(args.input)
    result = caseops_encode(text) if args.direction == "encode" else caseops_decode(text)
    _write_utf8(out, result)
    return 0
