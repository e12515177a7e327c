"""Bytes and seconds of COMPRESSOR=pergroup vs brotli vs lzma on a full-size quantized model (CPU work).

Usage: python benchmarks/compress.py [--checkpoint final_model.pt] [--out benchmarks/results/...json]

Without a checkpoint the weights are random normal with the trained std pattern of the record's
families (matrices ~0.02-0.05, embedding 0.005 init scale is too small to matter since SDClip scales
per row), quantized by round-to-nearest on the SDClip grid: the codes' distribution is what the
compressors see, GPTQ's error feedback barely changes it. Random codes lack the row structure of trained
ones, so absolute sizes run above the record's; the comparison between compressors is the point.
The JSON names the machine, since lrzip's time depends on its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from record.artifact import deserialize_artifact, serialize_artifact_detailed
from record.config import Config
from record.model import GPT
from record.quant import quantize_state_dict, unbank_state_dict

# The round-to-nearest baseline is a test helper (the record never runs it).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from quant_helpers import round_to_nearest_weight

FAMILY_STD = {"tok_emb": 0.02, "qo_bank": 0.035, "kv_bank": 0.035, "mlp_up_bank": 0.03, "mlp_down_bank": 0.02}


def synthetic_state_dict(cfg: Config) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    with torch.device("meta"):
        shapes = {n: t.shape for n, t in GPT(cfg).state_dict().items()}
    out = {}
    for name, shape in shapes.items():
        std = next((s for key, s in FAMILY_STD.items() if name.startswith(key)), 0.1)
        out[name] = torch.randn(shape) * std
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a final_model.pt state dict (default: synthetic weights)")
    parser.add_argument("--compressors", nargs="+", default=["pergroup", "brotli", "lzma"])
    parser.add_argument("--out", default=f"benchmarks/results/compress_cpu_{time.strftime('%Y%m')}.json")
    args = parser.parse_args()
    cfg = Config()
    state = torch.load(args.checkpoint, map_location="cpu") if args.checkpoint else synthetic_state_dict(cfg)
    hessians = {n: torch.empty(0) for n, t in unbank_state_dict(state, cfg.num_layers).items() if t.numel() > 65536}
    started = time.perf_counter()
    qm = quantize_state_dict(
        state, hessians, cfg, quantizer=lambda w, h, sigmas, bits: round_to_nearest_weight(w, sigmas, bits)
    )
    quantize_seconds = time.perf_counter() - started
    results = {}
    for compressor in args.compressors:
        started = time.perf_counter()
        detailed = serialize_artifact_detailed(qm, compressor)
        serialize_seconds = time.perf_counter() - started
        started = time.perf_counter()
        deserialize_artifact(detailed.blob)
        results[compressor] = {
            "bytes": len(detailed.blob),
            "serialize_seconds": round(serialize_seconds, 2),
            "deserialize_seconds": round(time.perf_counter() - started, 2),
            "streams": [vars(s) for s in detailed.streams],
        }
        print(compressor, results[compressor]["bytes"], f"{serialize_seconds:.1f}s", flush=True)
    report = {
        "what": "artifact compressors on a full-size quantized model (default Config)",
        "weights": args.checkpoint or "synthetic normal, RTN on the SDClip grid",
        "machine": {
            "node": platform.node(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "quantize_seconds": round(quantize_seconds, 2),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
