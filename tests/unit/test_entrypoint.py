"""docker/entrypoint.py, run outside docker: the command it builds, its usage errors, and real runs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "docker" / "entrypoint.py"


def _load():
    spec = importlib.util.spec_from_file_location("golfkit_image_entrypoint", ENTRYPOINT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


entrypoint = _load()


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # As in the image, where /opt/venv/bin leads PATH: sessions find `golfkit` beside the interpreter.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT), *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def _nox(*session: str) -> list[str]:
    noxfile = str(REPO / "noxfile.py")
    return [sys.executable, "-m", "nox", "--noxfile", noxfile, "--no-venv", "--no-install", "-s", *session]


def test_no_arguments_run_the_three_record_seeds() -> None:
    assert entrypoint.build_command([]) == _nox("record", "--", "seeds", "42", "314", "999")


def test_the_dockerfile_default_is_the_same_command() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    cmd_line = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    assert tuple(json.loads(cmd_line.removeprefix("CMD "))) == entrypoint.DEFAULT_ARGS


def test_a_session_with_arguments() -> None:
    assert entrypoint.build_command(["record", "--", "seeds", "42"]) == _nox("record", "--", "seeds", "42")
    assert entrypoint.build_command(["demo"]) == _nox("demo")


def test_shell_and_exec() -> None:
    assert entrypoint.build_command(["shell"]) == ["bash", "--login"]
    assert entrypoint.build_command(["exec", "nvidia-smi", "-L"]) == ["nvidia-smi", "-L"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["record", "seeds", "42"], "put `--` between the session and its arguments"),
        (["exec"], "exec needs a command"),
        (["shell", "ls"], "shell takes no arguments"),
        (["--bogus"], "is not a nox session name"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args: list[str], message: str) -> None:
    done = _run(*args)
    assert done.returncode == 2
    assert done.stderr.startswith("golfkit-image: ") and message in done.stderr
    assert done.stderr.count("\n") == 1


def test_dry_run_prints_the_command_and_runs_nothing() -> None:
    done = _run("--dry-run", "record", "--", "seeds", "42")
    assert done.returncode == 0
    assert done.stdout.split() == _nox("record", "--", "seeds", "42")


def test_exec_really_runs_the_command() -> None:
    done = _run("exec", sys.executable, "-c", "print('inside')")
    assert (done.returncode, done.stdout) == (0, "inside\n")
    assert done.stderr.startswith("golfkit-image: ")


def test_the_default_session_exists_in_the_noxfile() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "--noxfile", str(REPO / "noxfile.py"), "-l"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "record" in listed.stdout.split(), "the entry point's default session is missing from noxfile.py"


@pytest.mark.slow
@pytest.mark.skipif(
    not (REPO / "golfkit" / "runs" / "demo.py").exists(),
    reason="golfkit/runs/demo.py (the CPU demo, `nox -s demo`) is not in the tree yet",
)
def test_the_cpu_demo_runs_through_the_entrypoint() -> None:
    done = _run("demo", timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
