"""Reference results that ship: a suite's baselines, scored beside the store, never written into it.

A suite's references (``celo_bench/references/<suite>/``: one zstd parquet file and its
manifest, package data) hold the results of its current plan for every optimizer that runs
offline, made once per release by a maintainer (``celo-bench references build``;
docs/references.md). Scoring reads them as a second source beside the store
(:func:`celo_bench.results.select_records`): each optimizer's runs come all from the store or
all from the references, never mixed; an optimizer with any record of the plan in the store
uses the store. Rows drawn from references say so (``source`` = ``reference (<device kind>)``).
``celo-bench submit`` therefore trains only a submission's own runs, and ``celo-bench report``
on an empty store renders the reference leaderboard.

Loading checks the file's sha256 against the manifest (:func:`load`); :func:`check` compares
the manifest's run keys with the keys ``plan`` computes now.
"""

from celo_bench.references._build import MAX_BYTES, Built, build, check
from celo_bench.references._files import (
    ENV,
    MARK,
    SERIES,
    SOURCE,
    STORE,
    Manifest,
    References,
    ReferencesError,
    environments_note,
    for_scoring,
    label,
    line,
    load,
    manifest,
    root,
    suites,
    write_intervals,
)

__all__ = ["ENV", "MARK", "MAX_BYTES", "SERIES", "SOURCE", "STORE", "Built", "Manifest", "References",
           "ReferencesError", "build", "check", "environments_note", "for_scoring", "label", "line", "load", "manifest",
           "root", "suites", "write_intervals"]
