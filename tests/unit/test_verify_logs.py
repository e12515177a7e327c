"""Verifying a runs directory's seed logs alone (`golfkit record` without --name)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from golfkit.check.logparse import parse_log
from golfkit.check.verify.logs import FOLDER_ONLY_CHECKS, verify_logs
from golfkit.check.verify.report import to_text
from golfkit.errors import GolfkitError

# 2026-04-27 (our reference) no longer passes: 0.5 s reserved for 4.6-4.9 s of GPTQ calibration (GK106).
RECORD = "2026-04-14_MultiPhaseGlobalSGD_PhasedTTT"
SEEDS = (0, 42, 1234)


def _runs_dir(shared_data: Path, tmp_path: Path) -> list[Path]:
    """The record's three seed logs alone in a directory, as `golfkit record` leaves them."""
    logs = []
    for seed in SEEDS:
        target = tmp_path / f"train_seed{seed}.log"
        shutil.copyfile(shared_data / "records" / RECORD / target.name, target)
        logs.append(target)
    return logs


def test_the_record_logs_pass_without_a_folder(shared_data: Path, tmp_path: Path) -> None:
    logs = _runs_dir(shared_data, tmp_path)
    report = verify_logs(logs, rules="track_10min_16mb")
    assert report.ok, to_text(report)
    assert sorted(r.seed for r in report.runs) == sorted(SEEDS)
    ids = {check.id for check, _ in report.results}
    assert ids.isdisjoint(FOLDER_ONLY_CHECKS) and {"GK104", "GK105", "GK106", "GK108", "GK109"} <= ids
    assert report.outcome("GK109").status == "pass"
    text = to_text(report)
    assert text.splitlines()[-1] == "PASS"
    seed42 = parse_log(logs[1])
    row = [line.split() for line in text.splitlines() if line.split()[:1] == ["42"]]
    assert row[0][1:4] == [f"{seed42.val_bpb:.8f}", f"{seed42.val_loss:.8f}", f"{seed42.artifact_bytes:,}"]


def test_a_seed_run_with_another_setting_fails_naming_it(shared_data: Path, tmp_path: Path) -> None:
    logs = _runs_dir(shared_data, tmp_path)
    text = logs[1].read_text(encoding="utf-8")
    logs[1].write_text(text.replace("  matrix_lr: 0.026\n", "  matrix_lr: 0.03\n", 1), encoding="utf-8")
    report = verify_logs(logs, rules="track_10min_16mb")
    assert not report.ok
    assert report.outcome("GK109").status == "fail"
    assert "seed 42: matrix_lr=0.03 (seeds 0, 1234: 0.026)" in report.outcome("GK109").detail


def test_too_few_seeds_for_the_track(shared_data: Path, tmp_path: Path) -> None:
    report = verify_logs(_runs_dir(shared_data, tmp_path)[:1], rules="track_10min_16mb")
    assert report.outcome("GK104").status == "fail" and not report.ok
    assert verify_logs(_runs_dir(shared_data, tmp_path)[:1], rules="demo").outcome("GK104").status == "pass"


def test_logs_from_two_directories_are_refused(shared_data: Path, tmp_path: Path) -> None:
    logs = _runs_dir(shared_data, tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = shutil.copy(logs[0], other / logs[0].name)
    with pytest.raises(GolfkitError, match="different directories"):
        verify_logs([Path(moved), logs[1]], rules="demo")
