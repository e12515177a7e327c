"""Muon's Polar-Express orthogonalisation and update rule, the optimiser groups, and the weight EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from golfkit.runs.presets import tiny_config
from record.optim import BankMuon, OptimizerSet, WeightEma, polar_express, split_parameters


def _svd_polar(g: torch.Tensor) -> torch.Tensor:
    u, _, vh = torch.linalg.svd(g.double(), full_matrices=False)
    return (u @ vh).float()


@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (3, 32, 96)])
def test_polar_express_orthogonalises_rectangular_gaussians(shape: tuple[int, ...]) -> None:
    # Aspect 1:3-1:4 Gaussians have singular values away from 0, where 5 Polar-Express steps land in
    # ~[0.85, 1.15] (the quintics trade exactness for speed; bf16 adds ~1%).
    torch.manual_seed(0)
    g = torch.randn(*shape) * 7.0
    out = polar_express(g).float()
    assert out.shape == g.shape
    sv = torch.linalg.svdvals(out)
    assert sv.min() > 0.8 and sv.max() < 1.2
    exact = _svd_polar(g)
    cosine = (out * exact).sum((-2, -1)) / (out.norm(dim=(-2, -1)) * exact.norm(dim=(-2, -1)))
    assert (cosine > 0.99).all()


def test_polar_express_lifts_a_spread_spectrum_towards_one() -> None:
    torch.manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(96, 96))
    v, _ = torch.linalg.qr(torch.randn(96, 96))
    spectrum = torch.logspace(0, -1.5, 96)  # condition number ~32
    g = u @ torch.diag(spectrum) @ v.T
    sv = torch.linalg.svdvals(polar_express(g).float())
    assert sv.min() > 0.7 and sv.max() < 1.2
    assert sv.max() / sv.min() < 1.6  # from 32 down to ~1.3


def test_polar_express_fewer_steps_are_less_orthogonal() -> None:
    torch.manual_seed(2)
    g = torch.randn(32, 128)
    spread = [torch.linalg.svdvals(polar_express(g, steps=k).float()).std().item() for k in (1, 5)]
    assert spread[1] < spread[0]


def _one_bank_muon(bank: nn.Parameter, **overrides: float) -> BankMuon:
    settings = dict(lr=0.1, momentum=0.9, backend_steps=5, weight_decay=0.5, row_normalize=True)
    settings.update(overrides)
    return BankMuon([bank], **settings)


def test_muon_step_applies_nesterov_rownorm_decay_and_aspect_scale() -> None:
    torch.manual_seed(3)
    start = torch.randn(2, 64, 16)  # tall slices: scale sqrt(64/16) = 2
    bank = nn.Parameter(start.clone())
    opt = _one_bank_muon(bank)
    grads = [torch.randn(2, 64, 16), torch.randn(2, 64, 16)]
    expected = start.clone()
    buf = torch.zeros(2, 64, 16, dtype=torch.bfloat16)
    for grad in grads:
        bank.grad = grad.clone()
        opt.step()
        g = grad.bfloat16()
        buf = buf * 0.9 + g
        nesterov = g + 0.9 * buf
        rows = nesterov / nesterov.float().norm(dim=-1, keepdim=True).bfloat16()
        expected = expected * (1 - 0.1 * 0.5) - 0.1 * 2.0 * polar_express(rows).float()
    torch.testing.assert_close(bank.detach(), expected, atol=2e-2, rtol=0)
    assert opt.state[bank]["momentum_buffer"].dtype == torch.bfloat16


def test_muon_wide_slices_take_unit_scale_and_no_decay_when_off() -> None:
    torch.manual_seed(4)
    bank = nn.Parameter(torch.zeros(1, 16, 64))
    opt = _one_bank_muon(bank, weight_decay=0.0, row_normalize=False, lr=1.0)
    bank.grad = torch.randn(1, 16, 64)
    opt.step()
    sv = torch.linalg.svdvals(bank.detach()[0])
    assert sv.min() > 0.8 and sv.max() < 1.2  # -lr * 1 * orthogonal


def test_muon_rejects_non_bank_shapes() -> None:
    with pytest.raises(ValueError):
        BankMuon(
            [nn.Parameter(torch.zeros(4, 4))], lr=1, momentum=0, backend_steps=5, weight_decay=0, row_normalize=False
        )


class _ToyRecordModel(nn.Module):
    """The parameter names of the record's GPT, at toy sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(32, 8)
        self.qo_bank = nn.Parameter(torch.randn(4, 8, 8))
        self.kv_bank = nn.Parameter(torch.randn(4, 4, 8))
        self.mlp_up_bank = nn.Parameter(torch.randn(2, 16, 8))
        self.mlp_down_bank = nn.Parameter(torch.randn(2, 8, 16))
        self.skip_weights = nn.Parameter(torch.ones(1, 8))
        self.smear_lambda = nn.Parameter(torch.zeros(1))
        self.blocks = nn.ModuleList([nn.Module()])
        self.blocks[0].attn_scale = nn.Parameter(torch.ones(8))


