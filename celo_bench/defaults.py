"""Defaults shared by the Python API and the command line, importable without JAX."""

from pathlib import Path

DEFAULT_SUITE = "quick"
"""The suite a run, status, score or report uses when none is named."""

DEFAULT_RESULTS = Path("results")
"""The results store folder used when none is given."""

__all__ = ["DEFAULT_RESULTS", "DEFAULT_SUITE"]
