"""The report step of ``celo-bench run``: checked up front, skipped when already current."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.markup import escape

from celo_bench import __version__, fileio, references
from celo_bench.cli._common import console
from celo_bench.errors import CeloBenchError
from celo_bench.paths import unwritable_reason
from celo_bench.runner import GridPlan
from celo_bench.store import Store
from celo_bench.suite import Registry, load_registry

STAMP = ".celo-bench-report"
"""The report folder's marker file; ``run`` keeps in it what the report was made from."""


def check_out_writable(out: Path) -> None:
    """Raise one line now if report folder `out` could not be written (before any training).

    A report is written into a temporary folder beside `out` and swapped in whole, so the
    parent folder must accept new folders. Creates nothing: where the parent does not exist
    yet, the nearest existing folder on the way must be writable.

    Raises:
      CeloBenchError: names `out` and the problem.
    """
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")

    def refused(why: object) -> CeloBenchError:
        return CeloBenchError(f"report folder {out} cannot be written ({why}); choose another --out or "
                              "fix its permissions (nothing was run)")

    if out.exists() and not out.is_dir():
        raise CeloBenchError(f"report folder {out} cannot be written: it is a file; choose another --out")
    if not parent.is_dir():  # creates nothing: a command that stops early leaves no folder behind
        problem = unwritable_reason(out)
        if problem:
            raise refused(problem)
        return
    try:
        probe = tempfile.mkdtemp(prefix=".celo-bench-probe-", dir=parent)  # a real write, removed at once
        os.rmdir(probe)
    except OSError as e:
        raise refused(unwritable_reason(out) or e.strerror or e) from None


def store_registry(results: Path, quiet: bool = False) -> Registry:
    """The spec registry plus every submission kept in store `results` (their rows stay on its
    leaderboard: :mod:`celo_bench.submission.stored`); a kept folder that cannot be read is
    left out with one line on stderr."""
    from celo_bench.submission.stored import with_stored

    reg, problems = with_stored(load_registry(), results)
    for line in problems if not quiet else ():
        console.print(f"[yellow]note[/]: {escape(line)}", soft_wrap=True)
    return reg


def report_stamp(grid: GridPlan, suite: str, not_run: Mapping[str, str], statuses: Mapping[str, str],
                 registry: Registry | None = None) -> str:
    """A fingerprint of everything a report of `grid` is made from (`statuses`: the store now;
    `registry`: its submissions, kept in the store, are ranked too)."""
    planned = sorted((r.key, statuses.get(r.key) or "") for j in grid.jobs for r in j.runs)
    subs = sorted(f"{o.name}:{o.factory}" for o in (registry.optimizers.values() if registry else ())
                  if o.kind == "submission")
    try:  # reference results ranked beside the store: their sha256
        shipped = references.manifest(suite)
        refs = {"references": shipped.sha256} if shipped else {}
    except references.ReferencesError as e:  # the report says it in one line
        refs = {"references": str(e)}
    payload = {"suite": suite, "runs": planned, "not_run": dict(sorted(not_run.items())),
               "version": __version__, **({"submissions": subs} if subs else {}), **refs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def write_report_if_stale(
    suite: str,
    results: Path,
    out: Path,
    quiet: bool,
    *,
    not_run: Mapping[str, str],
    grid: GridPlan | None,
    changed: bool,
    steps: int | None = None,
    seeds: int | None = None,
    execution: Mapping[str, Any] | None = None,
) -> Path | None:
    """Write the report of `suite` into `out` unless the one there is already current."""
    from celo_bench.report import write_report  # deferred: plotting libraries are slow to import

    registry = store_registry(results, quiet)
    stamp = None
    if grid is not None:  # the plan's scan is current unless this run stored records
        statuses = Store(results).scan().statuses if changed else grid.scan.statuses
        stamp = report_stamp(grid, suite, not_run, statuses, registry)
    stamp_file = Path(out) / STAMP
    if not changed and stamp and stamp_file.is_file():
        try:
            if json.loads(stamp_file.read_text()).get("stamp") == stamp:
                if not quiet:
                    console.print(f"report current: {out} (nothing new since it was written)")
                return Path(out)
        except (OSError, ValueError):
            pass
    try:
        path = write_report(suite=suite, results=results, out=out, not_run=dict(not_run), steps=steps,
                            seeds=seeds, execution=execution, registry=registry)
    except CeloBenchError as e:  # e.g. a partial grid without the Adam reference
        console.print(f"[yellow]report skipped[/]: {escape(str(e))}")
        return None
    if stamp:
        try:
            fileio.atomic_write_text(Path(path) / STAMP, json.dumps({"stamp": stamp}))
        except OSError:
            pass  # the report is whole; only the next run's shortcut is lost
    return path


__all__ = ["STAMP", "check_out_writable", "report_stamp", "store_registry", "write_report_if_stale"]
