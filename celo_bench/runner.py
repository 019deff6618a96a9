"""The Python API behind ``celo-bench run`` and ``celo-bench status``: one config, one call."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from celo_bench import inputs, plan, references
from celo_bench.defaults import DEFAULT_RESULTS, DEFAULT_SUITE
from celo_bench.errors import DataMissingError
from celo_bench.execute import EngineSettings, RunSummary, make_executor, run_jobs
from celo_bench.store import Store, StoreScan
from celo_bench.strategy import check_overrides
from celo_bench.suite import Registry, load_registry


@dataclass
class RunConfig:
    """Everything ``celo-bench run`` accepts; CLI options map one to one onto these fields."""

    suite: str = DEFAULT_SUITE
    tasks: Sequence[str] | None = None
    optimizers: Sequence[str] | None = None
    seeds: int | None = None
    steps: int | None = None
    grids: Mapping[str, Mapping[str, Sequence[float]]] | None = None
    results: Path = DEFAULT_RESULTS
    executor: str = "local"
    address: str | None = None
    executor_options: Mapping[str, Any] = field(default_factory=dict)  # e.g. Ray per-job resources
    retry_failed: bool = False
    engine: EngineSettings = field(default_factory=EngineSettings)
    registry: Registry | None = None
    data: str = "real"  # "synthetic": random stand-ins of the same shapes (celo_bench.data.synthetic)
    provenance: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # optimizer -> added to its records (submissions)
    job_seconds: Mapping[str, float] = field(default_factory=dict)  # task -> expected job seconds: longest first

    def __post_init__(self) -> None:
        if self.data == "synthetic" and Path(self.results) == DEFAULT_RESULTS:
            self.results = plan.DEFAULT_SYNTHETIC_RESULTS  # never beside real records by default

    def get_registry(self) -> Registry:
        return self.registry or load_registry()


@dataclass
class GridPlan:
    """A grid planned against a store: what is stored, what is left, what cannot run here.

    ``not_run`` maps each optimizer whose jobs cannot run on this machine (missing weights)
    to its one-line reason with the fix; those runs are never stored as failures.
    """

    jobs: list[plan.Job]
    todo: list[plan.Job]
    stored: int
    not_run: dict[str, str]
    scan: StoreScan

    @property
    def total(self) -> int:
        return sum(len(j.runs) for j in self.jobs)

    def not_run_groups(self) -> list[tuple[str, str, list[str]]]:
        """``(reason, fix, optimizers)``: one entry per distinct reason, for a short summary."""
        groups: dict[tuple[str, str], list[str]] = {}
        specs = {j.optimizer.name: j.optimizer for j in self.jobs}
        for name, message in self.not_run.items():
            w = inputs.weights_input(specs[name])
            reason, fix = (w.reason or message, w.fix) if w else (message, "")
            groups.setdefault((reason, fix), []).append(name)
        return [(r, f, names) for (r, f), names in groups.items()]

    @property
    def failed_stored(self) -> int:
        return sum(self.scan.statuses.get(r.key) == "failed" for j in self.jobs for r in j.runs)


def plan_run(config: RunConfig, scan: StoreScan | None = None) -> GridPlan:
    """Plan `config`'s grid against its store (imports no JAX); `scan`: one just made of it."""
    reg = config.get_registry()
    suite = reg.suite(config.suite)
    jobs = plan.expand(
        reg, suite, tasks=config.tasks, optimizers=config.optimizers, seeds=config.seeds,
        steps=config.steps, grids=config.grids, data=config.data,
        strategy_overrides=config.engine.strategy_overrides(),
    )
    scan = scan or Store(config.results).scan()
    done = {k for k, s in scan.statuses.items() if s != "failed" or not config.retry_failed}
    done |= {b.path.stem for b in scan.newer}  # a newer celo-bench's records: never run over them
    todo = plan.missing(jobs, done)
    stored = sum(len(j.runs) for j in jobs) - sum(len(j.runs) for j in todo)
    not_run: dict[str, str] = {}
    for job in jobs:
        if job.unavailable:
            not_run.setdefault(job.optimizer.name, job.unavailable)
    return GridPlan(jobs=jobs, todo=todo, stored=stored, not_run=not_run, scan=scan)


def plan_grid(config: RunConfig) -> tuple[list[plan.Job], list[plan.Job], int]:
    """(all jobs, jobs reduced to runs still to do, number of runs already stored)."""
    p = plan_run(config)
    return p.jobs, p.todo, p.stored


