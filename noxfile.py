"""golfkit's entry points. `nox -l` lists them; `nox -s NAME -- ARGS` passes ARGS through.

CPU sessions build their own virtualenv with the offline CPU torch wheel. Sessions that drive real
training (`record`, `docker`) run in the interpreter you launched nox with, because a GPU box's torch,
Triton and FlashAttention come from its image, not from PyPI.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _install(session: nox.Session, *groups: str, torch: bool = False) -> None:
    """Install the project (editable) plus the named dependency groups."""
    deps = list(nox.project.dependency_groups(PYPROJECT, *groups)) if groups else []
    if torch:
        deps = [*nox.project.dependency_groups(PYPROJECT, "cpu"), *deps]
    if deps:
        session.install(*deps)
    session.install("-e", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the CPU test suite (real-data tests skip when ../shared is absent)."""
    _install(session, "test", torch=True)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the code, hadolint on docker/Dockerfile."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("hadolint", "docker/Dockerfile")


@nox.session
def verify(session: nox.Session) -> None:
    """Check a record folder: `nox -s verify -- RECORD_DIR [--baseline DIR] [--json]`."""
    if not session.posargs:
        session.error("Usage: nox -s verify -- RECORD_DIR [--baseline DIR_OR_JSON] [--json]")
    _install(session)
    session.run("golfkit", "verify", *session.posargs)


@nox.session
def validate(session: nox.Session) -> None:
    """Validate submission.json files: `nox -s validate -- FILE... [--profile strict|lenient]`."""
    if not session.posargs:
        session.error("Usage: nox -s validate -- FILE... [--profile strict|lenient]")
    _install(session)
    session.run("golfkit", "validate", *session.posargs)


@nox.session
def assemble(session: nox.Session) -> None:
    """Build the PR folder from seed logs: `nox -s assemble -- --logs LOG... --name NAME ...`."""
    if not session.posargs:
        session.error("Usage: nox -s assemble -- --logs LOG... --name NAME (see `golfkit assemble --help`)")
    _install(session)
    session.run("golfkit", "assemble", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The whole record pipeline on CPU in minutes, no download: `nox -s demo [-- --seeds 42 314]`."""
    _install(session, torch=True)
    session.run("golfkit", "demo", *session.posargs)


@nox.session(venv_backend="none", default=False)
def record(session: nox.Session) -> None:
    """Run the record's seeds, verify and assemble: `nox -s record -- seeds 42 314 999 [--name NAME]`.

    Runs in the interpreter that launched nox (the GPU image's or your own), which must hold the
    project (`pip install -e .[train]`), CUDA torch and FlashAttention.
    """
    if not session.posargs:
        session.error("Usage: nox -s record -- seeds 42 314 999 [--nproc N] [--name NAME] [--force] [ENV=VALUE ...]")
    session.run("python", "-m", "golfkit", "record", *session.posargs, external=True)


@nox.session
def bundle(session: nox.Session) -> None:
    """Write the one-file train_gpt.py a PR folder ships: `nox -s bundle [-- --out train_gpt.py]`."""
    _install(session)
    session.run("golfkit", "bundle", *session.posargs)


@nox.session(venv_backend="none", default=False)
def docker(session: nox.Session) -> None:
    """Build or run the pinned GPU image: `nox -s docker -- build|run|shell [OPTIONS] [-- IMAGE ARGS]`."""
    if not session.posargs or session.posargs[0] not in ("build", "run", "shell"):
        session.error(
            "Usage: nox -s docker -- build|run|shell [--image TAG] [--data DIR] [--outputs DIR] [--hf-cache DIR] "
            "[-- IMAGE ARGS]"
        )
    root = str(Path(__file__).parent)
    session.run(sys.executable, "-m", "golfkit.image.docker", *session.posargs, env={"PYTHONPATH": root}, external=True)
