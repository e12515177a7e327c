"""Shared fixtures: where the real data of ../shared lives, and skipping when it is absent."""

from __future__ import annotations

import os
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
