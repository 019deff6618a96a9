"""Submissions: one folder (``submission.toml`` + ``optimizer.py``), two commands.

- :func:`validate_submission` (``celo-bench validate PATH``): metadata, search space and
  checkpoint are checked by reading files; the code runs in a separate process with a
  time limit (signature, update structure/shapes/dtypes, finiteness, determinism, jit
  and vmap over the search space).
- :func:`submit` (``celo-bench submit PATH``): validates, trains only the submission's
  missing runs (with its source and checkpoint sha256 in each record's provenance),
  scores it against tuned Adam and rewrites the report with its row marked.

The format is documented in ``submissions/template/``.
"""

from celo_bench.submission.checks import Failure
from celo_bench.submission.schema import Submission, parse_submission, source_sha256
from celo_bench.submission.validate import (
    DEFAULT_TIMEOUT,
    Report,
    SubmissionInvalid,
    validate_submission,
)


def __getattr__(name: str):
    """``submit`` pulls in the runner, engine and scoring: import it only when used (the
    validation worker imports this package and should start fast)."""
    if name in ("submit", "SubmitResult"):
        from celo_bench.submission import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)


__all__ = [
    "DEFAULT_TIMEOUT",
    "Failure",
    "Report",
    "Submission",
    "SubmissionInvalid",
    "SubmitResult",
    "parse_submission",
    "source_sha256",
    "submit",
    "validate_submission",
]
