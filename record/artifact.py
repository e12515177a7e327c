"""The submitted model file: the only reader and writer of its format (style rule 12). Making the
model that goes into it (calibration, GPTQ, the size report) is record/export.py's job.

A `QuantizedModel` (record.quant) becomes one blob of named, checksummed streams:

    magic "GKQA" | version u8 | stream count u8
    per stream: name length u8, name (utf-8), codec u8, stored length u32 LE, crc32 u32 LE
    crc32 u32 LE of everything above
    the streams' bytes, back to back

COMPRESSOR=pergroup (the record's) writes 9 streams like PR #1855: one per matrix family in GROUP_ORDER
(int8 codes of every layer, rows of the hot families reordered by an L1 nearest-neighbour chain, each
matrix transposed, compressed by the `lrzip` binary with ZPAQ), then "remainder" (scales, LQER factors,
gates, fp16 passthrough and the metadata; brotli) and "perms" (the row orders as uint16; brotli).
COMPRESSOR=brotli or lzma write one "model" stream.

Where this differs from the reference, on purpose:
- the header carries a version, stream names and a CRC32 per stream, so a truncated or corrupted file
  is refused naming the stream instead of loading wrong weights (the reference has neither);
- the remainder is our own tensor pack (a JSON index + raw little-endian bytes) instead of torch.save's
  pickle-in-zip: no code runs on load and a few KB of zip overhead go away;
- lrzip runs with `-T` (ZPAQ always runs: without it lrzip's LZ4 pre-test stores near-random int6
  data uncompressed) and `-p 1` (output independent of the machine's core count); the groups compress
  in parallel threads, on rank 0 only;
- the L1 chain is computed from one pairwise-distance matrix (same greedy rule and tie-break).
"""

from __future__ import annotations

import concurrent.futures
import json
import lzma
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from record.config import Config
from record.errors import RecordError
from record.logkeys import fmt_deserialize_done, fmt_deserialize_start
from record.quant import QuantizedModel, dequantize

ARTIFACT_MAGIC = b"GKQA"
ARTIFACT_VERSION = 1

# Matrix families compressed as their own lrzip streams, in stream order; names are the per-layer
# suffix (or the top-level name for tok_emb) of the `.q` codes.
GROUP_ORDER: tuple[str, ...] = (
    "tok_emb.weight",
    "attn.c_k.weight",
    "attn.c_q.weight",
    "attn.c_v.weight",
    "attn.proj.weight",
    "mlp.fc.weight",
    "mlp.proj.weight",
)
SIMSORT_GROUPS = frozenset({"tok_emb.weight", "attn.c_q.weight", "mlp.fc.weight"})
REMAINDER_STREAM, PERMS_STREAM, MODEL_STREAM = "remainder", "perms", "model"

CODEC_NONE, CODEC_LRZIP, CODEC_BROTLI, CODEC_LZMA = 0, 1, 2, 3
CODEC_NAMES = {CODEC_NONE: "none", CODEC_LRZIP: "lrzip", CODEC_BROTLI: "brotli", CODEC_LZMA: "lzma"}
LRZIP_COMPRESS_ARGS = ("-Q", "-T", "-z", "-L", "9", "-p", "1")
BROTLI_QUALITY, BROTLI_REMAINDER_LGWIN = 11, 24
LZMA_PRESET = 9


# ---------------------------------------------------------------- compressors


def _artifact_brotli():  # -> the brotli module
    """Imported late so the program still imports on a box without brotli (COMPRESSOR=lzma)."""
    try:
        import brotli
    except ImportError as exc:
        raise RecordError("artifact", "the brotli package is missing", "pip install brotli") from exc
    return brotli


def preflight_compressor(cfg: Config) -> None:
    """Fail at start-up, not after ten minutes of training, if the chosen compressor cannot run."""
    if cfg.compressor in ("pergroup", "brotli"):
        _artifact_brotli()
    if cfg.compressor == "pergroup" and shutil.which("lrzip") is None:
        raise RecordError(
            "COMPRESSOR=pergroup", "the lrzip binary is not on PATH", "apt-get install lrzip, or set COMPRESSOR=brotli"
        )


