"""Defaults shared by the Python API and the command line, importable without JAX."""

from pathlib import Path

DEFAULT_SUITE = "quick"
"""The suite a run, status, score or report uses when none is named."""

DEFAULT_RESULTS = Path("results")
"""The results store folder used when none is given."""

DEFAULT_REPORTS = Path("reports")
"""The folder that holds one report folder per suite when no --out is given."""


def report_dir(suite: str) -> Path:
    """The default report folder of `suite`: ``reports/<suite>``, so suites never overwrite each
    other's report (a report replaces its folder whole)."""
    return DEFAULT_REPORTS / suite


__all__ = ["DEFAULT_REPORTS", "DEFAULT_RESULTS", "DEFAULT_SUITE", "report_dir"]
