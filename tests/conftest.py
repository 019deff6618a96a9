"""Shared fixtures: tiny tasks and a registry rooted in a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def spec_tree(tmp_path: Path) -> Path:
    """A writable copy of the shipped specs (tasks/ and baselines/) for tests that edit them."""
    for sub in ("tasks", "baselines"):
        shutil.copytree(REPO / sub, tmp_path / sub)
    return tmp_path