def _lrzip(data: bytes, label: str, decompress: bool) -> bytes:
    """Run the lrzip binary on temp files (it has no usable stdin mode for ZPAQ); the files go away."""
    with tempfile.TemporaryDirectory(prefix="golf_lrzip_") as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out"
        src.write_bytes(data)
        args = ["-Q", "-d", "-f"] if decompress else list(LRZIP_COMPRESS_ARGS)
        try:
            subprocess.run(["lrzip", *args, "-o", str(dst), str(src)], capture_output=True, check=True)
        except FileNotFoundError as exc:
            raise RecordError(f"artifact stream {label!r}", "lrzip is not installed", "apt-get install lrzip") from exc
        except subprocess.CalledProcessError as exc:
            tail = exc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            what = "decompress" if decompress else "compress"
            raise RecordError(f"artifact stream {label!r}", f"lrzip failed to {what}: {tail[0]}") from exc
        return dst.read_bytes()


def compress_stream(data: bytes, codec: int, label: str, lgwin: int = 22) -> bytes:
    if codec == CODEC_NONE:
        return data
    if codec == CODEC_LRZIP:
        return _lrzip(data, label, decompress=False)
    if codec == CODEC_BROTLI:
        return _artifact_brotli().compress(data, quality=BROTLI_QUALITY, lgwin=lgwin)
    return lzma.compress(data, preset=LZMA_PRESET)


def decompress_stream(data: bytes, codec: int, label: str) -> bytes:
    try:
        if codec == CODEC_NONE:
            return data
        if codec == CODEC_LRZIP:
            return _lrzip(data, label, decompress=True)
        if codec == CODEC_BROTLI:
            return _artifact_brotli().decompress(data)
        if codec == CODEC_LZMA:
            return lzma.decompress(data)
    except (lzma.LZMAError, OSError) as exc:
        raise RecordError(f"artifact stream {label!r}", f"cannot decompress: {exc}") from exc
    except Exception as exc:  # brotli.error has no stable import path
        if type(exc).__name__ != "error":
            raise
        raise RecordError(f"artifact stream {label!r}", f"cannot decompress: {exc}") from exc
    raise RecordError(f"artifact stream {label!r}", f"unknown codec {codec}", "the file is from another version")


# ---------------------------------------------------------------- container


def pack_streams(streams: list[tuple[str, int, bytes]]) -> bytes:
    """Header (names, codecs, lengths, CRC32s, header CRC) + the stored streams."""
    table = ARTIFACT_MAGIC + struct.pack("<BB", ARTIFACT_VERSION, len(streams))
    for name, codec, data in streams:
        raw_name = name.encode()
        table += struct.pack("<B", len(raw_name)) + raw_name
        table += struct.pack("<BII", codec, len(data), zlib.crc32(data))
    table += struct.pack("<I", zlib.crc32(table))
    return table + b"".join(data for _, _, data in streams)


