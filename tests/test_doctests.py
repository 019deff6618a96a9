"""The public API examples run: docstring examples of the public modules and the README's.

Each source must hold at least one example (so a deleted or ``+SKIP``-ed example is a
failure, not a silent pass), and every example must produce its printed output.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

MODULES = ("celo_bench.optimizers", "celo_bench.bench.results", "celo_bench.fileio")
"""Modules whose docstrings hold runnable examples of the public API."""


@pytest.mark.parametrize("name", MODULES)
def test_module_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"


def test_readme_examples_run():
    result = doctest.testfile(str(README), module_relative=False, optionflags=FLAGS, verbose=False)
    assert result.attempted > 0, "README.md has no runnable example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} README examples failed (output above)"
