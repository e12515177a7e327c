"""Shared fixtures: the real data of ../shared (skipped when absent), the CLI on in-memory streams, the
fixture tokenizer, one torch thread, a free port."""

from __future__ import annotations

import io
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GOLFKIT_SHARED", REPO.parent / "shared")).resolve()
SHARED_DATA = SHARED / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip the test when this checkout has no shared folder beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (real-data tests need ../shared beside the checkout)")
    return SHARED_DATA


def record_folders() -> list[Path]:
    """The April 2026 record folders of ../shared/data/records (empty when absent)."""
    root = SHARED_DATA / "records"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


@pytest.fixture
def run_cli() -> Callable[..., tuple[int, str, str]]:
    """`run_cli("verify", folder)`: golfkit's CLI on in-memory streams; returns (exit code, stdout, stderr)."""
    from golfkit import cli

    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli.run(list(argv), out, err)
        return code, out.getvalue(), err.getvalue()

    return run


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 512-piece CaseOps tokenizer trained on tests/fixtures/data/docs.jsonl (about a second)."""
    from golfkit.data.tokenizer import train_demo_tokenizer

    lines = (FIXTURES / "data" / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    return train_demo_tokenizer(
        [json.loads(line)["text"] for line in lines], 512, tmp_path_factory.mktemp("tok") / "demo"
    )


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models on a shared CPU: one intra-op thread is far faster than a contended pool."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for a two-process gloo group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
