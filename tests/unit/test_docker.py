"""golfkit.image.docker: the docker command lines behind `nox -s docker -- build|run|shell`."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from golfkit.errors import GolfkitError
from golfkit.image import docker
from golfkit.image.docker import DEFAULT_IMAGE, docker_command, main, mounted_host_dirs

REPO = Path(__file__).resolve().parents[2]
FIXED = {"user": (1000, 1000), "environ": {}, "home": Path("/home/golfer")}
GPU_FLAGS = ["--gpus", "all", "--ipc=host", "--ulimit", "memlock=-1", "--ulimit", "stack=67108864"]


def test_build_uses_the_dockerfile_and_the_repo_as_context() -> None:
    assert docker_command("build", [], REPO) == [
        "docker", "build", "-f", str(REPO / "docker" / "Dockerfile"), "-t", DEFAULT_IMAGE, str(REPO),
    ]  # fmt: skip
    command = docker_command("build", ["--image", "golfkit-gpu:test", "--progress=plain"], REPO)
    assert command[5:8] == ["golfkit-gpu:test", "--progress=plain", str(REPO)]


def test_run_has_every_gpu_flag_the_volumes_and_the_image_default() -> None:
    command = docker_command("run", [], REPO, **FIXED)
    assert command[:4] == ["docker", "run", "--rm", "--init"]
    assert command[4:11] == GPU_FLAGS
    assert command[11:13] == ["--user", "1000:1000"]
    assert command[13:] == [
        "-v", f"{REPO}/data:/data",
        "-v", f"{REPO}/outputs:/outputs",
        "-v", "/home/golfer/.cache/huggingface:/cache/huggingface",
        "-v", "/home/golfer/.cache/golfkit/compile:/cache/compile",
        DEFAULT_IMAGE,
    ]  # fmt: skip
    assert mounted_host_dirs(command) == [
        REPO / "data",
        REPO / "outputs",
        Path("/home/golfer/.cache/huggingface"),
        Path("/home/golfer/.cache/golfkit/compile"),
    ]


def test_run_options_and_image_arguments(tmp_path: Path) -> None:
    args = ["--data", str(tmp_path / "d"), "--hf-cache", "cache", "--env", "NPROC=1", "--gpus", "device=0"]
    command = docker_command("run", [*args, "--", "record", "--", "seeds", "42"], REPO, **FIXED)
    assert command[command.index("--gpus") + 1] == "device=0"
    assert f"{tmp_path / 'd'}:/data" in command
    assert f"{REPO / 'cache'}:/cache/huggingface" in command  # relative to the repository
    assert command[command.index("-e") + 1] == "NPROC=1"
    assert command[-5:] == [DEFAULT_IMAGE, "record", "--", "seeds", "42"]


def test_hf_home_is_the_default_cache() -> None:
    command = docker_command("run", [], REPO, user=(1, 2), environ={"HF_HOME": "/srv/hf"}, home=Path("/h"))
    assert "/srv/hf:/cache/huggingface" in command and "1:2" in command


def test_the_compile_cache_follows_xdg_cache_home_or_the_option(tmp_path: Path) -> None:
    """The image keeps TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR on the /cache/compile volume."""
    command = docker_command("run", [], REPO, user=(1, 2), environ={"XDG_CACHE_HOME": "/srv/xdg"}, home=Path("/h"))
    assert "/srv/xdg/golfkit/compile:/cache/compile" in command
    command = docker_command("run", ["--compile-cache", str(tmp_path)], REPO, **FIXED)
    assert f"{tmp_path}:/cache/compile" in command
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "TORCHINDUCTOR_CACHE_DIR=/cache/compile/inductor" in dockerfile
    assert "TRITON_CACHE_DIR=/cache/compile/triton" in dockerfile


def test_shell_is_interactive() -> None:
    assert docker_command("shell", ["--image", "x:1"], REPO, **FIXED)[-3:] == ["-it", "x:1", "shell"]


@pytest.mark.parametrize(
    ("action", "args", "message"),
    [
        ("push", [], "unknown action 'push'"),
        ("run", ["--volume", "x"], "unknown option --volume"),
        ("run", ["--data"], "--data needs a value"),
        ("run", ["--env", "NOEQUALS"], "expected NAME=VALUE"),
        ("shell", ["--", "demo"], "shell takes no image arguments"),
        ("build", ["--image"], "--image needs a value"),
    ],
)
def test_bad_arguments_are_one_line_errors(action: str, args: list[str], message: str) -> None:
    with pytest.raises(GolfkitError) as caught:
        docker_command(action, args, REPO, **FIXED)
    assert message in caught.value.one_line() and "\n" not in caught.value.one_line()


def test_main_refuses_bad_input_without_running_docker() -> None:
    err = io.StringIO()
    with redirect_stderr(err):
        assert main([]) == 2
        assert main(["push"]) == 2
    assert "Usage: nox -s docker -- build" in err.getvalue()
    assert "golfkit docker: docker: unknown action 'push'" in err.getvalue()


@pytest.mark.parametrize("action", ["build", "run", "shell"])
def test_without_docker_main_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    monkeypatch.setattr(docker.shutil, "which", lambda name, *a, **k: None)
    monkeypatch.setattr(docker.subprocess, "run", lambda *a, **k: pytest.fail("ran docker"))
    monkeypatch.setattr(docker, "mounted_host_dirs", lambda command: pytest.fail("created host folders"))
    err = io.StringIO()
    with redirect_stderr(err):
        assert main([action]) == 2
    (line,) = err.getvalue().splitlines()
    assert line.startswith("golfkit docker: docker: command not found on PATH (install Docker Engine")


@pytest.mark.skipif(importlib.util.find_spec("nox") is None, reason="nox is not installed")
def test_nox_docker_build_without_docker_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    """The session as a user runs it, with a PATH that holds no docker (nor anything else)."""
    done = subprocess.run(
        [sys.executable, "-m", "nox", "-f", str(REPO / "noxfile.py"), "-s", "docker", "--", "build"],
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output
    (line,) = [line for line in output.splitlines() if "docker" in line and "not found" in line]
    assert line.startswith("golfkit docker: docker: command not found on PATH")
