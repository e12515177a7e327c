"""Size accounting: the code bytes the challenge counts, and the size report printed after serialization.

The challenge counts code bytes + compressed model bytes <= 16,000,000. Our code bytes are the size of the
train_gpt.py file that runs, as it sits on disk: `golfkit bundle` writes it as a self-extracting program
(the minified source, compressed, base85-encoded or held in a latin-1 string, and exec'd;
record/shipform.py writes that form, this module reads it). The reference instead minified and
compressed its source in memory and counted a stub it never wrote; counting the real file removes that
gap between what is counted and what is submitted.
"""

from __future__ import annotations

import base64
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from record.logkeys import fmt_code_size, fmt_code_size_note, fmt_size_report

CHALLENGE_CAP_BYTES = 16_000_000  # decimal bytes, code + compressed model

# The self-extracting stubs, (head, tail) around the compressed source, one per payload encoding:
# - base85: ASCII, 25% over the compressed bytes;
# - latin1: the bytes themselves in a triple-quoted string of a latin-1 file, one character per byte
#   (record/shipform.py escapes only backslash, CR, NUL and the quotes that could end the string),
#   about 2% over: what `golfkit bundle` ships by default (record/train.py unwraps its own file to log
#   the source, never decoding it as UTF-8).
# STUB_END puts the source in linecache so tracebacks, inspect.getsource (Triton's @jit needs it) and
# torch.compile see real lines; the filename is the script's own.
STUBS = {
    "base85": ('import {codec} as Z,base64 as B,linecache as C\ns=Z.decompress(B.b85decode("', '")).decode()\n'),
    "latin1": (
        '#coding:latin-1\nimport {codec} as Z,linecache as C\ns=Z.decompress("""',
        '""".encode("latin-1")).decode()\n',
    ),
}
STUB_END = 'C.cache[__file__]=(len(s),None,s.splitlines(True),__file__)\nexec(compile(s,__file__,"exec"))\n'


@dataclass(frozen=True)
class CodeSize:
    """`uncompressed`: bytes of the program's source; `compressed`: bytes of the file that runs (the
    number the challenge counts; equal to `uncompressed` for a plain file); `note`: why the count is
    only an estimate, if it is."""

    uncompressed: int
    compressed: int
    note: str = ""


def unwrap_self_extracting(data: bytes) -> str | None:
    """The source inside a self-extracting program (the file's bytes), or None if it is a plain one."""
    for encoding, (head, tail) in STUBS.items():
        match = re.match(re.escape(head).replace(re.escape("{codec}"), "(lzma|brotli)").encode(), data)
        end = data.rfind((tail + STUB_END).encode())
        if match and end >= match.end():
            body = data[match.end() : end]
            packed = base64.b85decode(body) if encoding == "base85" else body.decode("unicode_escape").encode("latin-1")
            return importlib.import_module(match.group(1).decode()).decompress(packed).decode()
    return None


def code_size_of_file(path: str | Path) -> CodeSize:
    """CodeSize of a program file: its own byte count, and the size of the source it carries."""
    data = Path(path).read_bytes()
    inner = unwrap_self_extracting(data)
    return CodeSize(uncompressed=len(inner.encode()) if inner is not None else len(data), compressed=len(data))


def code_size_of_running_program() -> CodeSize:
    """Code bytes of what runs now. The bundled train_gpt.py measures itself. Run as the `record`
    package (development), there is no single file: record/shipform.py, which the bundle leaves out
    (hence the import by name, on this path only), builds the shipped form in memory and measures it."""
    here = Path(__file__)
    if here.name == "sizes.py" and (here.parent / "__init__.py").is_file():
        return importlib.import_module("record.shipform").estimate_code_size(here.parent)
    return code_size_of_file(here)


def log_code_size(code: CodeSize, log: Callable[[str], None]) -> None:
    log(fmt_code_size("uncompressed", code.uncompressed))
    log(fmt_code_size("compressed", code.compressed))
    if code.note:
        log(fmt_code_size_note(code.note))


# ---------------------------------------------------------------- size report


def tensor_family(key: str) -> str:
    """`blocks.3.mlp.fc.weight.q` -> `mlp.fc.weight codes`: layer-free name + what the tensor holds."""
    parts = key.split(".")
    if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit():
        parts = parts[2:]
    suffix = parts[-1]
    kinds = {"q": "codes", "scale": "scales", "gq": "gate codes", "gs": "gate scales"}
    if suffix in kinds:
        return f"{'.'.join(parts[:-1])} {kinds[suffix]}"
    if suffix.startswith("lq"):
        return f"{'.'.join(parts[:-1])} lqer"
    return f"{'.'.join(parts)} passthrough"


def build_size_report(
    streams: Sequence[object],
    tensor_bytes: Mapping[str, int],
    model_bytes: int,
    code: CodeSize,
    compressor: str,
    cap: int = CHALLENGE_CAP_BYTES,
) -> dict:
    """Bytes per stream (raw -> stored), per tensor family and per tensor (raw), and the headroom.

    `streams` are record.artifact.StreamSize rows; `tensor_bytes` maps storage keys to raw bytes.
    A family stored in its own stream (the per-group codes) also gets that stream's stored bytes.
    """
    stream_rows = [asdict(s) for s in streams]
    stored_by_stream = {row["name"]: row["stored_bytes"] for row in stream_rows}
    families: dict[str, dict[str, int]] = {}
    for key, size in sorted(tensor_bytes.items()):
        family = families.setdefault(tensor_family(key), {"tensors": 0, "raw_bytes": 0})
        family["tensors"] += 1
        family["raw_bytes"] += size
    for name, family in families.items():
        group = name.removesuffix(" codes")
        if name.endswith(" codes") and group in stored_by_stream:
            family["stored_bytes"] = stored_by_stream[group]
    total = model_bytes + code.compressed
    return {
        "compressor": compressor,
        "model_bytes": model_bytes,
        "code_bytes": code.compressed,
        "code_bytes_uncompressed": code.uncompressed,
        "total_bytes": total,
        "cap_bytes": cap,
        "headroom_bytes": cap - total,
        "streams": stream_rows,
        "families": families,
        "tensors": dict(sorted(tensor_bytes.items())),
    }


def size_report_lines(report: Mapping) -> list[str]:
    """The human-readable report: one line per stream and per family, then the totals."""
    lines = []
    for row in report["streams"]:
        ratio = row["stored_bytes"] / row["raw_bytes"] if row["raw_bytes"] else 0.0
        fields = {"stream": row["name"], "codec": row["codec"], "raw": row["raw_bytes"]}
        fields |= {"stored": row["stored_bytes"], "ratio": f"{ratio:.4f}", "time": f"{row['seconds']:.1f}s"}
        lines.append(fmt_size_report(fields))
    for name, family in report["families"].items():
        fields = {"family": name.replace(" ", "_"), "tensors": family["tensors"], "raw": family["raw_bytes"]}
        if "stored_bytes" in family:
            fields["stored"] = family["stored_bytes"]
        lines.append(fmt_size_report(fields))
    totals = {"model": report["model_bytes"], "code": report["code_bytes"], "total": report["total_bytes"]}
    totals |= {"cap": report["cap_bytes"], "headroom": report["headroom_bytes"]}
    lines.append(fmt_size_report(totals))
    return lines
