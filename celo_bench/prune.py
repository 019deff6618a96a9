"""Move stored records that no current plan holds out of a results store.

A record's key hashes everything that changes its numbers, so after a spec edit, a grid
change, a new suite version or a new engine version the old records stay in the store
under keys no plan asks for. Scoring already ignores them (:mod:`celo_bench.results`);
pruning moves them to ``<results>/.pruned/<UTC timestamp>/<task>/<optimizer>/`` (never
deleted: move them back to restore them). Records of optimizers the registry does not
know (submissions) and of derived grids (suite labels with a ``@``, such as
``smoke@synthetic``) are never pruned.

"Current plan" means every plan a command could still score the record under: the suites'
grids planned at every horizon (``run --steps``) and with every set of execution settings
(``run --steps-strategy`` ..., :data:`celo_bench.strategy.SETTINGS`) that the store's records
state, on every backend (a key holds only the settings that differ from its device's
defaults), with as many seeds as the records reach. So a run made with another setting is
never moved aside: only records whose spec, grid, suite version, inputs or engine changed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from celo_bench import fileio
from celo_bench.errors import CeloBenchError
from celo_bench.plan import expand
from celo_bench.results import planned_jobs
from celo_bench.store import Store
from celo_bench.strategy import BACKENDS, stated
from celo_bench.suite import Registry, load_registry

PRUNED_DIR = ".pruned"


@dataclass(frozen=True)
class PruneResult:
    """What a prune moved (or, with ``dry_run``, would move).

    Attributes:
        pruned: One row per record not planned: ``task, optimizer, suite, suite_version,
            num_steps, key``.
        kept: Records some current plan holds.
        unregistered: Records of optimizers outside the registry (kept).
        destination: The folder the records were moved to (None on a dry run or when
            nothing was pruned).
        dry_run: Nothing was moved.
    """

    pruned: pd.DataFrame
    kept: int
    unregistered: int
    destination: Path | None
    dry_run: bool
    suites: tuple[str, ...] = field(default_factory=tuple)

    def counts(self) -> pd.DataFrame:
        """Pruned records per (task, optimizer): columns ``task, optimizer, records``."""
        if self.pruned.empty:
            return pd.DataFrame(columns=["task", "optimizer", "records"])
        return (self.pruned.groupby(["task", "optimizer"], sort=True).size()
                .rename("records").reset_index())


def planned_keys(registry: Registry, suites: Sequence[str] | None = None) -> set[str]:
    """Run keys of the default plans of `suites` (default: every suite of the registry)."""
    names = list(suites) if suites else list(registry.suites)
    return {r.key for n in names for j in planned_jobs(registry, registry.suite(n)) for r in j.runs}


def _settings_of(provenance: Any) -> tuple[tuple[str, Any], ...]:
    """The execution settings a record's provenance states, hashable (``()``: none stated)."""
    if isinstance(provenance, str):
        try:
            provenance = json.loads(provenance or "{}")
        except ValueError:
            provenance = {}
    execution = provenance.get("execution") if isinstance(provenance, Mapping) else None
    return tuple(sorted(stated(execution).items()))


def stored_plan_keys(registry: Registry, records: pd.DataFrame,
                     execution: Mapping[str, Any] | None = None) -> set[str]:
    """Run keys of every plan the `records` could belong to (see the module docstring).

    For each (suite, task) of the records: the current grid of the suite's optimizers (and the
    registry's submissions) at each horizon the records have, with each set of execution
    settings they state (and none, and `execution`), on every backend, seeds up to the
    highest stored. Suites or tasks the registry no longer has plan nothing.
    """
    keys: set[str] = set()
    extra = dict(execution or {})
    for (suite, task), g in records.groupby(["suite", "task"], sort=False):
        if suite not in registry.suites or task not in registry.suite(suite).tasks:
            continue
        spec = registry.suite(suite)
        opts = [*spec.optimizers, *(n for n, o in registry.optimizers.items()
                                    if o.kind == "submission" and n not in spec.optimizers)]
        seeds = max(int(g["seed"].max()) + 1, spec.seeds)
        settings = {(), tuple(sorted(extra.items()))} | {_settings_of(p) for p in g["provenance"]}
        horizons = {int(t) for t in g["num_steps"]}
        for steps in sorted(horizons):
            for combo in sorted(settings, key=repr):
                # with no setting stated the backend changes nothing: plan it once
                for backend in BACKENDS if combo else BACKENDS[:1]:
                    try:
                        jobs = expand(registry, spec, tasks=[task], optimizers=opts, seeds=seeds, steps=steps,
                                      backend=backend, strategy_overrides=dict(combo))
                    except CeloBenchError:
                        continue  # e.g. a horizon the current task cannot have: nothing planned
                    keys.update(r.key for j in jobs for r in j.runs)
    return keys


def prune(
    results: str | os.PathLike, *, suites: Sequence[str] | None = None, registry: Registry | None = None,
    dry_run: bool = False, now: _dt.datetime | None = None, execution: Mapping[str, Any] | None = None,
) -> PruneResult:
    """Move aside the stored records that no current suite plans.

    A record is kept when ANY current plan holds its key: the default plan of a current suite,
    or its plan at a horizon and with execution settings found in the store (see
    :func:`stored_plan_keys`; `execution`: settings to plan as well). With
    `suites`, only records labelled with one of those suites are candidates (records of
    other suites are left alone); without, every record in the store is.

    Args:
        results: The results store folder.
        suites: Limit pruning to records of these suites.
        registry: Spec registry (default: :func:`load_registry`).
        dry_run: Only report what would move.
        now: Timestamp of the destination folder (default: the current UTC time).

    Raises:
        CeloBenchError: `results` is not a folder, or a record cannot be moved (the records
            moved so far stay moved; a re-run continues).
    """
    root = Path(results)
    if not root.is_dir():
        raise CeloBenchError(f"{root} is not a results folder: pass --results DIR")
    reg = registry or load_registry()
    for name in suites or ():
        reg.suite(name)  # unknown names raise with a suggestion
    store = Store(root)
    df = store.read(curves=False)
    cols = ["task", "optimizer", "suite", "suite_version", "num_steps", "key"]
    if df.empty:
        return PruneResult(pd.DataFrame(columns=cols), 0, 0, None, dry_run, tuple(suites or ()))
    df = df.drop_duplicates("key")
    # derived grids (``<suite>@synthetic``) have their own plans: never candidates
    cand = df["suite"].isin(suites) if suites else ~df["suite"].str.contains("@", regex=False)
    known = df["optimizer"].isin(reg.optimizers)
    keep = planned_keys(reg) | stored_plan_keys(reg, df[cand & known], execution)
    drop = cand & known & ~df["key"].isin(keep)
    pruned = df.loc[drop, cols].sort_values(["task", "optimizer", "key"]).reset_index(drop=True)
    dest = None
    if len(pruned) and not dry_run:
        stamp = (now or _dt.datetime.now(_dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
        dest = root / PRUNED_DIR / stamp
        for r in pruned.itertuples(index=False):
            src = store.path(r.task, r.optimizer, r.key)
            target = dest / r.task / r.optimizer / src.name
            try:
                fileio.move(src, target)
            except OSError as e:
                raise CeloBenchError(f"cannot move {src} to {target}: {e.strerror or e}; fix the folder's "
                                     "permissions and re-run `celo-bench prune`") from e
    return PruneResult(pruned=pruned, kept=int((~drop & known).sum()),
                       unregistered=int((~known).sum()), destination=dest, dry_run=dry_run,
                       suites=tuple(suites or ()))
