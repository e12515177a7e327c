"""Size accounting: the code bytes the challenge counts, and the size report printed after serialization.

The challenge counts code bytes + compressed model bytes <= 16,000,000. Our code bytes are the size of the
train_gpt.py file that runs, as it sits on disk: `golfkit bundle` writes it as a self-extracting program
(the minified source, compressed, base85-encoded and exec'd; record/shipform.py writes that form, this
module reads it). The reference instead minified and compressed its source in memory and counted a stub
it never wrote; counting the real file removes that gap between what is counted and what is submitted.
"""

from __future__ import annotations

import base64
import importlib
import lzma
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from record.logkeys import fmt_code_size, fmt_code_size_note, fmt_size_report

CHALLENGE_CAP_BYTES = 16_000_000  # decimal bytes, code + compressed model

# The self-extracting stub. linecache gets the source so tracebacks, inspect.getsource (Triton's
# @jit needs it) and torch.compile see real lines; the filename is the script's own.
STUB_IMPORTS = {
    "lzma": "import lzma as Z,base64 as B,linecache as C",
    "brotli": "import brotli as Z,base64 as B,linecache as C",
}
STUB_BODY = (
    's=Z.decompress(B.b85decode("{payload}")).decode()\n'
    "C.cache[__file__]=(len(s),None,s.splitlines(True),__file__)\n"
    'exec(compile(s,__file__,"exec"))\n'
)
_STUB_PATTERN = re.compile(
    r'\Aimport (lzma|brotli) as Z,base64 as B,linecache as C\ns=Z\.decompress\(B\.b85decode\("([^"]*)"\)\)'
)


@dataclass(frozen=True)
class CodeSize:
    """`uncompressed`: bytes of the program's source; `compressed`: bytes of the file that runs (the
    number the challenge counts; equal to `uncompressed` for a plain file); `note`: why the count is
    only an estimate, if it is."""

    uncompressed: int
    compressed: int
    note: str = ""


def unwrap_self_extracting(text: str) -> str | None:
    """The source inside a self-extracting program, or None if `text` is a plain program."""
    match = _STUB_PATTERN.match(text)
    if not match:
        return None
    packed = base64.b85decode(match.group(2))
    if match.group(1) == "lzma":
        return lzma.decompress(packed).decode()
    import brotli

    return brotli.decompress(packed).decode()


def code_size_of_file(path: str | Path) -> CodeSize:
    """CodeSize of a program file: its own byte count, and the size of the source it carries."""
    data = Path(path).read_bytes()
    inner = unwrap_self_extracting(data.decode("utf-8", errors="replace"))
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
