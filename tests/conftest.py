"""Shared fixtures: tiny tasks and a registry rooted in a temporary folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from celo_bench import paths

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Tests never reach the network: the Hugging Face hub is offline (no socket is opened).
os.environ["HF_HUB_OFFLINE"] = "1"

# Tests read no shipped reference results unless they name a folder of them (tests/test_references.py):
# scoring a partial store must not change when `celo-bench references build` ships a suite's file.
os.environ["CELO_BENCH_REFERENCES"] = str(Path(tempfile.gettempdir()) / "celo-bench-tests-read-no-references")

# Share compiled programs between tests (and test runs) without touching the user's cache.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir()) / "celo-bench-test-jax"))


@pytest.fixture
def spec_tree(tmp_path: Path) -> Path:
    """A writable copy of the shipped specs (tasks/ and baselines/) for tests that edit them."""
    for sub in ("tasks", "baselines"):
        shutil.copytree(REPO / sub, tmp_path / sub)
    return tmp_path


@pytest.fixture
def umask():
    """Set the process umask for one test (and the cached reading of it that new files get);
    restored after."""
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(mask: int) -> None:
        os.umask(mask)
        paths.new_file_mode.cache_clear()

    yield set_umask
    os.umask(old)
    paths.new_file_mode.cache_clear()
