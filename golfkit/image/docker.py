"""The `docker` commands behind `nox -s docker -- build|run|shell [...]`.

`docker_command` turns the session's arguments into one docker command line, so the flags a GPU
training run needs live in one tested place: `--gpus all --ipc=host` (NCCL's shared memory),
`--ulimit memlock=-1 --ulimit stack=67108864` (pinned memory, PyTorch's recommended stack), `--init`
(signals reach the trainer), the data / outputs / Hugging Face cache / compile cache volumes, and
`--user` so files in the mounted folders belong to the caller. `python -m golfkit.image.docker ACTION ...` prints the
command and runs it; that is what the nox session calls.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from golfkit import __version__
from golfkit.errors import GolfkitError

DEFAULT_IMAGE = f"golfkit-gpu:{__version__}"
DOCKERFILE = "docker/Dockerfile"
ACTIONS = ("build", "run", "shell")
USAGE = (
    "Usage: nox -s docker -- build [--image TAG] [DOCKER BUILD ARGS...] | "
    "run|shell [--image TAG] [--data DIR] [--outputs DIR] [--hf-cache DIR] [--compile-cache DIR] [--gpus SPEC] "
    "[--env NAME=VALUE]... [-- IMAGE ARGS...]"
)
# Said in one line when the `docker` command is missing (nox -s docker on a machine without Docker).
NO_DOCKER_FIX = (
    "install Docker Engine, https://docs.docker.com/engine/install/, and for run/shell the NVIDIA "
    "Container Toolkit; or put the docker command on PATH"
)
GPU_RUN_FLAGS = ("--ipc=host", "--ulimit", "memlock=-1", "--ulimit", "stack=67108864")
# The compile cache keeps torch.compile's (inductor, Triton) results between containers: a first seed
# spends ~15 minutes compiling on an H100 (training ~3, the TTT forward ~11), later runs reuse them.
MOUNTS = {
    "data": "/data",
    "outputs": "/outputs",
    "hf_cache": "/cache/huggingface",
    "compile_cache": "/cache/compile",
}


@dataclass(slots=True)
class _RunOptions:
    image: str = DEFAULT_IMAGE
    paths: dict[str, Path] = field(default_factory=dict)
    gpus: str = "all"
    env: list[str] = field(default_factory=list)
    rest: list[str] = field(default_factory=list)


def _parse_run_options(args: Sequence[str], where: str) -> _RunOptions:
    """Leading options of run/shell; everything after `--` (or the first non-option) goes to the image."""
    options = _RunOptions()
    valued = {"--image", "--data", "--outputs", "--hf-cache", "--compile-cache", "--gpus", "--env"}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if arg not in valued:
            if arg.startswith("-"):
                raise GolfkitError(where, f"unknown option {arg}", USAGE)
            break
        if i + 1 >= len(args):
            raise GolfkitError(where, f"{arg} needs a value", USAGE)
        value = args[i + 1]
        if arg == "--image":
            options.image = value
        elif arg == "--gpus":
            options.gpus = value
        elif arg == "--env":
            if "=" not in value:
                raise GolfkitError(where, f"--env {value}: expected NAME=VALUE", USAGE)
            options.env.append(value)
        else:
            options.paths[arg.removeprefix("--").replace("-", "_")] = Path(value)
        i += 2
    options.rest = list(args[i:])
    return options


def default_mounts(repo_root: Path, environ: Mapping[str, str], home: Path) -> dict[str, Path]:
    """Host folders mounted when no option says otherwise: ./data, ./outputs, the HF cache, and
    golfkit's compile cache (under $XDG_CACHE_HOME, default ~/.cache)."""
    hf_cache = Path(environ["HF_HOME"]) if environ.get("HF_HOME") else home / ".cache" / "huggingface"
    cache_home = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else home / ".cache"
    return {
        "data": repo_root / "data",
        "outputs": repo_root / "outputs",
        "hf_cache": hf_cache,
        "compile_cache": cache_home / "golfkit" / "compile",
    }


def docker_command(
    action: str,
    args: Sequence[str],
    repo_root: Path,
    *,
    user: tuple[int, int] | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> list[str]:
    """The docker command line for `action` ("build", "run" or "shell") with the session's `args`.

    `user`, `environ` and `home` default to the calling process's uid/gid, environment and home
    folder; tests pass them to get a fixed answer.
    """
    repo_root = Path(repo_root).resolve()
    where = f"docker {action}"
    if action not in ACTIONS:
        raise GolfkitError("docker", f"unknown action {action!r} (choose from {', '.join(ACTIONS)})", USAGE)
    if action == "build":
        image, extra = DEFAULT_IMAGE, list(args)
        if extra[:1] == ["--image"]:
            if len(extra) < 2:
                raise GolfkitError(where, "--image needs a value", USAGE)
            image, extra = extra[1], extra[2:]
        return ["docker", "build", "-f", str(repo_root / DOCKERFILE), "-t", image, *extra, str(repo_root)]

    options = _parse_run_options(args, where)
    if action == "shell" and options.rest:
        raise GolfkitError(where, f"shell takes no image arguments, got {shlex.join(options.rest)}", "use run")
    environ = os.environ if environ is None else environ
    mounts = default_mounts(repo_root, environ, Path.home() if home is None else home)
    mounts.update(options.paths)
    uid, gid = (os.getuid(), os.getgid()) if user is None else user
    command = ["docker", "run", "--rm", "--init", "--gpus", options.gpus, *GPU_RUN_FLAGS]
    command += ["--user", f"{uid}:{gid}"]
    for key, target in MOUNTS.items():
        command += ["-v", f"{(repo_root / mounts[key]).resolve()}:{target}"]
    for assignment in options.env:
        command += ["-e", assignment]
    if action == "shell":
        return [*command, "-it", options.image, "shell"]
    return [*command, options.image, *options.rest]


def mounted_host_dirs(command: Sequence[str]) -> list[Path]:
    """The host side of every `-v HOST:CONTAINER` in a docker command."""
    return [Path(command[i + 1].rsplit(":", 1)[0]) for i, arg in enumerate(command[:-1]) if arg == "-v"]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the docker command for `ACTION ARGS...`, create the host folders it mounts, and run it.
    Without a `docker` command on PATH it says so in one line and returns 2, having created nothing."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(USAGE, file=sys.stderr)
        return 2
    repo_root = Path(__file__).resolve().parents[2]
    try:
        command = docker_command(args[0], args[1:], repo_root)
    except GolfkitError as exc:
        print(f"golfkit docker: {exc.one_line()}", file=sys.stderr)
        return 2
    if shutil.which(command[0]) is None:
        missing = GolfkitError(command[0], "command not found on PATH", NO_DOCKER_FIX)
        print(f"golfkit docker: {missing.one_line()}", file=sys.stderr)
        return 2
    # docker would create missing host folders itself, owned by root; create them as the caller.
    for host_dir in mounted_host_dirs(command):
        host_dir.mkdir(parents=True, exist_ok=True)
    print(shlex.join(command), flush=True)
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
