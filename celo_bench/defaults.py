"""Defaults shared by the Python API and the command line, importable without JAX."""

import os
from pathlib import Path

DEFAULT_SUITE = "quick"
"""The suite a run, status, score or report uses when none is named."""

DEFAULT_RESULTS = Path("results")
"""The results store folder used when none is given."""

DEFAULT_REPORTS = Path("reports")
"""The folder that holds one report folder per suite of the default store when no --out is given."""

STORE_REPORTS = "reports"
"""The folder inside any other store that holds its reports (``<results>/reports/<suite>``)."""

SUBMISSIONS_FOLDER = ".submissions"
"""The folder inside a store that keeps every submission accepted into it, one folder each
(``<results>/.submissions/<name>/``: ``submission.toml``, ``optimizer.py`` and, once verified,
``verification.json``), so that every later report of the store ranks it. Hidden: the store
reads no record there."""

VERIFICATION_NAME = "verification.json"
"""The result of ``celo-bench verify`` kept in a submission's folder of the store: ``verified``,
``sample_size``, ``max_relative_difference``, ``device_kind``, ``date``."""


def is_default_store(results: str | os.PathLike) -> bool:
    """Whether `results` is the default store (``results/`` of the working folder)."""
    return Path(os.path.abspath(Path(results).expanduser())) == Path(os.path.abspath(DEFAULT_RESULTS))


def report_dir(suite: str, results: str | os.PathLike = DEFAULT_RESULTS) -> Path:
    """The default report folder of `suite` made from store `results`: ``reports/<suite>`` for the
    default store, ``<results>/reports/<suite>`` for any other, so suites and stores never
    overwrite each other's report (a report replaces its folder whole)."""
    if is_default_store(results):
        return DEFAULT_REPORTS / suite
    return Path(results).expanduser() / STORE_REPORTS / suite


def submission_folder(results: str | os.PathLike, name: str) -> Path:
    """Where store `results` keeps the submission `name` (see :data:`SUBMISSIONS_FOLDER`)."""
    return Path(results).expanduser() / SUBMISSIONS_FOLDER / name


__all__ = ["DEFAULT_REPORTS", "DEFAULT_RESULTS", "DEFAULT_SUITE", "STORE_REPORTS", "SUBMISSIONS_FOLDER",
           "VERIFICATION_NAME", "is_default_store", "report_dir", "submission_folder"]
