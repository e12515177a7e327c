"""The PR #1934 network: parameter table, layer order, document isolation, LoRA and calibration hooks."""

from __future__ import annotations

import pytest
import torch

from golfkit.runs.params_cmd import count_parameters
from golfkit.runs.presets import tiny_config
from record.attention import DOC_BOS_ID
from record.config import Config
from record.model import GPT

# Tiny models on a shared CPU run fastest on one intra-op thread (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")

# The parameter table of docs/model.md for the default config.
SPEC_SHAPES = {
    "tok_emb.weight": (8192, 512),
    "qo_bank": (22, 512, 512),
    "kv_bank": (22, 256, 512),
    "mlp_up_bank": (11, 2048, 512),
    "mlp_down_bank": (11, 512, 2048),
    "skip_weights": (8, 512),
    "skip_gates": (8, 512),
    "parallel_post_lambdas": (11, 2, 2),
    "parallel_resid_lambdas": (11, 2),
    "smear_gate.weight": (1, 12),
    "smear_lambda": (1,),
}
for _i in range(11):
    SPEC_SHAPES |= {
        f"blocks.{_i}.attn.q_gain": (8,),
        f"blocks.{_i}.attn.attn_gate_w": (8, 12),
        f"blocks.{_i}.attn_scale": (512,),
        f"blocks.{_i}.mlp_scale": (512,),
        f"blocks.{_i}.resid_mix": (2, 512),
    }


def test_default_model_has_the_records_parameter_count():
    assert count_parameters(Config()) == 35_945_671


def test_every_parameter_name_and_shape_matches_the_spec_table():
    with torch.device("meta"):
        model = GPT(Config())
    assert {name: tuple(p.shape) for name, p in model.named_parameters()} == SPEC_SHAPES


def test_block_order_with_and_without_depth_recurrence():
    with torch.device("meta"):
        model = GPT(Config())
    assert model.block_order() == list(range(11)) and not model.looping
    model.set_looping(True)
    assert model.looping
    assert model.block_order() == [0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10]
    with torch.device("meta"):
        no_loops = GPT(Config(num_loops=0))
    no_loops.set_looping(True)
    assert not no_loops.looping and len(no_loops.block_order()) == 11


def test_init_follows_the_reference():
    model = GPT(tiny_config())
    layers = model.cfg.num_layers
    eye = torch.eye(64)
    torch.testing.assert_close(model.qo_bank[0] @ model.qo_bank[0].T, eye, atol=1e-5, rtol=0)
    assert not model.qo_bank[layers:].any() and not model.mlp_down_bank.any()
    assert float(model.tok_emb.weight.detach().std()) == pytest.approx(0.005, rel=0.1)
    assert torch.all(model.blocks[0].attn.q_gain == 5.0) and torch.all(model.parallel_resid_lambdas == 1.1)


