"""`golfkit demo` end to end on the CPU: data, training, GPTQ + LQER, pergroup artifact, phased TTT,
the verified table and a folder marked not a record. This is CI's demo test (2 cores, < 6 minutes)."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest

from golfkit.check.logpatterns import LOG_PATTERNS
from golfkit.check.rules import load_rules
from golfkit.cli import run as cli_run
from golfkit.runs.demo import MANIFEST_NAME, demo_data_complete

DEMO_BUDGET_S = 360.0


def _demo(runs_dir: Path, *extra: str) -> tuple[int, str, str, float]:
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code = cli_run(["demo", "--runs-dir", str(runs_dir), *extra], out, err)
    return code, out.getvalue(), err.getvalue(), time.monotonic() - started


def _matches(log: str, key: str) -> list[re.Match[str]]:
    return [m for line in log.splitlines() if (m := LOG_PATTERNS[key].match(line))]


@pytest.mark.slow
def test_demo_runs_every_stage_and_assembles_a_non_record_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the program writes logs/<run_id>.txt in its working directory
    runs = tmp_path / "demo"
    code, out, err, seconds = _demo(runs)
    assert code == 0, f"{err}\n{out[-3000:]}"
    assert seconds < DEMO_BUDGET_S

    # The seed's log is complete: trained, quantized, serialized with pergroup lrzip, scored after TTT.
    log = (runs / "train_seed42.log").read_text(encoding="utf-8")
    assert not (runs / "train_seed42.partial.log").exists()
    assert _matches(log, "train_step") and _matches(log, "ttt_phased")
    # Every stage of the record ran at toy scale: GPTQ on MLP and embedding, LQER, global-SGD TTT phases.
    # Which tensors get LQER depends on the weights, hence on how many steps fit the demo's wallclock cap:
    # check the families, not the choice.
    quant_lines = [ln[2:] for ln in log.splitlines() if ln.startswith("  gptq (int")]
    tagged = {
        name.strip(): tag for tag, names in (ln.split(": ", 1) for ln in quant_lines) for name in names.split(",")
    }
    assert tagged.get("tok_emb.weight", "").startswith("gptq (int7)")
    assert any(tag.startswith("gptq (int6)") for name, tag in tagged.items() if name.startswith("blocks.mlp."))
    assert any(ln.split(": ")[0].endswith("+lqer_asym") for ln in quant_lines)
    assert _matches(log, "tttg") and int(_matches(log, "ttt_phased")[0]["prefix_docs"]) > 0
    total = _matches(log, "total_submission")
    assert len(total) == 1 and total[0]["codec"] == "quantized+pergroup"
    artifact_bytes = int(total[0]["bytes"])
    assert 0 < artifact_bytes < load_rules("demo").artifact_byte_cap
    quantized = _matches(log, "serialized_quantized")
    stored = runs / "seed42" / "final_model.int6.ptz"
    assert [int(m["bytes"]) for m in quantized if m["codec"] == "quantized+pergroup"] == [stored.stat().st_size]
    finals = [m for m in _matches(log, "eval_result") if m.group(0).startswith("quantized_ttt_phased ")]
    assert len(finals) == 1
    assert LOG_PATTERNS["total_eval_time"].match(log.strip().splitlines()[-1])

    # The verified per-seed table comes last and agrees with the log.
    table = out[out.rindex("golfkit verify ") :]
    row = next(line for line in table.splitlines() if line.split()[:1] == ["42"])
    assert row.split()[1] == f"{float(finals[0]['val_bpb']):.8f}"
    assert f"{artifact_bytes:,}" in row
    assert "\nPASS\n" in table and "(rules: demo)" in table

    # The folder is marked not a record and passes the strict schema.
    folders = list((runs / "records" / "track_non_record_16mb").iterdir())
    assert len(folders) == 1 and folders[0].name.endswith("_golfkit_CPU_demo")
    folder = folders[0]
    submission = json.loads((folder / "submission.json").read_text(encoding="utf-8"))
    assert submission["track"] == "non_record_16mb" and submission["non_record_reason"]
    assert submission["seeds"] == [42] and submission["seed_results"]["42"]["artifact_bytes"] == artifact_bytes
    assert "**Not a record.**" in (folder / "README.md").read_text(encoding="utf-8")
    assert (folder / "train_gpt.py").read_bytes() == (runs / "train_gpt.py").read_bytes()
    out_v, err_v = io.StringIO(), io.StringIO()
    assert cli_run(["validate", str(folder / "submission.json"), "--profile", "strict"], out_v, err_v) == 0, err_v

    # Running again keeps the data and the complete seed, and only re-verifies.
    manifest = (runs / "data" / MANIFEST_NAME).read_bytes()
    assert demo_data_complete(runs / "data") is not None
    code, out, err, seconds = _demo(runs)
    assert code == 0, err
    assert "demo data: complete" in out and "complete log" in out and "skipping" in out
    assert (runs / "data" / MANIFEST_NAME).read_bytes() == manifest
    assert (runs / "train_seed42.log").read_text(encoding="utf-8") == log


def test_demo_rules_load_by_name_even_beside_a_demo_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`golfkit demo` writes runs/demo/; a folder named like the rules must not shadow them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    rules = load_rules("demo")
    assert rules.track == "demo" and rules.source.endswith("golfkit/check/rules/demo.yaml")
    assert rules.artifact_byte_cap == load_rules("track_10min_16mb").artifact_byte_cap
    assert rules.min_seeds == 1 and rules.significance is None
    assert rules.train_time_limit_s is not None and rules.eval_time_limit_s is not None


def _demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> tuple[int, dict[str, str], str]:
    """The environment the runner gives the demo's training process, caught where it would start it
    (after the record's config has been loaded from the same settings); nothing is trained."""
    import golfkit.runs.demo as demo
    import golfkit.runs.demo_cmd as demo_cmd
    import golfkit.runs.runner as runner
    from golfkit.runs.seedrun import SeedOutcome

    seen: dict[str, str] = {}

    def fake_run_seed(seed, command, env, runs_dir, on_line=None):
        seen.update(env)
        return SeedOutcome(seed, runs_dir / "x.log", False, 1, 0.0)

    model = tmp_path / "tok.model"
    # Patched where the command looks them up (it imports them by name), whatever was imported before.
    monkeypatch.setattr(demo_cmd, "prepare_demo_data", lambda data_dir, out: demo.DemoData(data_dir, model, True))
    monkeypatch.setattr(demo_cmd, "bundle_demo_program", lambda runs_dir, out: runs_dir / "train_gpt.py")
    monkeypatch.setattr(runner, "run_preflight", lambda plan, cfg: [])
    monkeypatch.setattr(runner, "run_seed", fake_run_seed)
    code, out, err, _ = _demo(tmp_path / "demo", *extra)
    return code, seen, out + err


def test_demo_sets_its_own_thread_count_over_the_shells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "8")  # a shell's setting must not decide the demo's speed
    code, env, text = _demo_env(tmp_path, monkeypatch)
    assert "demo threads: 1 for the training process" in text
    assert code == 1 and "seed 42 failed" in text  # the stand-in run, after the config accepted the settings
    assert (env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"]) == ("1", "1")
    assert env["TOKENIZER_PATH"] == str(tmp_path / "tok.model") and env["VOCAB_SIZE"] == "512"
    _, env, _ = _demo_env(tmp_path, monkeypatch, "--threads", "2")
    assert env["OMP_NUM_THREADS"] == "2"


def test_demo_refuses_a_thread_count_below_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, env, text = _demo_env(tmp_path, monkeypatch, "--threads", "0")
    assert code == 2 and env == {}
    assert text == "golfkit demo: --threads: 0 is not a thread count (give 1 or more)\n"


def test_a_demo_seed_of_other_code_is_stale(tmp_path: Path) -> None:
    """After the record changes, the demo reruns its seeds (as it does after the data changes) instead of
    keeping a log that counts other code than the train_gpt.py it ships."""
    from golfkit.runs.demo import ran_other_code

    program = tmp_path / "train_gpt.py"
    program.write_bytes(b"x" * 30_354)
    log = tmp_path / "train_seed42.log"

    def write_log(code_bytes: int) -> None:
        lines = [
            f"Code size (compressed): {code_bytes} bytes",
            "quantized_ttt_phased val_loss:3.10000000 val_bpb:1.50000000 eval_time:1000ms",
            "total_eval_time:1.0s",
        ]
        log.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert not ran_other_code(tmp_path, [42], program)  # no log yet
    write_log(30_232)
    assert ran_other_code(tmp_path, [42], program)
    write_log(30_354)
    assert not ran_other_code(tmp_path, [42], program)
