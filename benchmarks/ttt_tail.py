"""What scoring only a TTT window's last chunk saves: one TTT step, whole-window loss against tail loss.

A TTT step scores and trains on one chunk (TTT_CHUNK_SIZE = 48 positions), the last positions of a
window of up to TTT_EVAL_SEQ_LEN = 2048. The reference computes the head, softcap and cross-entropy
at every position of the window and then keeps the chunk; `record.ttt` computes them for the last
chunk only (`GPT.per_token_loss(only_last=...)`). This benchmark runs one step both ways on the
default-size model (forward, then backward into the LoRA adapters, base weights frozen, as in TTT)
and reports, for each: FLOPs (torch's FlopCounterMode, device independent), the median time of
`--repeats` steps after one untimed step, and on a GPU the peak memory. It also checks that both give
the same chunk NLL and the same LoRA gradients.

    python benchmarks/ttt_tail.py                       # GPU: 64 rows x 2048; CPU: 2 rows
    python benchmarks/ttt_tail.py --rows 2 --repeats 2 --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from golfkit.runs.presets import tiny_config  # noqa: E402
from record.attention import pick_attention_backend  # noqa: E402
from record.config import Config  # noqa: E402
from record.evaluate import autocast_for  # noqa: E402
from record.lora import LoraSet  # noqa: E402
from record.model import GPT  # noqa: E402


def _triton_version() -> str | None:
    """The installed Triton, or None: results record it beside torch (tests/unit/test_docker_pins.py)."""
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None


def one_step(model: GPT, lora: LoraSet, x: torch.Tensor, y: torch.Tensor, chunk: int, tail: int | None) -> torch.Tensor:
    """Forward and backward of one TTT step; returns the chunk's NLL [rows, chunk]."""
    for p in lora.parameters():
        p.grad = None
    with autocast_for(x.device):
        nll = model.per_token_loss(x, y, lora=lora.rows_view(), doc_masked=False, only_last=tail)
    scored = nll[:, -chunk:]
    scored.mean(dim=-1).sum().backward()
    return scored.detach().float()


def measure(
    model: GPT, lora: LoraSet, x: torch.Tensor, y: torch.Tensor, chunk: int, tail: int | None, repeats: int
) -> dict:
    device = x.device
    counter = FlopCounterMode(display=False)
    with counter:
        nll = one_step(model, lora, x, y, chunk, tail)
    grads = [p.grad.detach().clone() for p in lora.parameters()]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        one_step(model, lora, x, y, chunk, tail)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return {
        "tflop_per_step": counter.get_total_flops() / 1e12,
        "median_seconds_per_step": statistics.median(seconds),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "_nll": nll,
        "_grads": grads,
    }


def run_benchmark(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    cfg = tiny_config() if args.tiny else Config()
    rows = args.rows or (64 if device.type == "cuda" else 2)
    width = args.width or cfg.ttt_eval_seq_len
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    if device.type == "cpu":
        model = model.float()
    for p in model.parameters():
        p.requires_grad_(False)
    lora = LoraSet.for_model(model, cfg, rows).to(device)
    lora.use_rows(torch.arange(rows, device=device))
    x = torch.randint(0, cfg.vocab_size, (rows, width), device=device)
    y = torch.randint(0, cfg.vocab_size, (rows, width), device=device)
    chunk = min(cfg.ttt_chunk_size, width)
    whole = measure(model, lora, x, y, chunk, None, args.repeats)
    tail = measure(model, lora, x, y, chunk, chunk, args.repeats)
    grad_diff = max((a - b).abs().max().item() for a, b in zip(whole["_grads"], tail["_grads"], strict=True))
    report = {
        "benchmark": "ttt_tail",
        "date": datetime.date.today().isoformat(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "triton": _triton_version(),
        "config": "tiny" if args.tiny else "default",
        "attention_backend": pick_attention_backend(device.type, device.index),
        "rows": rows,
        "width": width,
        "chunk": chunk,
        "repeats": args.repeats,
        "max_abs_nll_difference": (whole["_nll"] - tail["_nll"]).abs().max().item(),
        "max_abs_lora_grad_difference": grad_diff,
    }
    for name, result in (("whole_window", whole), ("last_chunk", tail)):
        report[name] = {k: v for k, v in result.items() if not k.startswith("_")}
    report["flop_ratio"] = tail["tflop_per_step"] / whole["tflop_per_step"]
    report["time_ratio"] = tail["median_seconds_per_step"] / whole["median_seconds_per_step"]
    return report


def default_output(report: dict) -> Path:
    where = report["device"].lower().replace("nvidia ", "").split()[0] if report["device"] != "cpu" else "cpu"
    if report["config"] == "tiny":
        where = "cpu-tiny"
    return REPO / "benchmarks" / "results" / f"ttt_tail_{where}_{report['date'][:7].replace('-', '')}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=0, help="documents in the step (default 64 on GPU, 2 on CPU)")
    parser.add_argument("--width", type=int, default=0, help="window width (default TTT_EVAL_SEQ_LEN)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per variant (median reported)")
    parser.add_argument("--tiny", action="store_true", help="tiny config on CPU (a smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    report = run_benchmark(args)
    out = args.out or default_output(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name in ("whole_window", "last_chunk"):
        r = report[name]
        memory = f", peak {r['peak_memory_gib']:.1f} GiB" if r["peak_memory_gib"] is not None else ""
        print(f"{name}: {r['tflop_per_step']:.3f} TFLOP, {r['median_seconds_per_step'] * 1000:.0f} ms/step{memory}")
    print(
        f"flop ratio {report['flop_ratio']:.3f}, time ratio {report['time_ratio']:.3f}; max |NLL diff| "
        f"{report['max_abs_nll_difference']:.2e}, max |grad diff| {report['max_abs_lora_grad_difference']:.2e} -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
