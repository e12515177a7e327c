"""Test-only quantization helpers: baselines and one-call wrappers the record itself never runs."""

from __future__ import annotations

import torch
from torch import Tensor

from record.artifact import serialize_artifact_detailed
from record.config import Config
from record.quant import QuantizedModel, sdclip_row_scales


def round_to_nearest_weight(weight: Tensor, clip_sigmas: float, bits: int) -> tuple[Tensor, Tensor]:
    """The same SDClip grid as GPTQ without error feedback: the baseline GPTQ must beat."""
    clip_range = 2 ** (bits - 1) - 1
    scales = sdclip_row_scales(weight, clip_sigmas, clip_range)
    q = torch.clamp(torch.round(weight.float() / scales.float()[:, None]), -clip_range, clip_range)
    return q.to(torch.int8), scales


def serialize_artifact(qm: QuantizedModel, cfg: Config) -> bytes:
    """The artifact bytes for COMPRESSOR=cfg.compressor."""
    return serialize_artifact_detailed(qm, cfg.compressor).blob
