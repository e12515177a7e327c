"""Seed orchestration: resume after an interruption, partial logs, failures, argument refusal."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from golfkit.cli import run as cli_run
from golfkit.runs.runner import _verify_and_assemble, run_seeds
from golfkit.runs.runplan import RunPlan
from golfkit.runs.seedrun import final_log_path, is_complete_log, launch_command, partial_log_path

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests" / "fixtures" / "programs" / "fake_record.py"


def _plan(runs_dir: Path, seeds: tuple[int, ...], force: bool = False) -> RunPlan:
    return RunPlan(seeds=seeds, nproc=1, preset="demo", runs_dir=runs_dir, force=force, program=FAKE)


def _run(plan: RunPlan, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    command = launch_command(1, use_torchrun=False, program=FAKE)
    code = run_seeds(plan, command, env or {}, object(), out, err)
    return code, out.getvalue(), err.getvalue()


def test_complete_seeds_are_skipped_and_their_logs_untouched(tmp_path: Path) -> None:
    code, out, _ = _run(_plan(tmp_path, (42, 314)))
    assert code == 0
    first = final_log_path(tmp_path, 42).read_bytes()
    assert is_complete_log(final_log_path(tmp_path, 314))
    code, out, _ = _run(_plan(tmp_path, (42, 314, 999)))
    assert code == 0
    assert "seed 42 (1/3): complete log" in out and "skipping" in out
    assert "seed 314 (2/3): complete log" in out
    assert final_log_path(tmp_path, 42).read_bytes() == first
    assert is_complete_log(final_log_path(tmp_path, 999))


def test_force_reruns_but_keeps_the_old_log(tmp_path: Path) -> None:
    _run(_plan(tmp_path, (7,)))
    old = final_log_path(tmp_path, 7).read_bytes()
    code, out, _ = _run(_plan(tmp_path, (7,), force=True))
    assert code == 0 and "previous complete log kept" in out
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("train_seed7.log.") and p.name.endswith(".old")]
    assert len(kept) == 1 and kept[0].read_bytes() == old


def test_failed_seed_stops_the_run_and_keeps_its_log(tmp_path: Path) -> None:
    code, _, err = _run(_plan(tmp_path, (1, 2, 3)), env={"FAKE_FAIL_SEED": "2"})
    assert code == 1
    assert "seed 2 failed (exit 1)" in err and "RuntimeError: boom" in err
    assert is_complete_log(final_log_path(tmp_path, 1))
    assert "RuntimeError: boom" in partial_log_path(tmp_path, 2).read_text()
    assert not final_log_path(tmp_path, 2).exists() and not final_log_path(tmp_path, 3).exists()


_DRIVER = """
import sys
from pathlib import Path
from golfkit.runs.runner import _verify_and_assemble, run_seeds
from golfkit.runs.runplan import RunPlan
from golfkit.runs.seedrun import launch_command
fake, runs = Path(sys.argv[1]), Path(sys.argv[2])
plan = RunPlan(seeds=(42, 314, 999), nproc=1, preset="demo", runs_dir=runs, program=fake)
sys.exit(run_seeds(plan, launch_command(1, False, fake), {}, object(), sys.stdout, sys.stderr))
"""


def test_ctrl_c_in_seed_two_then_resume(tmp_path: Path) -> None:
    """Interrupt during seed 2: seed 1 stays complete (same bytes), seed 2 is left as a partial log;
    running again skips seed 1, redoes seed 2 and runs seed 3."""
    env = {**os.environ, "FAKE_STEP_SLEEP": "0.3", "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(FAKE), str(tmp_path)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    partial2 = partial_log_path(tmp_path, 314)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (partial2.exists() and "train_loss" in partial2.read_text()):
        time.sleep(0.05)
    assert partial2.exists(), "seed 2 never started"
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert "interrupted during seed 314" in err
    seed1 = final_log_path(tmp_path, 42).read_bytes()
    assert is_complete_log(final_log_path(tmp_path, 42))
    assert "interrupted by the user" in partial2.read_text()
    assert not final_log_path(tmp_path, 314).exists()

    code, out, _ = _run(_plan(tmp_path, (42, 314, 999)))
    assert code == 0
    assert "seed 42 (1/3): complete log" in out
    assert final_log_path(tmp_path, 42).read_bytes() == seed1
    assert is_complete_log(final_log_path(tmp_path, 314)) and is_complete_log(final_log_path(tmp_path, 999))
    assert not partial_log_path(tmp_path, 314).exists()
    assert any(p.name.startswith("train_seed314.partial.log.") for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["seeds"], "the seed list is empty"),
        (["seeds", "42", "42"], "seed 42 is listed twice"),
        (["42", "314"], "expected `seeds`"),
        (["seeds", "4x2"], "not an integer seed"),
        (["seeds", "42", "SEED=1"], "SEED is set per run"),
    ],
)
def test_bad_seed_lists_are_refused_in_one_line(words: list[str], message: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = cli_run(["record", *words, "--preset", "demo"], out, err)
    assert code == 2
    assert message in err.getvalue()
    assert len(err.getvalue().strip().splitlines()) == 1


def test_torchruns_failure_report_leaves_the_workers_reason_on_screen() -> None:
    """Real output of a failed 1xH100 run (data folder removed under it): the console gets the worker's
    one-line reason and one line about torchrun's report, not torchrun's traceback; the failure summary
    quotes the worker's lines."""
    from types import SimpleNamespace

    from golfkit.runs.progress import SeedProgress, launcher_failure_exit_code

    lines = (REPO / "tests" / "fixtures" / "runs" / "torchrun_worker_failed.log").read_text().splitlines()
    assert [launcher_failure_exit_code(line) for line in lines].count(2) == 1
    out = io.StringIO()
    progress = SeedProgress(42, 1, 1, SimpleNamespace(max_wallclock_seconds=30.0), out)
    for line in lines:
        progress.feed(line)
    progress.close()
    shown = out.getvalue()
    assert "Traceback" not in shown and "ChildFailedError" not in shown
    assert "no training shards match" in shown
    assert "a worker exited with code 2; torchrun's report of it is in the seed's log" in shown
    assert "no training shards match" in progress.last_lines()
    assert "traceback" not in progress.last_lines().lower()


