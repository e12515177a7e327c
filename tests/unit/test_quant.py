"""record.quant: GPTQ against the reference's golden outputs, LQER, the gate quantizer, routing by
name, Hessians through the model's hook, and GPTQ/LQER's real gain on a trained tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from quant_helpers import round_to_nearest_weight
from tiny_training import eval_loss, trained_tiny, windows

from golfkit.runs.presets import tiny_config
from record.config import Config
from record.errors import RecordError
from record.logkeys import fmt_quantized_weights
from record.model import GPT
from record.quant import (
    collect_hessians,
    dequantize,
    gptq_quantize_weight,
    lqer_correction,
    lqer_factors,
    lqer_quantize_asym,
    quantization_summary,
    quantize_rows_absmax,
    quantize_state_dict,
    rebank_state_dict,
    unbank_state_dict,
)

REFERENCE_LOG = "records/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611/train_seed42.log"


def rtn(w: torch.Tensor, h: torch.Tensor, sigmas: float, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    return round_to_nearest_weight(w, sigmas, bits)


@pytest.fixture(scope="module")
def golden(shared_data):
    return np.load(shared_data / "golden" / "gptq_reference.npz")


@pytest.mark.parametrize(("bits", "sigmas", "tag"), [(6, 12.85, "int6"), (7, 12.0, "int7")])
def test_gptq_matches_reference_outputs(golden, bits, sigmas, tag):
    w, h = torch.from_numpy(golden["W"]), torch.from_numpy(golden["H"])
    q, s = gptq_quantize_weight(w, h, sigmas, bits)
    assert s.dtype == torch.float16 and q.dtype == torch.int8
    np.testing.assert_array_equal(s.numpy(), golden[f"s_{tag}"])
    assert (q.numpy() == golden[f"Q_{tag}"]).mean() >= 0.999
    clip = 2 ** (bits - 1) - 1
    assert int(q.abs().max()) <= clip


def test_gptq_error_is_far_below_round_to_nearest_on_the_golden_inputs(golden):
    w, h = torch.from_numpy(golden["W"]), torch.from_numpy(golden["H"])

    def weighted_error(q, s):
        e = w - q.float() * s.float()[:, None]
        return float(torch.trace(e @ h @ e.T))

    q, s = gptq_quantize_weight(w, h, 12.85, 6)
    ratio = weighted_error(q, s) / weighted_error(*round_to_nearest_weight(w, 12.85, 6))
    assert 0.05 < ratio < 0.2  # the README measures 0.12-0.13


def test_gate_quantizer_matches_reference(golden):
    q, s = quantize_rows_absmax(torch.from_numpy(golden["gate_W"]), 127)
    np.testing.assert_array_equal(q.numpy(), golden["gate_q"])
    np.testing.assert_array_equal(s.numpy(), golden["gate_s"])


def test_lqer_asym_levels_groups_and_gain():
    torch.manual_seed(0)
    # a strong rank-4 part (what LQER is for) on top of full-rank noise
    residual = torch.randn(96, 4) @ torch.randn(4, 128) * 0.01 + torch.randn(96, 128) * 0.002
    a, b = lqer_factors(residual, 4)
    parts = lqer_quantize_asym(a, b, 64)
    assert parts["lqA_a"].shape == (96, 4) and parts["lqAs_a"].shape == ()
    assert parts["lqB_a"].shape == (4, 128) and parts["lqBs_a"].shape == (4 * 128 // 64,)
    assert int(parts["lqA_a"].min()) >= -2 and int(parts["lqA_a"].max()) <= 1
    assert int(parts["lqB_a"].min()) >= -8 and int(parts["lqB_a"].max()) <= 7
    correction = lqer_correction({f"w.{k}": v for k, v in parts.items()}, "w")
    assert torch.linalg.matrix_norm(residual - correction) < 0.85 * torch.linalg.matrix_norm(
        residual
    )  # 2-bit A keeps it coarse


def fake_state_dict(cfg: Config, scale: float = 0.05) -> dict[str, torch.Tensor]:
    """Random weights with the model's real names and shapes."""
    torch.manual_seed(1)
    return {name: torch.randn_like(t) * scale for name, t in GPT(cfg).state_dict().items()}


