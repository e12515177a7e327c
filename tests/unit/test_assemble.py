"""golfkit assemble: the PR folder from seed logs, on synthetic logs (core) and a real record's logs."""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
from pathlib import Path

import pytest

from golfkit.check.logparse import parse_log
from golfkit.check.validate import validate_document
from golfkit.cli import run as cli_run
from golfkit.pr.assemble import assemble_record, folder_slug
from golfkit.pr.plots import PNG_SIGNATURE

FIXTURE_LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "assemble"
REAL_RECORD = "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"


def _logs(tmp_path: Path) -> list[Path]:
    """Copies of the fixture logs, so a test can prove the sources are left alone."""
    source = tmp_path / "runs"
    source.mkdir()
    for log in sorted(FIXTURE_LOGS.glob("train_seed*.log")):
        shutil.copyfile(log, source / log.name)
    return sorted(source.glob("*.log"))


def _assemble_args(logs: list[Path], code: Path, out: Path, *extra: str) -> list[str]:
    return [
        "assemble",
        "--logs",
        *map(str, logs),
        "--name",
        "Toy CaseOps demo",
        "--author",
        "Demo Author",
        "--github-id",
        "demo-author",
        "--blurb",
        "Three toy seeds.",
        "--code",
        str(code),
        "--out",
        str(out),
        "--date",
        "2026-05-01",
        "--hardware",
        "1x CPU",
        "--pytorch-version",
        "2.13.0+cpu",
        *extra,
    ]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def code_file(tmp_path: Path) -> Path:
    code = tmp_path / "train_gpt.py"
    code.write_text('"""Stand-in for the bundled program."""\nprint("train")\n')
    return code


@pytest.fixture
def built(run_cli, tmp_path: Path, code_file: Path) -> tuple[Path, list[Path], str]:
    logs = _logs(tmp_path)
    code, out, err = run_cli(*_assemble_args(logs, code_file, tmp_path / "records"))
    assert code == 0, err
    folder = tmp_path / "records" / "track_10min_16mb" / "2026-05-01_Toy_CaseOps_demo"
    assert out.startswith(f"assembled {folder}")
    return folder, logs, out


def test_folder_layout_and_strict_valid_submission(run_cli, built: tuple[Path, list[Path], str]) -> None:
    folder, logs, _ = built
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["README.md", "submission.json", "train_curves.png", "requirements.txt", "train_gpt.py"]
        + [log.name for log in logs]
    )
    assert run_cli("validate", str(folder / "submission.json"))[0] == 0
    submission = json.loads((folder / "submission.json").read_text())
    records = [parse_log(log) for log in logs]
    assert submission["seeds"] == [r.seed for r in records]
    for record in records:
        entry = submission["seed_results"][str(record.seed)]
        assert (entry["val_bpb"], entry["val_loss"], entry["artifact_bytes"], entry["steps"]) == (
            record.val_bpb,
            record.val_loss,
            record.artifact_bytes,
            record.steps,
        )
    assert submission["artifact_bytes_max"] == max(r.artifact_bytes for r in records) == submission["bytes_total"]
    assert submission["val_bpb"] == pytest.approx(sum(r.val_bpb for r in records) / 3, abs=1e-8)


def test_logs_are_copied_not_moved(built: tuple[Path, list[Path], str]) -> None:
    folder, logs, _ = built
    for log in logs:
        assert log.is_file()
        assert (folder / log.name).read_bytes() == log.read_bytes() == (FIXTURE_LOGS / log.name).read_bytes()