def unpack_streams(blob: bytes) -> list[tuple[str, int, bytes]]:
    """Check and split a container; every failure names the stream (or the header) at fault."""
    where = "artifact header"
    fix = "the file is truncated or corrupted: copy or re-create it"
    if len(blob) < 6 or blob[:4] != ARTIFACT_MAGIC:
        raise RecordError(where, "not a golfkit model artifact (bad magic)", "pass the final_model.int6.ptz file")
    version, count = struct.unpack_from("<BB", blob, 4)
    if version != ARTIFACT_VERSION:
        raise RecordError(where, f"format version {version}, this program reads {ARTIFACT_VERSION}", "re-export")
    pos, entries = 6, []
    try:
        for _ in range(count):
            (name_len,) = struct.unpack_from("<B", blob, pos)
            name = blob[pos + 1 : pos + 1 + name_len].decode()
            codec, length, crc = struct.unpack_from("<BII", blob, pos + 1 + name_len)
            entries.append((name, codec, length, crc))
            pos += 1 + name_len + 9
        (header_crc,) = struct.unpack_from("<I", blob, pos)
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordError(where, "truncated or unreadable stream table", fix) from exc
    if zlib.crc32(blob[:pos]) != header_crc:
        raise RecordError(where, "checksum mismatch in the stream table", fix)
    pos += 4
    streams = []
    for name, codec, length, crc in entries:
        data = blob[pos : pos + length]
        if len(data) != length:
            raise RecordError(f"artifact stream {name!r}", f"truncated: needs {length} bytes, {len(data)} remain", fix)
        if zlib.crc32(data) != crc:
            raise RecordError(f"artifact stream {name!r}", "checksum mismatch (corrupted bytes)", fix)
        streams.append((name, codec, data))
        pos += length
    if pos != len(blob):
        raise RecordError("artifact", f"{len(blob) - pos} unexpected bytes after the last stream", fix)
    return streams


def pack_tensors(tensors: Mapping[str, Tensor], meta: Mapping[str, object]) -> bytes:
    """u32 index length | JSON index {meta, tensors: [[name, dtype, shape]...]} | raw LE tensor bytes."""
    names = sorted(tensors)
    index = {
        "meta": meta,
        "tensors": [[n, str(tensors[n].dtype).removeprefix("torch."), list(tensors[n].shape)] for n in names],
    }
    head = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
    body = [tensors[n].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for n in names]
    return struct.pack("<I", len(head)) + head + b"".join(body)


def unpack_tensors(data: bytes, label: str) -> tuple[dict[str, Tensor], dict]:
    try:
        (head_len,) = struct.unpack_from("<I", data, 0)
        index = json.loads(data[4 : 4 + head_len])
        pos, tensors = 4 + head_len, {}
        for name, dtype_name, shape in index["tensors"]:
            dtype = getattr(torch, dtype_name)
            size = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
            chunk = bytearray(data[pos : pos + size])
            if len(chunk) != size:
                raise ValueError(f"{name} is cut short")
            tensors[name] = (
                torch.frombuffer(chunk, dtype=torch.uint8).view(dtype).reshape(shape)
                if size
                else (torch.empty(shape, dtype=dtype))
            )
            pos += size
        if pos != len(data):
            raise ValueError("trailing bytes")
    except (ValueError, KeyError, TypeError, AttributeError, struct.error) as exc:
        raise RecordError(f"artifact stream {label!r}", f"malformed tensor pack: {exc}", "re-export") from exc
    return tensors, index["meta"]


def _artifact_meta(qm: QuantizedModel) -> dict[str, object]:
    return {
        "tags": qm.tags,
        "dtypes": qm.dtypes,
        "shapes": {n: list(s) for n, s in qm.shapes.items()},
        "num_layers": qm.num_layers,
    }


def _artifact_model_from(tensors: dict[str, Tensor], meta: Mapping) -> QuantizedModel:
    return QuantizedModel(
        tensors=tensors,
        tags=dict(meta["tags"]),
        dtypes=dict(meta["dtypes"]),
        shapes={n: tuple(s) for n, s in meta["shapes"].items()},
        num_layers=int(meta["num_layers"]),
    )


# ---------------------------------------------------------------- per-group layout


def similarity_order(rows: np.ndarray) -> np.ndarray:
    """Greedy L1 nearest-neighbour chain over the rows: start at row 0, then always the closest unused
    row (lowest index on ties). Neighbouring rows then differ little, which the ZPAQ model exploits.

    The reference recomputes distances at every step in numpy; one pairwise matrix gives the same
    chain (integer sums are exact in fp32) with O(n²) work after the O(n²·cols) matrix.
    """
    n = rows.shape[0]
    if n > 65_536:
        raise RecordError("artifact", f"{n} rows exceed the uint16 permutation format", "use COMPRESSOR=brotli")
    values = torch.from_numpy(rows.astype(np.float32))
    distances = torch.cdist(values, values, p=1)
    distances[:, 0] = float("inf")
    order = np.empty(n, dtype=np.uint16)
    current = 0
    for step in range(1, n):
        current = int(torch.argmin(distances[current]))
        order[step] = current
        distances[:, current] = float("inf")
    order[0] = 0
    return order