H100_LOG = REPO / "tests" / "fixtures" / "logs" / "h100_smoke_seed42.log"


def _named_plan(runs_dir: Path, seeds: tuple[int, ...], preset: str = "record") -> RunPlan:
    return RunPlan(
        seeds=seeds,
        nproc=1,
        preset=preset,
        runs_dir=runs_dir,
        name="MyRun",
        records_dir=runs_dir / "records",
        program=FAKE,
    )


def test_name_with_too_few_seeds_still_prints_the_verify_report(tmp_path: Path) -> None:
    """The H100 run of `nox -s record -- seeds 42 --name ...` once ended with a single schema error:
    the per-seed table and the checks must be printed, the folder not built (the track needs 3 seeds)
    and the reason say what to do."""
    shutil.copyfile(H100_LOG, final_log_path(tmp_path, 42))
    out, err = io.StringIO(), io.StringIO()
    code = _verify_and_assemble(_named_plan(tmp_path, (42,)), out, err)
    assert code == 1
    report = out.getvalue()
    assert "3.32582986  7.12509518   15,999,352    32.155    102.8      14" in report
    assert "GK104 FAIL enough seeds" in report and "GK105 ok" in report
    assert "no PR folder assembled for 'MyRun': 1 seed(s) listed, the track needs at least 3" in err.getvalue()
    assert not (tmp_path / "records").exists()


def _three_record_logs(runs_dir: Path) -> None:
    """The assemble fixtures' three seed logs, plus the version and GPU lines assemble needs."""
    for seed in (1, 2, 3):
        text = (REPO / "tests" / "fixtures" / "assemble" / f"train_seed{seed}.log").read_text()
        header = "Running PyTorch 2.11.0+cu130\nRunning GPU 8x NVIDIA H100 80GB HBM3\n"
        final_log_path(runs_dir, seed).write_text(header + text)


def test_name_with_enough_seeds_assembles_and_verifies_the_folder(tmp_path: Path) -> None:
    _three_record_logs(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    code = _verify_and_assemble(_named_plan(tmp_path, (1, 2, 3)), out, err)
    submissions = list((tmp_path / "records").rglob("submission.json"))
    assert len(submissions) == 1, out.getvalue() + err.getvalue()
    assert f"assembled {submissions[0].parent}" in out.getvalue()
    assert "2.30050000" in out.getvalue()
    assert "no PR folder" not in err.getvalue()
    assert code == (0 if "\nPASS" in out.getvalue() else 1)


def test_a_refused_folder_still_prints_the_logs_report(tmp_path: Path) -> None:
    """A folder that already exists is never overwritten: the report is printed, then the reason."""
    _three_record_logs(tmp_path)
    plan = _named_plan(tmp_path, (1, 2, 3))
    _verify_and_assemble(plan, io.StringIO(), io.StringIO())
    out, err = io.StringIO(), io.StringIO()
    assert _verify_and_assemble(plan, out, err) == 1
    assert "2.30050000" in out.getvalue()
    assert "no PR folder assembled for 'MyRun'" in err.getvalue() and "exists" in err.getvalue()


H200_COMPILED_LOG = REPO / "tests" / "fixtures" / "logs" / "h200_compiled_seed42.log"


def test_the_compiled_h200_seed_reads_and_is_judged_as_the_track_would(tmp_path: Path) -> None:
    """The first compiled seed end to end on a GPU (`nox -s record -- seeds 42 --nproc 1`, H200,
    FA4, pergroup, phased TTT, MAX_WALLCLOCK_SECONDS=240, real webtext shards, 996 validation
    documents). verify reads every stage of it; the failures are the honest ones of a one-GPU smoke
    run: one seed, an H200 instead of 8xH100, and an artifact over the cap (a 253-step model with the
    code counted unminified in package mode, 46,815 B)."""
    shutil.copyfile(H200_COMPILED_LOG, final_log_path(tmp_path, 42))
    out = io.StringIO()
    code = _verify_and_assemble(
        RunPlan(seeds=(42,), nproc=1, preset="record", runs_dir=tmp_path, program=FAKE), out, io.StringIO()
    )
    report = out.getvalue()
    assert code == 1
    assert "2.52500611  5.46430311   16,019,597   240.223     95.2     253" in report
    assert "GK106 ok" in report and "240.223 s + 3.2 s GPTQ calibration" in report
    assert "GK108 ok" in report
    assert "GK105 FAIL" in report and "by 19,597 B" in report
    assert "ran on NVIDIA H200" in report and "GK104 FAIL" in report
    text = H200_COMPILED_LOG.read_text()
    assert "attention_backend: fa4" in text and "Running PyTorch 2.11.0+cu130" in text
    assert "ttt_lora:compile warmup done (264.2s)" in text