def test_split_parameters_routes_every_tensor_by_name() -> None:
    banks, embed, scalars = split_parameters(_ToyRecordModel())
    assert [p.shape[0] for p in banks] == [4, 4, 2, 2]
    assert [tuple(p.shape) for p in embed] == [(32, 8)]
    assert sorted(tuple(p.shape) for p in scalars) == [(1,), (1, 8), (8,)]


def test_split_parameters_refuses_an_unknown_matrix() -> None:
    model = _ToyRecordModel()
    model.extra_proj = nn.Parameter(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="extra_proj"):
        split_parameters(model)


def test_optimizer_set_uses_the_record_groups_and_scales_lrs() -> None:
    cfg = tiny_config()
    opts = OptimizerSet(_ToyRecordModel(), cfg)
    assert opts.embed.param_groups[0]["weight_decay"] == cfg.embed_wd
    assert opts.scalars.param_groups[0]["weight_decay"] == cfg.adam_wd
    assert opts.muon.param_groups[0]["weight_decay"] == cfg.muon_wd
    assert opts.embed.defaults["betas"] == (cfg.beta1, cfg.beta2)
    opts.set_schedule(lr_scale=0.5, muon_momentum=0.93)
    assert opts.embed.param_groups[0]["lr"] == pytest.approx(0.5 * cfg.tied_embed_lr)
    assert opts.scalars.param_groups[0]["lr"] == pytest.approx(0.5 * cfg.scalar_lr)
    assert opts.muon.param_groups[0]["lr"] == pytest.approx(0.5 * cfg.matrix_lr)
    assert opts.muon.param_groups[0]["momentum"] == 0.93


def test_optimizer_set_step_moves_every_parameter_and_clears_grads() -> None:
    model = _ToyRecordModel()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opts = OptimizerSet(model, tiny_config())
    loss = sum(((p.float() - 0.5) ** 2).sum() for p in model.parameters())
    loss.backward()
    opts.step()
    for name, p in model.named_parameters():
        assert not torch.equal(p.detach(), before[name]), name
        assert p.grad is None


def test_ema_matches_the_closed_form_and_restores_dtypes() -> None:
    decay = 0.9
    model = nn.Linear(3, 2)
    model.half_weight = nn.Parameter(torch.ones(2, dtype=torch.bfloat16))
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = WeightEma(model, decay)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.half_weight.fill_(2.0)
    for _ in range(5):
        ema.update()
    # e_k = d^k e_0 + (1 - d^k) w for a constant target w.
    expected = decay**5 * 1.0 + (1 - decay**5) * 3.0
    assert ema.shadow["weight"].dtype == torch.float32
    torch.testing.assert_close(ema.shadow["weight"], torch.full((2, 3), expected))
    torch.testing.assert_close(ema.shadow["half_weight"], torch.full((2,), decay**5 + (1 - decay**5) * 2.0))
    ema.apply_to(model)
    assert model.half_weight.dtype == torch.bfloat16
    assert math.isclose(model.weight[0, 0].item(), expected, rel_tol=1e-6)