def run(
    config: RunConfig,
    on_job: Callable | None = None,
    on_plan: Callable | None = None,
    on_wait: Callable | None = None,
    on_grid: Callable[[GridPlan], None] | None = None,
) -> RunSummary:
    """Execute every run of the grid that is not stored yet; returns the summary.

    Before any training: bad settings, an unwritable results folder and missing datasets
    are one-line errors; temporary files of killed writes are removed and unreadable
    records moved aside (their runs count as missing); learned optimizers whose weights
    are not available here are skipped with the reason (``summary.unavailable``), never
    recorded as failures.

    Raises:
      CeloBenchError: any of the problems above, or a write that fails (disk full).
    """
    _check_engine_settings(config.engine)
    reg = config.get_registry()  # names are checked before the results folder is created
    plan.check_selection(reg, reg.suite(config.suite), config.tasks, config.optimizers)
    executor = make_executor(config.executor, config.engine, config.address, config.executor_options)
    store = Store(config.results)
    store.check_writable()
    repaired = store.repair()  # its scan stays current: the files it moved were never readable
    grid = plan_run(config, repaired)
    if on_grid:
        on_grid(grid)
    todo = [replace(j, provenance={**j.provenance, **config.provenance[j.optimizer.name]})
            if j.optimizer.name in config.provenance else j for j in grid.todo]
    _require_data(todo)
    todo = [j for j in todo if j.optimizer.name not in grid.not_run]
    if config.job_seconds:  # longest first: the last job to finish is a short one (stable: plan order on ties)
        todo.sort(key=lambda j: -config.job_seconds.get(j.task.name, 0.0))
    todo = plan.reusers_last(todo)  # a job that reuses another's programs waits for none
    if on_plan:
        on_plan(todo)
    summary = run_jobs(todo, store, executor, skipped=grid.stored, on_job=on_job, on_wait=on_wait)
    summary.notes = [*repaired.lines(), *summary.notes]
    summary.unavailable = dict(grid.not_run)
    summary.failed_stored = grid.failed_stored if not config.retry_failed else 0
    return summary


def _check_engine_settings(settings: EngineSettings) -> None:
    """Reject a bad strategy name up front (not as one failed record per run)."""
    check_overrides(settings.strategy_overrides())


def _require_data(jobs: Sequence[plan.Job]) -> None:
    """Fail before any training when a job's dataset is missing (the error names the fix)."""
    for job in jobs:
        if job.data_missing:
            raise DataMissingError(job.data_missing)


def status(config: RunConfig) -> dict:
    """Counts of the grid's runs by state, and what cannot run here and why.

    Keys: total, done, missing, newer (planned runs stored by a newer celo-bench, which this one
    neither reads nor reruns), ok, diverged, failed, not_run (optimizer -> reason with the
    fix), not_run_runs (runs of those optimizers), tasks (task -> total/done), unreadable
    (one line per bad file in the store), in_references (missing runs that the shipped reference
    results hold: scoring uses them).
    """
    grid = plan_run(config)
    statuses = grid.scan.statuses
    keys = [r.key for j in grid.jobs for r in j.runs]
    got = [statuses.get(k) for k in keys]
    newer = {b.path.stem for b in grid.scan.newer}  # stored by a newer celo-bench: not missing, not readable
    out = {
        "suite": config.suite,
        "results": str(config.results),
        "total": len(keys),
        "done": sum(s is not None for s in got),
        "missing": sum(s is None and k not in newer for s, k in zip(got, keys, strict=True)),
        "newer": sum(k in newer for k in keys),
        "ok": sum(s == "ok" for s in got),
        "diverged": sum(s == "diverged" for s in got),
        "failed": sum(s == "failed" for s in got),
    }
    out["not_run"] = dict(grid.not_run)
    out["not_run_groups"] = [{"reason": r, "fix": f, "optimizers": n} for r, f, n in grid.not_run_groups()]
    out["not_run_runs"] = sum(
        statuses.get(r.key) is None for j in grid.jobs if j.optimizer.name in grid.not_run for r in j.runs
    )
    per_task: dict[str, dict[str, int]] = {}
    for j in grid.jobs:
        row = per_task.setdefault(j.task.name, {"total": 0, "done": 0})
        row["total"] += len(j.runs)
        row["done"] += sum(statuses.get(r.key) is not None for r in j.runs)
    out["tasks"] = per_task
    out["unreadable"] = grid.scan.lines()
    out["in_references"] = _in_references(config.suite, [k for k, g in zip(keys, got, strict=True) if g is None])
    return out


def _in_references(suite: str, missing: Sequence[str]) -> int:
    """How many of the `missing` run keys the shipped reference results hold (scoring uses them)."""
    try:
        m = references.manifest(suite)
    except references.ReferencesError:
        return 0
    return len(set(missing) & m.all_keys()) if m is not None else 0