def _random_model(cfg: Config | None = None, looping: bool = True, seed: int = 0) -> GPT:
    """A tiny model with every parameter nonzero, so no path is an identity by initialisation."""
    torch.manual_seed(seed)
    model = GPT(cfg or tiny_config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model.set_looping(looping)
    return model


def _two_documents(seed: int = 0, rows: int = 2, seq_len: int = 64, split: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(2, 512, (rows, seq_len), generator=g)
    tokens[:, 0] = DOC_BOS_ID
    tokens[:, split] = DOC_BOS_ID
    return tokens


@pytest.mark.parametrize("looping", [False, True])
def test_nothing_leaks_across_a_bos(looping):
    """Perturbing the previous document's tokens leaves the next document's losses exactly unchanged."""
    model = _random_model(looping=looping)
    tokens = _two_documents()
    targets = torch.roll(tokens, -1, dims=1)
    other = tokens.clone()
    other[:, 1:24] = torch.randint(2, 512, (2, 23), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        before = model.per_token_loss(tokens, targets)
        after = model.per_token_loss(other, targets)
        assert torch.equal(before[:, 24:], after[:, 24:])
        assert not torch.equal(before[:, :24], after[:, :24])
        # Without document masking the same perturbation does reach the second document.
        unmasked = model.per_token_loss(other, targets, doc_masked=False)
        assert not torch.equal(model.per_token_loss(tokens, targets, doc_masked=False)[:, 24:], unmasked[:, 24:])


def test_smear_gate_is_bos_safe():
    model = _random_model()
    tokens = _two_documents()
    other = tokens.clone()
    other[:, 23] = (tokens[:, 23] + 1) % 510 + 2  # the token just before the second BOS
    with torch.no_grad():
        a, b = model._embed(tokens), model._embed(other)
    assert torch.equal(a[:, 24], b[:, 24])  # the BOS does not smear in its predecessor
    other[:, 30] = (tokens[:, 30] + 1) % 510 + 2
    with torch.no_grad():
        c = model._embed(other)
    assert not torch.equal(a[:, 31], c[:, 31])  # inside a document it does


def test_doc_masking_only_matters_when_a_row_holds_several_documents():
    model = _random_model()
    single = _two_documents(split=0)
    with torch.no_grad():
        assert torch.equal(model.forward_logits(single), model.forward_logits(single, doc_masked=False))
        two = _two_documents()
        assert not torch.equal(model.forward_logits(two), model.forward_logits(two, doc_masked=False))


class RecordingLora:
    """A LoRA stand-in: returns scale * a fixed projection of x, and records every call."""

    def __init__(self, cfg: Config, scale: float) -> None:
        widths = {"q": cfg.model_dim, "k": cfg.kv_dim, "v": cfg.kv_dim, "o": cfg.model_dim, "mlp": cfg.model_dim}
        widths["head"] = cfg.vocab_size
        g = torch.Generator().manual_seed(3)
        self.proj = {site: torch.randn(cfg.model_dim, width, generator=g) for site, width in widths.items()}
        self.scale = scale
        self.calls: list[tuple[int, str, tuple[int, ...], tuple[int, ...]]] = []

    def at(self, slot: int) -> _RecordingSlot:
        return _RecordingSlot(self, slot)


class _RecordingSlot:
    def __init__(self, hook: RecordingLora, slot: int) -> None:
        self.hook, self.slot = hook, slot

    def delta(self, site: str, x: torch.Tensor) -> torch.Tensor:
        out = self.hook.scale * (x @ self.hook.proj[site])
        self.hook.calls.append((self.slot, site, tuple(x.shape), tuple(out.shape)))
        return out


def test_lora_hook_zero_is_a_no_op_and_nonzero_changes_losses():
    model = _random_model()
    cfg = model.cfg
    tokens = _two_documents()
    targets = torch.roll(tokens, -1, dims=1)
    with torch.no_grad():
        plain = model.per_token_loss(tokens, targets)
        zero = RecordingLora(cfg, 0.0)
        assert torch.equal(model.per_token_loss(tokens, targets, lora=zero), plain)
        assert not torch.equal(model.per_token_loss(tokens, targets, lora=RecordingLora(cfg, 0.01)), plain)
    slots = len(model.block_order())
    expected = [(slot, site) for slot in range(slots) for site in ("q", "k", "v", "o", "mlp")] + [(-1, "head")]
    assert sorted((s, site) for s, site, _, _ in zero.calls) == sorted(expected)
    out_width = {"q": 64, "k": 32, "v": 32, "o": 64, "mlp": 64, "head": 512}
    for _, site, x_shape, out_shape in zero.calls:
        assert x_shape == (2, 64, 64) and out_shape == (2, 64, out_width[site])


def test_calibration_hook_reports_every_matrix_input():
    model = _random_model()
    seen: list[tuple[int, str, tuple[int, ...]]] = []
    model.calib_capture = lambda layer, site, x: seen.append((layer, site, tuple(x.shape)))
    tokens = _two_documents()
    with torch.no_grad():
        model.forward_logits(tokens, doc_masked=False)
    expected = []
    for layer in model.block_order():
        expected += [(layer, "attn_in", (2, 64, 64)), (layer, "proj_in", (2, 64, 64))]
        expected += [(layer, "mlp_in", (2, 64, 64)), (layer, "down_in", (2, 64, 256))]
    expected.append((-1, "head_in", (2, 64, 64)))
    assert sorted(seen) == sorted(expected)
    assert seen[-1] == (-1, "head_in", (2, 64, 64))


def test_two_lane_blocks_only_from_the_parallel_start_layer():
    model = _random_model(looping=False)
    tokens = _two_documents()
    model(tokens, torch.roll(tokens, -1, dims=1)).backward()
    grads = model.parallel_post_lambdas.grad
    start = model.cfg.parallel_start_layer
    assert grads[start:].abs().sum() > 0 and not grads[:start].any()


def test_training_loss_matches_per_token_loss_mean():
    model = _random_model()
    tokens = _two_documents()
    targets = torch.roll(tokens, -1, dims=1)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens, targets), model.per_token_loss(tokens, targets).mean())


def test_tiny_model_learns_a_learnable_sequence():
    """Documents follow t -> (5t + 3) mod V after a random first token; 30 AdamW steps must cut the loss."""
    torch.manual_seed(0)
    cfg = tiny_config()
    model = GPT(cfg)
    model.set_looping(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        seq = torch.empty(4, 65, dtype=torch.long)
        seq[:, 0] = torch.randint(2, cfg.vocab_size, (4,), generator=g)
        for t in range(1, 65):
            seq[:, t] = (5 * seq[:, t - 1] + 3) % (cfg.vocab_size - 2) + 2
        seq[:, 0] = DOC_BOS_ID
        return seq[:, :-1], seq[:, 1:]

    losses = []
    for _ in range(30):
        inputs, targets = batch()
        loss = model(inputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 6.0 and sum(losses[-5:]) / 5 < 0.6 * losses[0]


def test_bf16_autocast_forward_and_backward_run_and_stay_close_to_fp32():
    model = _random_model()
    tokens = _two_documents()
    targets = torch.roll(tokens, -1, dims=1)
    with torch.no_grad():
        full = model(tokens, targets).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(tokens, targets)
    loss.backward()
    assert loss.dtype == torch.float32 and abs(loss.item() - full) < 0.05 * full
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


@pytest.mark.slow
def test_whole_model_compiles_as_one_graph():
    """torch.compile(fullgraph=True) traces training and evaluation without a graph break (aot_eager:
    no C++ toolchain needed), and the compiled loss equals eager."""
    model = _random_model()
    model.attention_backend = "sdpa"
    tokens = _two_documents()
    targets = torch.roll(tokens, -1, dims=1)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    loss = compiled(tokens, targets)
    loss.backward()
    torch.testing.assert_close(loss, model(tokens, targets))
    assert model.qo_bank.grad is not None
    model.attention_backend = None
    with pytest.raises(Exception, match="attention_backend is unset"):
        torch.compile(model, fullgraph=True, backend="aot_eager")(tokens, targets)
