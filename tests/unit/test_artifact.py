"""record.artifact: exact round trips for every compressor, refusal of damaged files naming the
stream, the per-group layout, preflight, and the same eval loss after a trip through the file."""

from __future__ import annotations

import itertools
import shutil

import pytest
import torch
from quant_helpers import round_to_nearest_weight, serialize_artifact
from tiny_training import eval_loss, trained_tiny

from golfkit.runs.presets import tiny_config
from record.artifact import (
    GROUP_ORDER,
    deserialize_artifact,
    preflight_compressor,
    serialize_artifact_detailed,
    similarity_order,
    unpack_streams,
)
from record.errors import RecordError
from record.model import GPT
from record.quant import QuantizedModel, dequantize, quantize_state_dict, unbank_state_dict
from record.sizes import CodeSize, build_size_report, size_report_lines

needs_lrzip = pytest.mark.skipif(shutil.which("lrzip") is None, reason="the lrzip binary is not installed")


def rtn(w, h, sigmas, bits):
    return round_to_nearest_weight(w, sigmas, bits)


def random_quantized(seed: int = 0) -> QuantizedModel:
    """A tiny model's random state dict through the real routing (int6/int7 codes, LQER, gate, fp16)."""
    cfg = tiny_config()
    torch.manual_seed(seed)
    sd = {name: torch.randn_like(t) * 0.05 for name, t in GPT(cfg).state_dict().items()}
    hessians = {n: torch.eye(t.shape[1]) for n, t in unbank_state_dict(sd, cfg.num_layers).items() if t.ndim == 2}
    return quantize_state_dict(sd, hessians, cfg, passthrough_max_numel=1024, quantizer=rtn)


def assert_same(a: QuantizedModel, b: QuantizedModel) -> None:
    assert set(a.tensors) == set(b.tensors)
    for key, tensor in a.tensors.items():
        assert b.tensors[key].dtype == tensor.dtype and torch.equal(b.tensors[key], tensor), key
    assert (a.tags, a.dtypes, a.shapes, a.num_layers) == (b.tags, b.dtypes, b.shapes, b.num_layers)


@pytest.fixture(scope="module")
def quantized() -> QuantizedModel:
    return random_quantized()


@pytest.fixture(scope="module")
def pergroup_blob(quantized) -> bytes:
    if shutil.which("lrzip") is None:
        pytest.skip("the lrzip binary is not installed")
    return serialize_artifact(quantized, tiny_config(compressor="pergroup"))


@needs_lrzip
def test_pergroup_round_trip_is_exact_and_has_the_reference_streams(quantized, pergroup_blob):
    names = [name for name, _, _ in unpack_streams(pergroup_blob)]
    assert names == [*GROUP_ORDER, "remainder", "perms"]
    assert_same(quantized, deserialize_artifact(pergroup_blob))


@pytest.mark.parametrize("compressor", ["brotli", "lzma"])
def test_single_stream_round_trip_is_exact_and_byte_stable(quantized, compressor):
    cfg = tiny_config(compressor=compressor)
    blob = serialize_artifact(quantized, cfg)
    assert [name for name, _, _ in unpack_streams(blob)] == ["model"]
    assert_same(quantized, deserialize_artifact(blob))
    assert serialize_artifact(quantized, cfg) == blob


@needs_lrzip
@pytest.mark.parametrize("where", ["mlp.fc.weight", "remainder", "perms"])
def test_a_flipped_byte_is_refused_naming_its_stream(pergroup_blob, where):
    streams = unpack_streams(pergroup_blob)
    offset = len(pergroup_blob) - sum(len(data) for _, _, data in streams)
    for name, _, data in streams:
        if name == where:
            break
        offset += len(data)
    damaged = bytearray(pergroup_blob)
    damaged[offset + len(data) // 2] ^= 0x40
    with pytest.raises(RecordError, match=rf"stream '{where}'.*checksum mismatch"):
        deserialize_artifact(bytes(damaged))


@needs_lrzip
def test_truncated_or_foreign_files_are_refused(pergroup_blob):
    with pytest.raises(RecordError, match=r"stream 'perms'.*truncated"):
        deserialize_artifact(pergroup_blob[:-3])
    with pytest.raises(RecordError, match=r"artifact header.*stream table"):
        deserialize_artifact(pergroup_blob[:40])
    header_flip = bytearray(pergroup_blob)
    header_flip[12] ^= 1
    with pytest.raises(RecordError, match=r"artifact header"):
        deserialize_artifact(bytes(header_flip))
    with pytest.raises(RecordError, match=r"bad magic"):
        deserialize_artifact(b"PGRP" + pergroup_blob[4:])


def test_similarity_order_is_the_greedy_l1_chain():
    rows = torch.randint(-31, 32, (40, 16), generator=torch.Generator().manual_seed(0)).to(torch.int8).numpy()
    order = similarity_order(rows)
    assert sorted(order.tolist()) == list(range(40)) and order[0] == 0
    used = {0}
    for prev, nxt in itertools.pairwise(order):
        dist = {j: int(abs(rows[j].astype(int) - rows[prev].astype(int)).sum()) for j in range(40) if j not in used}
        best = min(dist.values())
        assert int(nxt) == min(j for j, d in dist.items() if d == best)
        used.add(int(nxt))


def test_preflight_refuses_pergroup_without_lrzip(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RecordError, match=r"COMPRESSOR=pergroup.*lrzip"):
        preflight_compressor(tiny_config(compressor="pergroup"))
    preflight_compressor(tiny_config(compressor="lzma"))


def test_size_report_accounts_every_byte(quantized):
    detailed = serialize_artifact_detailed(quantized, "brotli")
    tensor_bytes = {k: t.numel() * t.element_size() for k, t in quantized.tensors.items()}
    report = build_size_report(detailed.streams, tensor_bytes, len(detailed.blob), CodeSize(1000, 400), "brotli")
    assert report["total_bytes"] == len(detailed.blob) + 400
    assert report["headroom_bytes"] == 16_000_000 - report["total_bytes"]
    assert sum(f["raw_bytes"] for f in report["families"].values()) == sum(tensor_bytes.values())
    assert report["families"]["mlp.fc.weight codes"]["tensors"] == tiny_config().num_layers
    lines = size_report_lines(report)
    assert lines[-1].startswith("size_report model:") and f"total:{report['total_bytes']}" in lines[-1]


@pytest.mark.slow
@needs_lrzip
def test_trained_model_gives_the_same_loss_after_the_file(shared_data, tmp_path):
    torch.set_num_threads(1)
    model, _, held_out = trained_tiny(shared_data, 40)
    cfg = tiny_config(compressor="pergroup")
    hessians = {n: torch.eye(t.shape[1]) for n, t in unbank_state_dict(model.state_dict(), 4).items() if t.ndim == 2}
    qm = quantize_state_dict(model.state_dict(), hessians, cfg, passthrough_max_numel=1024, quantizer=rtn)
    path = tmp_path / "final_model.int6.ptz"
    path.write_bytes(serialize_artifact(qm, cfg))
    back = deserialize_artifact(path.read_bytes())
    assert_same(qm, back)

    def loss_of(state):
        m = GPT(cfg)
        m.load_state_dict(state)
        m.eval()
        return eval_loss(m, held_out, 128)

    assert loss_of(dequantize(back)) == loss_of(dequantize(qm))