def test_readme_renders_table_and_embeds_a_valid_png(built: tuple[Path, list[Path], str]) -> None:
    folder, logs, _ = built
    readme = (folder / "README.md").read_text()
    assert readme.startswith("# Record: Toy CaseOps demo")
    for log in logs:
        record = parse_log(log)
        row = next(line for line in readme.splitlines() if line.startswith(f"| {record.seed} |"))
        assert f"**{record.val_bpb:.8f}**" in row and f"{record.artifact_bytes:,}" in row
    assert "| **Mean** |" in readme and "| **Std** |" in readme
    assert "| Artifact bytes (code + model) | 16,000,000 | 444,000 | 15,556,000 | pass |" in readme
    assert "## Significance" not in readme  # no --baseline
    assert re.search(r"!\[[^\]]*\]\(train_curves\.png\)", readme)
    png = (folder / "train_curves.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 800 and height >= 300


def test_refuses_to_overwrite_and_leaves_folder_byte_identical(
    run_cli, built: tuple[Path, list[Path], str], tmp_path: Path, code_file: Path
) -> None:
    folder, logs, _ = built
    before = _snapshot(folder)
    code, out, err = run_cli(*_assemble_args(logs, code_file, tmp_path / "records", "--blurb", "changed"))
    assert code != 0
    assert out == "" and err.count("\n") == 1 and "folder already exists" in err and "--force" in err
    assert _snapshot(folder) == before


def test_force_rewrites_generated_files_and_keeps_the_rest(
    run_cli, built: tuple[Path, list[Path], str], tmp_path: Path, code_file: Path
) -> None:
    folder, logs, _ = built
    (folder / "NOTES.md").write_text("reviewer notes\n")
    (folder / "train_seed99.log").write_text("a log assemble did not write\n")
    code, out, _ = run_cli(*_assemble_args(logs, code_file, tmp_path / "records", "--blurb", "Refreshed.", "--force"))
    assert code == 0
    assert "Refreshed." in (folder / "README.md").read_text()
    assert json.loads((folder / "submission.json").read_text())["blurb"] == "Refreshed."
    assert (folder / "NOTES.md").read_text() == "reviewer notes\n"
    assert (folder / "train_seed99.log").read_text() == "a log assemble did not write\n"
    assert "kept files assemble does not write: NOTES.md, train_seed99.log" in out


def test_force_never_replaces_a_different_log(
    run_cli, built: tuple[Path, list[Path], str], tmp_path: Path, code_file: Path
) -> None:
    folder, logs, _ = built
    edited = folder / logs[0].name
    edited.write_text(edited.read_text() + "appended by hand\n")
    before = _snapshot(folder)
    code, _, err = run_cli(*_assemble_args(logs, code_file, tmp_path / "records", "--force"))
    assert code == 2 and logs[0].name in err and "never replaces logs" in err
    assert _snapshot(folder) == before


def test_not_a_record_is_marked(tmp_path: Path, code_file: Path) -> None:
    logs = _logs(tmp_path)[:1]
    target = assemble_record(
        logs,
        name="CPU demo",
        author="Demo Author",
        github_id="demo-author",
        blurb="One toy seed on a CPU.",
        code=code_file,
        out=tmp_path / "records",
        date="2026-05-02",
        not_a_record=True,
        hardware="1x CPU",
        pytorch_version="2.13.0+cpu",
    )
    assert target == tmp_path / "records" / "track_non_record_16mb" / "2026-05-02_CPU_demo"
    submission = json.loads((target / "submission.json").read_text())
    assert submission["track"] == "non_record_16mb" and "not an 8xH100 record" in submission["non_record_reason"]
    assert validate_document(submission, "strict") == []
    readme = (target / "README.md").read_text()
    assert readme.startswith("# Non-record: CPU demo") and "> **Not a record.**" in readme
    assert "Training time (s)" not in readme  # the non-record track has no time limit


def test_non_record_track_needs_a_reason(run_cli, tmp_path: Path, code_file: Path) -> None:
    args = _assemble_args(_logs(tmp_path), code_file, tmp_path / "records", "--track", "non_record_16mb")
    code, _, err = run_cli(*args)
    assert code == 2 and "pass --reason" in err
    assert run_cli(*args, "--reason", "1xH100 run")[0] == 0


def test_baseline_adds_significance_and_deltas(tmp_path: Path, code_file: Path) -> None:
    logs = _logs(tmp_path)
    target = assemble_record(
        logs,
        name="With baseline",
        author="Demo Author",
        github_id="demo-author",
        blurb="Compared.",
        code=code_file,
        out=tmp_path / "records",
        date="2026-05-03",
        baseline="bpb:2.5",
        hardware="1x CPU",
        pytorch_version="2.13.0+cpu",
    )
    submission = json.loads((target / "submission.json").read_text())
    assert submission["comparison_baseline_bpb"] == 2.5
    assert submission["delta_vs_leaderboard_bpb"] == pytest.approx(submission["val_bpb"] - 2.5, abs=1e-8)
    assert submission["delta_vs_leaderboard_nats"] < 0
    assert validate_document(submission, "strict") == []
    readme = (target / "README.md").read_text()
    assert "## Significance" in readme and "| one-sample |" in readme and "Verdict: **significant**" in readme


def test_seed_named_wrongly_is_refused(run_cli, tmp_path: Path, code_file: Path) -> None:
    logs = _logs(tmp_path)
    liar = logs[0].with_name("train_seed7.log")
    logs[0].rename(liar)
    code, _, err = run_cli(*_assemble_args([liar, *logs[1:]], code_file, tmp_path / "records"))
    assert code == 2 and "file name says seed 7 but the run used seed 1" in err
    assert not (tmp_path / "records").exists() or not any((tmp_path / "records").rglob("*.json"))


def test_unknown_versions_are_a_one_line_error(run_cli, tmp_path: Path, code_file: Path) -> None:
    args = _assemble_args(_logs(tmp_path), code_file, tmp_path / "records")
    args = args[: args.index("--hardware")]
    code, _, err = run_cli(*args)
    assert code == 2 and err.count("\n") == 1 and "pass --hardware" in err


def test_help_explains_every_option() -> None:
    out = io.StringIO()
    assert cli_run(["assemble", "--help"], out, io.StringIO()) == 0
    text = out.getvalue()
    for option in (
        "--logs",
        "--name",
        "--author",
        "--github-id",
        "--blurb",
        "--date",
        "--code",
        "--baseline",
        "--out",
        "--force",
        "--track",
        "--not-a-record",
        "--reason",
        "--hardware",
        "--pytorch-version",
        "--requirements",
    ):
        assert option in text


def test_folder_slug() -> None:
    assert folder_slug("SP8192 CaseOps + TTT / GPTQ") == "SP8192_CaseOps_+_TTT_GPTQ"


def test_real_record_logs_make_a_folder_verify_and_validate_accept(run_cli, shared_data: Path, tmp_path: Path) -> None:
    from golfkit.check.verify import verify_folder

    source = shared_data / "records" / REAL_RECORD
    stated = json.loads((source / "submission.json").read_text())
    code = tmp_path / "train_gpt.py"
    code.write_text("#" * 31998 + "\n")  # stand-in of the 31,999 code bytes the logs count (GK114)
    logs = [source / f"train_seed{seed}.log" for seed in stated["seeds"]]
    target = assemble_record(
        logs,
        name="LQER SparseGate BOSSmearFix reassembled",
        author=stated["author"],
        github_id=stated["github_id"],
        blurb=stated["blurb"],
        code=code,
        out=tmp_path / "records",
        date=stated["date"],
        baseline="bpb:1.0810",
        hardware=stated["hardware"],
        pytorch_version=stated["pytorch_version"],
        cuda_version=stated["cuda_version"],
        flash_attn_version=stated["flash_attn_version"],
    )
    assert run_cli("validate", "--profile", "strict", str(target / "submission.json"))[0] == 0
    report = verify_folder(target)
    # The record's own timing problem, and only it: 0.5 s reserved for 4.6-4.9 s of GPTQ calibration.
    assert {c.id for c, _ in report.failures} == {"GK106", "GK113"}, [(c.id, o.detail) for c, o in report.failures]
    built = json.loads((target / "submission.json").read_text())
    for seed, entry in stated["seed_results"].items():
        for key in ("val_bpb", "val_loss", "artifact_bytes", "steps", "eval_time_s"):
            assert built["seed_results"][seed][key] == entry[key], (seed, key)
    assert built["val_bpb"] == stated["val_bpb"] and built["val_loss"] == stated["val_loss"]
    assert built["delta_vs_leaderboard_bpb"] == pytest.approx(stated["delta_vs_leaderboard_bpb"], abs=5e-6)
    assert built["delta_vs_leaderboard_nats"] == pytest.approx(stated["delta_vs_leaderboard_nats"], abs=2e-5)
    readme = (target / "README.md").read_text()
    assert "| 42 | 4945 |" in readme and "![Training loss and validation BPB per seed](train_curves.png)" in readme
    assert (target / "train_curves.png").read_bytes().startswith(PNG_SIGNATURE)
    assert all(log.is_file() for log in logs)
