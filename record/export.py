"""The export stage: the trained model becomes the submitted file, with the reference's log lines.

The raw checkpoint is saved and weighed, the code is weighed, GPTQ calibrates on training data
(record.data), quantizes (record.quant), record.artifact writes the file, and the size report
(record.sizes) says where the bytes went. Only rank 0 does the work; the others wait at a barrier.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from record.artifact import SerializedArtifact, serialize_artifact_detailed
from record.config import Config
from record.data import calibration_batches
from record.dist import DistEnv, barrier
from record.logkeys import (
    fmt_quantized_weights,
    fmt_serialize_done,
    fmt_serialize_start,
    fmt_serialized_model,
    fmt_serialized_quantized,
    fmt_total_submission,
)
from record.quant import QuantizedModel, quantization_summary, quantize_state_dict, timed_hessians
from record.sizes import CodeSize, build_size_report, code_size_of_running_program, log_code_size, size_report_lines


def timed_serialize(qm: QuantizedModel, cfg: Config, log: Callable[[str], None]) -> SerializedArtifact:
    """serialize_artifact_detailed with the reference's log lines around the per-group compression."""
    if cfg.compressor == "pergroup":
        log(fmt_serialize_start())
    started = time.perf_counter()
    result = serialize_artifact_detailed(qm, cfg.compressor)
    if cfg.compressor == "pergroup":
        log(fmt_serialize_done(time.perf_counter() - started))
    return result


# ---------------------------------------------------------------- the export step


@dataclass
class ExportResult:
    """What the export wrote and weighed; `report` is the size report (JSON-ready)."""

    path: Path
    model_bytes: int
    code: CodeSize
    total_bytes: int
    report: dict


def export_model(
    model: torch.nn.Module,
    cfg: Config,
    dist: DistEnv,
    log: Callable[[str], None],
    code_bytes: CodeSize | None = None,
    batches: object | None = None,
) -> ExportResult:
    """The whole serialize step with the reference's log lines: raw checkpoint size, code size,
    Hessians, GPTQ + LQER, compression, the file, the size lines and the size report.

    `model` is the plain (uncompiled, unwrapped) GPT holding the final (EMA) weights. Only rank 0
    quantizes and compresses; the reference had every rank repeat it and kept rank 0's file, so the
    file is the same and 7 ranks stop competing for CPU (docs/quant.md §5). Other ranks wait at a
    barrier and then read the file. Rank 0 calibrates on its own shards (rank-seeded, as in the
    reference), in micro-batches of the training size. `batches` overrides the calibration data.
    """
    out_dir = Path(cfg.artifact_dir or ".")
    path = out_dir / cfg.quantized_model_path
    code = code_bytes or code_size_of_running_program()
    result = ExportResult(path=path, model_bytes=0, code=code, total_bytes=0, report={})
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        raw_path = out_dir / cfg.model_path
        torch.save(model.state_dict(), raw_path)
        log(fmt_serialized_model(raw_path.stat().st_size))
        log_code_size(code, log)
        if batches is None:
            micro_tokens = cfg.train_batch_tokens // (dist.world_size * dist.grad_accum_steps)
            batches = calibration_batches(
                cfg, 0, dist.world_size, cfg.train_seq_len, micro_tokens, cfg.gptq_calibration_batches, dist.device
            )
        hessians = timed_hessians(model, batches, log)
        qm = quantize_state_dict(model.state_dict(), hessians, cfg)
        log(fmt_quantized_weights(quantization_summary(qm)))
        serialized = timed_serialize(qm, cfg, log)
        path.write_bytes(serialized.blob)
        model_bytes = path.stat().st_size
        codec = f"quantized+{cfg.compressor}"
        log(fmt_serialized_quantized(codec, model_bytes))
        log(fmt_total_submission(codec, model_bytes + code.compressed))
        tensor_bytes = {k: t.numel() * t.element_size() for k, t in qm.tensors.items()}
        report = build_size_report(serialized.streams, tensor_bytes, model_bytes, code, cfg.compressor)
        for line in size_report_lines(report):
            log(line)
        result = ExportResult(path, model_bytes, code, model_bytes + code.compressed, report)
    barrier()
    return result
