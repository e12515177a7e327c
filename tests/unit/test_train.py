"""The trainer on CPU: a tiny looped model learns, one and two processes agree, and a run with bad data or
settings stops within seconds with one line, before any model is built."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.multiprocessing as mp
import train_fixtures as tf

from golfkit.check.logpatterns import LOG_PATTERNS
from golfkit.data.dataprep import TRAIN_SHARD_NAME, write_shard
from record import train
from record.config import DATASET_NAME, TOKENIZER_NAME, Config
from record.dist import init_distributed, read_dist_env, shutdown_distributed
from record.train import TrainSession, main, train_model

# Tiny models on a shared CPU run fastest on one intra-op thread (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tf.tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Path) -> Path:
    return tf.write_tiny_data(tmp_path_factory.mktemp("data"), tiny_tokenizer)


def _config(data_dir: Path, world_size: int = 1, rank: int = 0, **overrides: str) -> Config:
    env = {**tf.TINY_ENV, "DATA_DIR": str(data_dir), "TRAIN_BATCH_TOKENS": "2048", **overrides}
    return Config.from_env(env).with_runtime(rank, world_size, rank)


# Short rows and one warm-up step: the 30 steps then take seconds on a busy CPU.
QUICK_TRAINING = {"TRAIN_SEQ_LEN": "64", "TRAIN_BATCH_TOKENS": "1024", "WARMUP_STEPS": "1"}


def _train_lines(data_dir: Path) -> list[str]:
    cfg = _config(data_dir, **QUICK_TRAINING)
    place = read_dist_env({}, use_cuda=False)
    lines: list[str] = []
    train_model(TrainSession(cfg, place, lines.append, compile_model=False), val=None)
    return lines


def _losses(lines: list[str]) -> list[float]:
    return [float(m["train_loss"]) for line in lines if (m := LOG_PATTERNS["train_step"].match(line))]


def _assert_learns(lines: list[str]) -> None:
    losses = _losses(lines)
    assert len(losses) == 30
    assert losses[0] > 5.5  # ~ln(512) at initialisation
    assert sum(losses[-5:]) / 5 < losses[0] - 1.5, losses


def test_tiny_looped_model_learns_synthetic_documents(tiny_data: Path) -> None:
    lines = _train_lines(tiny_data)
    _assert_learns(lines)
    assert lines[:2] == ["warmup_step: 1/1", "loop_warmup:enabled encoder:[0, 1, 0] decoder:[1, 0, 1]"]
    loop = [line for line in lines if LOG_PATTERNS["layer_loop"].match(line)]
    assert loop == ["layer_loop:enabled step:15 frac:0.500 encoder:[0, 1, 0] decoder:[1, 0, 1]"]
    assert LOG_PATTERNS["peak_memory"].match(lines[-2]) and lines[-1] == "ema:applying EMA weights"


@pytest.mark.slow
def test_tiny_model_learns_real_webtext_shards(shared_data: Path, tmp_path: Path) -> None:
    """Shards built by the data pipeline (CaseOps, a 512-piece tokenizer, byte sidecar) from real text."""
    from golfkit.data.dataprep import prepare_shards
    from golfkit.data.tokenizer import train_demo_tokenizer

    docs = tmp_path / "docs.jsonl"
    with open(shared_data / "webtext" / "docs.jsonl", encoding="utf-8") as src:
        docs.write_text("".join(next(src) for _ in range(300)), encoding="utf-8")
    texts = [json.loads(line)["text"] for line in docs.read_text(encoding="utf-8").splitlines()]
    tokenizer = train_demo_tokenizer(texts, tf.VOCAB, tmp_path / "tok" / "webtext_512")
    data_dir = tmp_path / "data"
    prepare_shards(docs, tokenizer, data_dir, val_docs=20, shard_tokens=200_000)
    shutil.copyfile(tokenizer, data_dir / "tokenizers" / TOKENIZER_NAME)
    _assert_learns(_train_lines(data_dir))


EQUIVALENCE_SETTINGS = {"ITERATIONS": "4", "WARMUP_STEPS": "0", "GRAD_CLIP_NORM": "0", "EMA_DECAY": "0"}


def _trained_weights(data_dir: Path, world_size: int, rank: int) -> dict[str, torch.Tensor]:
    cfg = _config(data_dir, world_size, rank, **EQUIVALENCE_SETTINGS)
    env = {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank)} if world_size > 1 else {}
    place = init_distributed(env, use_cuda=False)
    torch.manual_seed(cfg.seed)
    model = train_model(TrainSession(cfg, place, lambda _: None, compile_model=False), val=None)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equivalence_worker(rank: int, port: int, data_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # a forked child cannot use the parent's OpenMP pool
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    weights = _trained_weights(Path(data_dir), 2, rank)
    torch.save(weights, Path(out_dir) / f"rank{rank}.pt")
    shutdown_distributed(wait_for_peers=True)


def test_two_gloo_processes_train_like_one_with_the_same_global_batch(
    free_port: int, tiny_data: Path, tmp_path: Path
) -> None:
    """Same 8 micro-batches per step (4 per rank instead of 8 in one process). Gradient clipping is off:
    like the reference, each rank clips its own gradient before averaging, so with clipping on the two
    runs differ by design. What remains is rounding: bank gradients are averaged across ranks in bf16 and
    the summation order changes, and Adam's first steps (~lr * sign) amplify that on near-zero scalar
    gradients (up to ~0.03 on a gain). The loss on a fixed batch after 4 steps agrees to ~3e-5 relative;
    the tolerance is 1e-3 relative, against a drop of more than 2 nats from the initial ~6.24."""
    single = _trained_weights(tiny_data, 1, 0)
    mp.start_processes(
        _equivalence_worker, args=(free_port, str(tiny_data), str(tmp_path)), nprocs=2, start_method="fork"
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name in single:
        torch.testing.assert_close(ranks[0][name], ranks[1][name], atol=0, rtol=0)
    losses = [_fixed_batch_loss(tiny_data, weights) for weights in (single, ranks[0])]
    start = _fixed_batch_loss(tiny_data, None)
    assert losses[0] < start - 1.0  # the 4 steps really trained
    assert abs(losses[0] - losses[1]) < 1e-3 * losses[0]


def _fixed_batch_loss(data_dir: Path, weights: dict[str, torch.Tensor] | None) -> float:
    cfg = _config(data_dir, **EQUIVALENCE_SETTINGS)
    torch.manual_seed(cfg.seed)
    session = TrainSession(cfg, read_dist_env({}, use_cuda=False), lambda _: None, compile_model=False)
    if weights is not None:
        session.model.load_state_dict(weights)
    session.set_looping(False)
    inputs, targets, _ = session.micro_batch()
    with torch.no_grad():
        return float(session.model(inputs, targets))


# ---- preflight through main(), as a user meets it ------------------------------------------------------


def _run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, env: dict[str, str]) -> tuple[int, str]:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**tf.TINY_ENV, **env}.items():
        monkeypatch.setenv(name, value)

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was built before the preflight failed")

    monkeypatch.setattr(train, "TrainSession", no_model)
    started = time.monotonic()
    code = main([])
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return code, err


def test_missing_data_folder_fails_in_one_line(monkeypatch, capsys, tmp_path: Path) -> None:
    code, err = _run_main(monkeypatch, capsys, {"DATA_DIR": str(tmp_path / "nowhere")})
    assert code == 2 and "data folder not found" in err and "DATA_DIR" in err


def test_tokenizer_of_another_vocab_fails_in_one_line(monkeypatch, capsys, tiny_data: Path) -> None:
    code, err = _run_main(monkeypatch, capsys, {"DATA_DIR": str(tiny_data), "VOCAB_SIZE": "1024"})
    assert code == 2 and "512 pieces but VOCAB_SIZE is 1024" in err


def test_shards_beyond_the_tokenizer_vocab_fail_in_one_line(monkeypatch, capsys, tmp_path, tiny_tokenizer) -> None:
    data_dir = tf.write_tiny_data(tmp_path, tiny_tokenizer, train_tokens=5000, val_tokens=2000)
    write_shard(data_dir / "datasets" / DATASET_NAME / TRAIN_SHARD_NAME.format(0), [1, 5, 900, 7])
    code, err = _run_main(monkeypatch, capsys, {"DATA_DIR": str(data_dir)})
    assert code == 2 and "token id 900" in err


def test_pergroup_without_lrzip_fails_in_one_line(monkeypatch, capsys, tiny_data: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no lrzip there
    code, err = _run_main(monkeypatch, capsys, {"DATA_DIR": str(tiny_data), "COMPRESSOR": "pergroup"})
    assert code == 2 and "lrzip" in err


def test_unknown_world_size_and_arguments_fail_in_one_line(monkeypatch, capsys, tiny_data: Path) -> None:
    code, err = _run_main(monkeypatch, capsys, {"DATA_DIR": str(tiny_data), "RANK": "0", "WORLD_SIZE": "3"})
    assert code == 2 and err.startswith("WORLD_SIZE:")
    assert main(["--fast"]) == 2


@pytest.mark.slow
def test_main_runs_the_whole_program(monkeypatch, capsys, tiny_data: Path, tmp_path: Path) -> None:
    """Train, EMA, diagnostic eval, GPTQ export (pergroup lrzip), quantized eval, phased TTT: every
    reference line in order, and the artifact on disk."""
    monkeypatch.chdir(tmp_path)
    for name, value in {**tf.TINY_ENV, "DATA_DIR": str(tiny_data), "RUN_ID": "e2e", "EMA_DECAY": "0.8"}.items():
        monkeypatch.setenv(name, value)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 0
    out = capsys.readouterr().out.splitlines()
    log_file = (tmp_path / "logs" / "e2e.txt").read_text(encoding="utf-8")
    order = [
        "Hyperparameters:",
        "Running PyTorch",
        "model_params:",
        "warmup_step: 1/2",
        "layer_loop:enabled",
        "30/30 val_loss:",
        "peak memory allocated:",
        "ema:applying EMA weights",
        "diagnostic pre-quantization post-ema val_loss:",
        "Total submission size quantized+pergroup:",
        "diagnostic quantized val_loss:",
        "quantized_ttt_phased val_loss:",
        "total_eval_time:",
    ]
    positions = [next(i for i, line in enumerate(out) if line.startswith(prefix)) for prefix in order]
    assert positions == sorted(positions)
    assert all(line in log_file for line in out)
    assert (tmp_path / "final_model.int6.ptz").stat().st_size > 1000


def _train_step_benchmark() -> ModuleType:
    """benchmarks/train_step.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "train_step.py"
    spec = importlib.util.spec_from_file_location("golfkit_bench_train_step", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_train_step_benchmark_smoke_on_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """benchmarks/train_step.py --tiny: writes its synthetic shards, times both phases, writes the JSON."""
    bench = _train_step_benchmark()
    out = tmp_path / "result.json"
    argv = ["train_step.py", "--tiny", "--steps", "3", "--loops-at", "1", "--warmup-steps", "1", "--profile", "1"]
    monkeypatch.setattr("sys.argv", [*argv, "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert bench.main() == 0
    report = json.loads(out.read_text())
    assert report["world_size"] == 1 and report["grad_accum_steps"] == 8 and report["tokens_per_step"] == 4096
    assert report["before_loops"]["steps_timed"] == 1 and report["loops_on"]["steps_timed"] == 2
    assert report["loops_on"]["flops_per_token"] > report["before_loops"]["flops_per_token"]
    assert report["before_loops"]["tok_per_s"] > 0 and report["compile_and_warmup_seconds"] > 0
    assert report["device"].startswith("cpu") and report["before_loops"]["mfu"] is None
    assert "reference_h100" not in report  # only an H100 run of the default config is compared
    for state in ("before_loops", "loops_on"):
        profile = report["profile"][state]
        assert profile["steps"] == 1 and profile["wall_ms_per_step"] > 0
        assert "aten::" in (tmp_path / profile["table"]).read_text()


def test_kernel_families_of_a_real_h100_profile() -> None:
    """Kernel names as the H100 profile of the default config lists them (benchmarks/results/)."""
    bench = _train_step_benchmark()
    kernels = [
        ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", 378_285.0),
        ("kernel_cutlass_kernel_flash_attncuteflash_bwd_sm90FlashAttentionBackwardSm90_object_at_", 305_103.0),
        ("Command Buffer Full", 284_791.0),
        ("_leaky_sq_up_fwd_kernel", 227_312.0),
        ("triton_per_fused__fused_rms_norm__fused_rms_norm_backward__to_copy__unsafe_view_add_fil", 178_431.0),
        ("_softcap_ce_fwd_kernel", 35_474.0),
        ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>", 39_342.0),
    ]
    assert bench.kernel_breakdown(kernels, steps=3) == {
        "matmul (cuBLAS)": 126.1,
        "attention (FA4/FA3)": 101.7,
        "fused MLP (Triton)": 75.8,
        "inductor fused elementwise/norm": 59.5,
        "other": 13.1,
        "softcapped CE (Triton)": 11.8,
    }


def test_training_step_compiles_without_mix_order_reductions() -> None:
    """The training graph turns inductor's mix-order reductions off (slow on the H100 with loops on),
    through an option torch.compile accepts; other compiles keep inductor's defaults."""
    import torch
    import torch._inductor.config as inductor_config

    from record.train import training_inductor_options

    global_setting = inductor_config.triton.mix_order_reduction
    options = training_inductor_options()
    assert options == {"triton.mix_order_reduction": False}
    compiled = torch.compile(lambda x: (x * x).sum(-1), options=options, fullgraph=True)
    x = torch.randn(4, 8)
    assert torch.allclose(compiled(x), (x * x).sum(-1))
    assert inductor_config.triton.mix_order_reduction == global_setting
