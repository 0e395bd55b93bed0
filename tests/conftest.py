"""Shared fixtures: where the real data lives, and a skip with a reason when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(relative: str) -> Path:
    """A file under ../shared, or a skip that says which file is missing and why it matters."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"real data {path} is absent (tests that need ../shared skip outside the dev checkout)")
    return path


@pytest.fixture
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip(f"real data folder {SHARED} is absent")
    return SHARED
