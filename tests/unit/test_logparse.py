"""golfkit.check.logparse reads record logs (golden fixture, synthetic variants, every real April 2026 log)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from golfkit.check.logparse import looks_like_run_log, parse_log
from golfkit.errors import GolfkitError
from tests.conftest import FIXTURES, SHARED_DATA

REFERENCE = FIXTURES / "logs" / "reference_seed42.log"


def test_reference_log_gives_every_quantity() -> None:
    rec = parse_log(REFERENCE)
    assert (rec.seed, rec.headline) == (42, "quantized_ttt_phased")
    assert (rec.val_bpb, rec.val_loss) == (1.05989454, 2.31944212)
    assert (rec.steps, rec.iterations, rec.stop_reason) == (4945, 20000, "wallclock_cap")
    assert rec.train_time_s == pytest.approx(599.592)
    assert rec.step_avg_ms == pytest.approx(599592 / 4945)
    assert rec.eval_time_s == 508.8 and rec.headline_eval_time_s == pytest.approx(508.785)
    # artifact = compressed code + compressed model, exactly as the log adds them up
    assert (rec.model_bytes, rec.code_bytes, rec.artifact_bytes) == (15865260, 31999, 15897259)
    assert rec.model_bytes + rec.code_bytes == rec.artifact_bytes
    assert rec.code_bytes_uncompressed == 157868 and rec.codec == "quantized+pergroup"
    assert rec.peak_mem_mib == 41717
    assert len(rec.hyperparameters) == 124  # lines 6-129 of the fixture
    assert rec.hyperparameters["matrix_lr"] == "0.026" and rec.hyperparameters["artifact_dir"] == ""
    assert rec.train_curve[0] == (1, 9.0087) and rec.train_curve[-1] == (4500, 2.2771)
    assert rec.val_curve == [(4945, 1.0756)]
    assert [e.tag for e in rec.evals] == [
        "diagnostic pre-quantization post-ema",
        "diagnostic quantized",
        "quantized_ttt_phased",
    ]
    assert not rec.eval_only and rec.versions == {}


def test_old_style_log_without_a_dump_takes_the_seed_from_its_name() -> None:
    rec = parse_log(FIXTURES / "logs" / "no_dump_seed7.log")
    assert rec.seed == 7 and rec.hyperparameters == {}
    # headline = the best post-quantization line (sliding window), never the pre-quantization diagnostic
    assert (rec.headline, rec.val_bpb) == ("final_int6_sliding_window", 1.22794973)
    assert rec.code_bytes == 68246 and rec.model_bytes == 15837214
    assert rec.eval_time_s == pytest.approx(5.008 + 65.201)  # no total_eval_time: every final eval counts
    assert rec.val_curve == [(1000, 1.2604), (1200, 1.2403)]


def _cut(tmp_path: Path, stop_at: str, name: str = "train_seed42.log") -> Path:
    lines = REFERENCE.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.startswith(stop_at))
    path = tmp_path / name
    path.write_text("".join(lines[:index]))
    return path


def test_log_cut_before_quantization_names_the_missing_score_and_last_line(tmp_path: Path) -> None:
    path = _cut(tmp_path, "GPTQ:collected")
    with pytest.raises(GolfkitError) as info:
        parse_log(path)
    message = str(info.value)
    assert "\n" not in message
    assert "final val_loss/val_bpb line" in message
    assert "'GPTQ:collecting Hessians from calibration data...'" in message
    n_lines = len(path.read_text().splitlines())
    assert f"{path}:{n_lines}:" in message


def test_log_cut_during_ttt_does_not_fall_back_to_the_pre_ttt_score(tmp_path: Path) -> None:
    path = _cut(tmp_path, "quantized_ttt_phased")
    with pytest.raises(GolfkitError, match=r"post-TTT val_loss/val_bpb line \(TTT evaluation began on line \d+\)"):
        parse_log(path)


def test_log_without_artifact_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "train_seed1.log"
    text = REFERENCE.read_text()
    path.write_text(re.sub(r"^Total submission size .*\n", "", text, flags=re.M))
    with pytest.raises(GolfkitError, match="Total submission size"):
        parse_log(path)


def test_eval_only_log_is_marked(tmp_path: Path) -> None:
    path = tmp_path / "seed_5.log"
    path.write_text(
        "Hyperparameters:\n  seed: 5\nbeginning TTT eval timer\n"
        "quantized_ttt_phased val_loss:2.32641216 val_bpb:1.06307957 eval_time:416500ms\ntotal_eval_time:416.5s\n"
    )
    rec = parse_log(path)
    assert rec.eval_only and rec.seed == 5 and rec.steps is None and rec.eval_time_s == 416.5


def test_non_run_logs_and_unreadable_paths(tmp_path: Path) -> None:
    summary = tmp_path / "summary.log"
    summary.write_text('=== run ===\n{"post_ttt_val_bpb": 1.06}\n')
    assert not looks_like_run_log(summary) and looks_like_run_log(REFERENCE)
    with pytest.raises(GolfkitError, match="cannot read the log"):
        parse_log(tmp_path / "absent.log")
    empty = tmp_path / "empty.log"
    empty.write_text("")
    with pytest.raises(GolfkitError, match="log is empty"):
        parse_log(empty)


def _real_logs() -> list[Path]:
    root = SHARED_DATA / "records"
    return sorted(p for p in root.rglob("*.log") if p.name != "summary.log") if root.is_dir() else []


@pytest.mark.shared
@pytest.mark.parametrize("log", _real_logs(), ids=lambda p: f"{p.parent.name[:24]}/{p.name}")
def test_every_real_record_log_parses_consistently(shared_data: Path, log: Path) -> None:
    rec = parse_log(log)
    text = log.read_text()
    # the headline is a line the log really printed, with both numbers at full precision
    assert f"{rec.headline} val_loss:{rec.val_loss:.8f} val_bpb:{rec.val_bpb:.8f}" in text
    assert rec.seed is not None
    if rec.eval_only:
        return
    assert f"train_time: {rec.train_time_s * 1000:.0f}ms step: {rec.steps}/" in text
    assert f"Total submission size {rec.codec}: {rec.artifact_bytes} bytes" in text
    assert rec.hyperparameters and rec.peak_mem_mib and rec.train_curve


@pytest.mark.shared
def test_real_log_versions_are_read(shared_data: Path) -> None:
    rec = parse_log(shared_data / "records" / "2026-04-01_Vocab4096_MLPMult4_WD085" / "train_seed42.log")
    assert rec.versions == {
        "python": "3.12.3",
        "torch": "2.11.0+cu130",
        "driver": "580.126.09",
        "cuda": "13.0",
        "gpu": "8x NVIDIA H100 80GB HBM3",
    }
    # this log dumps its own source too; the `Hyperparameters` inside it must not start a second dump
    assert rec.hyperparameters["seed"] == "42" and len(rec.hyperparameters) == 71


def test_version_lines_written_by_logkeys_are_read_back(tmp_path: Path) -> None:
    from record.logkeys import fmt_version_line

    lines = [
        fmt_version_line(name, v) for name, v in (("Python", "3.11.7"), ("PyTorch", "2.9.1+cu128"), ("lrzip", "0.651"))
    ]
    path = tmp_path / "train_seed3.log"
    path.write_text("\n".join(lines) + "\n" + REFERENCE.read_text())
    assert parse_log(path).versions == {"python": "3.11.7", "torch": "2.9.1+cu128", "lrzip": "0.651", "cuda": "12.8"}