def fake_hessians(flat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in flat.items():
        if t.ndim == 2 and t.numel() > 1024:
            x = torch.randn(4 * t.shape[1], t.shape[1])
            out[name] = x.T @ x
    return out


def test_unbank_names_follow_the_contract_and_rebank_inverts():
    cfg = tiny_config()
    sd = fake_state_dict(cfg)
    flat = unbank_state_dict(sd, cfg.num_layers)
    n = cfg.num_layers
    assert torch.equal(flat["blocks.1.attn.c_q.weight"], sd["qo_bank"][1])
    assert torch.equal(flat["blocks.1.attn.proj.weight"], sd["qo_bank"][n + 1])
    assert torch.equal(flat["blocks.2.attn.c_k.weight"], sd["kv_bank"][2])
    assert torch.equal(flat["blocks.2.attn.c_v.weight"], sd["kv_bank"][n + 2])
    assert torch.equal(flat["blocks.3.mlp.fc.weight"], sd["mlp_up_bank"][3])
    assert torch.equal(flat["blocks.3.mlp.proj.weight"], sd["mlp_down_bank"][3])
    back = rebank_state_dict(flat, n)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_routing_of_the_full_size_model_matches_the_reference_log(shared_data):
    """Default config, real names and sizes: the `Quantized weights:` categories the reference logged
    (LQER targets depend on the trained weights, so those two lines are compared without them)."""
    cfg = Config(lqer_enabled=False)
    torch.manual_seed(0)
    sd = {name: torch.randn(shape) * 0.02 for name, shape in _default_shapes().items()}
    hessians = {n: torch.eye(t.shape[1]) for n, t in unbank_state_dict(sd, cfg.num_layers).items() if t.numel() > 65536}
    qm = quantize_state_dict(sd, hessians, cfg, quantizer=rtn)
    ours = fmt_quantized_weights(quantization_summary(qm)).splitlines()
    log = (shared_data / REFERENCE_LOG).read_text().splitlines()
    start = log.index("Quantized weights:")
    theirs = [line.replace("+lqer_asym", "") for line in log[start : start + 6]]
    merged = {}
    for line in theirs[1:]:
        tag, names = line.strip().split(": ")
        merged.setdefault(tag, set()).update(names.split(", "))
    expected = ["Quantized weights:"] + [f"  {tag}: {', '.join(sorted(merged[tag]))}" for tag in sorted(merged)]
    assert ours == expected
    assert qm.tensors["tok_emb.weight.q"].abs().max() <= 63 and qm.tensors["blocks.0.mlp.fc.weight.q"].abs().max() <= 31


def _default_shapes() -> dict[str, torch.Size]:
    with torch.device("meta"):
        model = GPT(Config())
    return {n: p.shape for n, p in model.state_dict().items()}


def test_missing_hessian_is_a_one_line_error():
    cfg = tiny_config()
    with pytest.raises(RecordError, match=r"has no Hessian"):
        quantize_state_dict(fake_state_dict(cfg), {}, cfg, passthrough_max_numel=1024)


def test_lqer_goes_to_the_largest_errors_and_dequantize_restores_dtypes_and_shapes():
    cfg = tiny_config(lqer_top_k=2)
    sd = fake_state_dict(cfg)
    sd["tok_emb.weight"] = sd["tok_emb.weight"].to(torch.bfloat16)
    hessians = fake_hessians(unbank_state_dict(sd, cfg.num_layers))
    qm = quantize_state_dict(sd, hessians, cfg, passthrough_max_numel=1024, quantizer=rtn)
    with_lqer = sorted(n for n, tag in qm.tags.items() if tag.endswith("+lqer_asym"))
    top = sorted(sorted(qm.lqer_errors, key=qm.lqer_errors.get)[-2:])
    assert with_lqer == top
    assert qm.tags["blocks.0.attn.attn_gate_w"] == "gate_int8_row"
    assert qm.tags["skip_weights"] == "passthrough (float16)" and qm.tensors["skip_weights"].dtype == torch.float16
    assert qm.tags["tok_emb.weight"].startswith("gptq (int7)")
    restored = dequantize(qm)
    assert {k: (v.shape, v.dtype) for k, v in restored.items()} == {k: (v.shape, v.dtype) for k, v in sd.items()}
    sym = quantize_state_dict(
        sd, hessians, tiny_config(lqer_top_k=2, lqer_asym_enabled=False), passthrough_max_numel=1024
    )
    assert all(f"{n}.lqA" in sym.tensors for n in with_lqer)


def test_hessians_come_from_every_block_application():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = GPT(cfg)
    model.set_looping(True)
    inputs = torch.randint(2, cfg.vocab_size, (2, 32))
    hessians = collect_hessians(model, [inputs, inputs])
    assert len(hessians) == 6 * cfg.num_layers + 1
    assert hessians["blocks.0.attn.c_q.weight"] is hessians["blocks.0.attn.c_v.weight"]
    assert hessians["tok_emb.weight"].shape == (cfg.model_dim, cfg.model_dim)
    assert hessians["blocks.0.mlp.proj.weight"].shape == (cfg.mlp_hidden, cfg.mlp_hidden)
    looped, plain = cfg.loop_start, cfg.num_layers - 1
    ratio = float(
        hessians[f"blocks.{looped}.mlp.fc.weight"].trace() / hessians[f"blocks.{plain}.mlp.fc.weight"].trace()
    )
    assert ratio > 1.5  # looped layers sum 2+ passes (inputs are RMS-normed, so each pass weighs alike)
    assert model.calib_capture is None


@pytest.mark.slow
def test_gptq_beats_round_to_nearest_and_lqer_helps_on_a_trained_model(shared_data):
    """4-bit matrices / 5-bit embedding so the gaps dwarf float noise; same grid for RTN and GPTQ."""
    torch.set_num_threads(1)
    model, train, held_out = trained_tiny(shared_data, 40)
    gen = torch.Generator().manual_seed(1)
    hessians = collect_hessians(model, [windows(train, 128, 8, gen)[0] for _ in range(4)])

    def loss_after(quantizer, lqer: bool) -> float:
        cfg = tiny_config(matrix_bits=4, embed_bits=5, lqer_enabled=lqer, lqer_top_k=3)
        qm = quantize_state_dict(model.state_dict(), hessians, cfg, passthrough_max_numel=1024, quantizer=quantizer)
        restored = GPT(cfg)
        restored.load_state_dict(dequantize(qm))
        restored.eval()
        return eval_loss(restored, held_out, 128)

    loss_rtn, loss_gptq, loss_lqer = loss_after(rtn, False), loss_after(None, False), loss_after(None, True)
    assert loss_gptq < loss_rtn - 0.01
    assert loss_lqer < loss_gptq