def _artifact_group_of(key: str) -> tuple[str, int] | None:
    """(group, layer) of an int8 `.q` storage key that belongs to a per-group stream, else None."""
    if not key.endswith(".q"):
        return None
    base = key[:-2]
    parts = base.split(".")
    if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit():
        group, layer = ".".join(parts[2:]), int(parts[1])
    else:
        group, layer = base, 0
    return (group, layer) if group in GROUP_ORDER else None


def _pergroup_streams(qm: QuantizedModel) -> tuple[list[tuple[str, bytes]], dict[str, Tensor], bytes, dict]:
    """Split the codes into per-family raw byte strings; everything else goes to the remainder."""
    members: dict[str, list[tuple[int, str]]] = {g: [] for g in GROUP_ORDER}
    remainder: dict[str, Tensor] = {}
    for key in sorted(qm.tensors):
        where = _artifact_group_of(key) if qm.tensors[key].dtype == torch.int8 else None
        if where is None:
            remainder[key] = qm.tensors[key]
        else:
            members[where[0]].append((where[1], key))
    raw_groups, perms, manifest = [], [], {}
    for group in GROUP_ORDER:
        chunks, manifest[group] = [], []
        for _, key in sorted(members[group]):
            codes = qm.tensors[key].numpy()
            manifest[group].append([key, list(codes.shape)])
            if codes.ndim == 2:
                if group in SIMSORT_GROUPS:
                    order = similarity_order(codes)
                    perms.append(order.astype("<u2").tobytes())
                    codes = codes[order]
                codes = np.ascontiguousarray(codes.T)
            chunks.append(codes.tobytes())
        raw_groups.append((group, b"".join(chunks)))
    return raw_groups, remainder, b"".join(perms), manifest


def _restore_groups(raw: Mapping[str, bytes], perms: bytes, manifest: Mapping) -> dict[str, Tensor]:
    tensors, perm_pos = {}, 0
    for group in GROUP_ORDER:
        data, pos = raw.get(group, b""), 0
        for key, shape in manifest.get(group, []):
            size = int(np.prod(shape))
            if pos + size > len(data):
                raise RecordError(f"artifact stream {group!r}", "holds fewer bytes than its manifest", "re-export")
            codes = np.frombuffer(data, dtype=np.int8, count=size, offset=pos)
            pos += size
            if len(shape) == 2:
                rows, cols = shape
                codes = codes.reshape(cols, rows).T
                if group in SIMSORT_GROUPS:
                    order = np.frombuffer(perms, dtype="<u2", count=rows, offset=perm_pos).astype(np.int64)
                    perm_pos += 2 * rows
                    restored = np.empty_like(codes)
                    restored[order] = codes
                    codes = restored
            tensors[key] = torch.from_numpy(np.ascontiguousarray(codes).reshape(shape))
        if pos != len(data):
            raise RecordError(f"artifact stream {group!r}", "holds more bytes than its manifest", "re-export")
    return tensors


# ---------------------------------------------------------------- serialize / deserialize


@dataclass
class StreamSize:
    name: str
    codec: str
    raw_bytes: int
    stored_bytes: int
    seconds: float


@dataclass
class SerializedArtifact:
    """The blob plus what each stream weighed before and after compression (for the size report)."""

    blob: bytes
    streams: list[StreamSize] = field(default_factory=list)


