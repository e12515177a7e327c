"""golfkit.cli: one error path for both packages' user-facing errors.

A `GolfkitError` and the record's `RecordError` both reach the CLI unchanged and leave as one line,
`golfkit NAME: where: what (fix)`, with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import types
from pathlib import Path

import pytest

from golfkit import cli
from golfkit.errors import USER_ERRORS, GolfkitError
from record.errors import RecordError

GOLFKIT = Path(__file__).resolve().parents[2] / "golfkit"


def _fake_command(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    """Register `golfkit boom`, a command whose run raises `exc`."""

    def run(args: argparse.Namespace, out: io.StringIO, err: io.StringIO) -> int:
        raise exc

    module = types.ModuleType("golfkit_test_boom")
    module.configure = lambda parser: None
    module.run = run
    monkeypatch.setitem(sys.modules, "golfkit_test_boom", module)
    monkeypatch.setitem(cli.COMMANDS, "boom", ("golfkit_test_boom", "raises"))


@pytest.mark.parametrize("kind", [GolfkitError, RecordError])
def test_either_packages_error_is_one_line_and_exit_2(run_cli, monkeypatch: pytest.MonkeyPatch, kind: type) -> None:
    _fake_command(monkeypatch, kind("cfg.json", "bad value", "fix it"))
    assert run_cli("boom") == (2, "", "golfkit boom: cfg.json: bad value (fix it)\n")


def test_a_bug_keeps_its_traceback(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_command(monkeypatch, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        run_cli("boom")


def test_a_bad_setting_reads_the_same_from_params_and_record(run_cli, tmp_path: Path) -> None:
    line = "MATRIX_LRR: unknown setting (did you mean MATRIX_LR?)\n"
    assert run_cli("params", "MATRIX_LRR=1") == (2, "", f"golfkit params: {line}")
    code, _, err = run_cli("record", "seeds", "42", "MATRIX_LRR=1", "--runs-dir", str(tmp_path))
    assert (code, err) == (2, f"golfkit record: {line}")


def test_a_record_error_from_caseops_passes_through(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("x\ue004"))
    code, out, err = run_cli("caseops", "decode")
    assert (code, out) == (2, "")
    assert err == (
        "golfkit caseops: caseops text, character 2: the text ends with a dangling operator "
        "(decode only text produced by caseops_encode)\n"
    )


def test_no_command_converts_a_record_error_by_hand() -> None:
    """The CLI is the one place: no `except RecordError` that re-raises it as a GolfkitError."""
    offenders = []
    for path in sorted(GOLFKIT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ExceptHandler) or node.type is None:
                continue
            raises = [ast.unparse(n) for n in ast.walk(node) if isinstance(n, ast.Raise)]
            if "RecordError" in ast.unparse(node.type) and any("GolfkitError" in r for r in raises):
                offenders.append(f"{path.relative_to(GOLFKIT.parent)}:{node.lineno}")
    assert offenders == []
    assert RecordError in USER_ERRORS and GolfkitError in USER_ERRORS