def serialize_artifact_detailed(qm: QuantizedModel, compressor: str, workers: int = 7) -> SerializedArtifact:
    meta = _artifact_meta(qm)
    jobs: list[tuple[str, int, bytes, int]] = []  # name, codec, raw, lgwin
    if compressor == "pergroup":
        raw_groups, remainder, perms, manifest = _pergroup_streams(qm)
        jobs += [(name, CODEC_LRZIP if raw else CODEC_NONE, raw, 22) for name, raw in raw_groups]
        jobs.append((REMAINDER_STREAM, CODEC_BROTLI, pack_tensors(remainder, {**meta, "manifest": manifest}), 24))
        jobs.append((PERMS_STREAM, CODEC_BROTLI if perms else CODEC_NONE, perms, 22))
    elif compressor in ("brotli", "lzma"):
        codec = CODEC_BROTLI if compressor == "brotli" else CODEC_LZMA
        jobs.append((MODEL_STREAM, codec, pack_tensors(qm.tensors, meta), BROTLI_REMAINDER_LGWIN))
    else:
        raise RecordError("COMPRESSOR", f"unknown compressor {compressor!r}", "use pergroup, brotli or lzma")

    def run(job: tuple[str, int, bytes, int]) -> tuple[bytes, float]:
        started = time.perf_counter()
        stored = compress_stream(job[2], job[1], job[0], lgwin=job[3])
        return stored, time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(run, jobs))
    blob = pack_streams([(name, codec, stored) for (name, codec, _, _), (stored, _) in zip(jobs, results, strict=True)])
    sizes = [
        StreamSize(name, CODEC_NAMES[codec], len(raw), len(stored), seconds)
        for (name, codec, raw, _), (stored, seconds) in zip(jobs, results, strict=True)
    ]
    return SerializedArtifact(blob=blob, streams=sizes)


def deserialize_artifact(blob: bytes, workers: int = 7, log: Callable[[str], None] | None = None) -> QuantizedModel:
    """Check every stream, decompress (lrzip groups in parallel) and rebuild the exact quantized tensors;
    `log` gets the line naming the decompressor once the stream table says which one it is."""
    streams = unpack_streams(blob)
    if log:
        model = [CODEC_NAMES[codec] for name, codec, _ in streams if name == MODEL_STREAM]
        log(fmt_deserialize_start(model[0] if model else "pergroup"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        raw = dict(
            zip(
                [name for name, _, _ in streams],
                pool.map(lambda s: decompress_stream(s[2], s[1], s[0]), streams),
                strict=True,
            )
        )
    if MODEL_STREAM in raw:
        tensors, meta = unpack_tensors(raw[MODEL_STREAM], MODEL_STREAM)
        return _artifact_model_from(tensors, meta)
    if REMAINDER_STREAM not in raw:
        raise RecordError("artifact", "has neither a 'model' nor a 'remainder' stream", "re-export")
    tensors, meta = unpack_tensors(raw[REMAINDER_STREAM], REMAINDER_STREAM)
    tensors.update(_restore_groups(raw, raw.get(PERMS_STREAM, b""), meta["manifest"]))
    return _artifact_model_from(tensors, meta)


def read_artifact(path: str | Path, log: Callable[[str], None] | None = None) -> QuantizedModel:
    """Load and check an artifact file, with the reference's two deserialize log lines."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(str(path), "artifact not found", "run the export step first")
    started = time.perf_counter()
    qm = deserialize_artifact(path.read_bytes(), log=log)
    if log:
        log(fmt_deserialize_done(time.perf_counter() - started))
    return qm


def load_quantized_model(path: str | Path, cfg: Config, log: Callable[[str], None] | None = None) -> dict[str, Tensor]:
    """The dequantized, re-banked state dict of an artifact, ready for `GPT.load_state_dict(strict=True)`."""
    qm = read_artifact(path, log)
    if qm.num_layers != cfg.num_layers:
        raise RecordError(str(path), f"has {qm.num_layers} layers, config says {cfg.num_layers}", "set NUM_LAYERS")
    return dequantize(qm)
