"""The Python API behind ``celo-bench run`` and ``celo-bench status``: one config, one call."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from celo_bench import plan
from celo_bench.defaults import DEFAULT_RESULTS, DEFAULT_SUITE
from celo_bench.execute import EngineSettings, RunSummary, make_executor, run_jobs
from celo_bench.store import Store
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
    provenance: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # optimizer -> added to its records (submissions)

    def get_registry(self) -> Registry:
        return self.registry or load_registry()


def plan_grid(config: RunConfig) -> tuple[list[plan.Job], list[plan.Job], int]:
    """(all jobs, jobs reduced to runs still to do, number of runs already stored)."""
    reg = config.get_registry()
    suite = reg.suite(config.suite)
    jobs = plan.expand(
        reg, suite, tasks=config.tasks, optimizers=config.optimizers, seeds=config.seeds,
        steps=config.steps, grids=config.grids,
    )
    store = Store(config.results)
    statuses = store.statuses()
    done = {k for k, s in statuses.items() if s != "failed" or not config.retry_failed}
    todo = plan.missing(jobs, done)
    total = sum(len(j.runs) for j in jobs)
    return jobs, todo, total - sum(len(j.runs) for j in todo)


def run(config: RunConfig, on_job: Callable | None = None, on_plan: Callable | None = None) -> RunSummary:
    """Execute every run of the grid that is not stored yet; returns the summary."""
    _check_engine_settings(config.engine)
    executor = make_executor(config.executor, config.engine, config.address, config.executor_options)
    _, todo, skipped = plan_grid(config)
    todo = [replace(j, provenance={**j.provenance, **config.provenance[j.optimizer.name]})
            if j.optimizer.name in config.provenance else j for j in todo]
    _require_data(todo)
    todo, unavailable = split_unavailable(todo)
    if on_plan:
        on_plan(todo)
    summary = run_jobs(todo, Store(config.results), executor, skipped=skipped, on_job=on_job)
    summary.unavailable = unavailable
    return summary


def split_unavailable(jobs: Sequence[plan.Job]) -> tuple[list[plan.Job], dict[str, str]]:
    """Drop jobs of learned optimizers whose checkpoint cannot be found or fetched.

    They are reported (optimizer -> reason), not recorded as failures: the runs stay
    missing, and run again once a checkpoint is available (e.g. ``CELO_BENCH_CHECKPOINTS``).
    """
    from celo_bench.errors import CheckpointError
    from celo_bench.optimizers import factory
    from celo_bench.optimizers.checkpoint import resolve

    keep, unavailable = [], {}
    for job in jobs:
        spec = job.optimizer
        if spec.name in unavailable:
            continue
        if factory(spec.factory).learned:
            try:
                resolve(spec, None)
            except CheckpointError as e:
                unavailable[spec.name] = str(e)
                continue
        keep.append(job)
    return keep, unavailable


def _check_engine_settings(settings: EngineSettings) -> None:
    """Reject a bad strategy name up front (not as one failed record per run)."""
    from celo_bench.engine import RUNS_CHOICES, STEPS_CHOICES
    from celo_bench.errors import CeloBenchError

    for value, choices, flag in (
        (settings.steps_strategy, STEPS_CHOICES, "--steps-strategy"),
        (settings.runs_strategy, RUNS_CHOICES, "--runs-strategy"),
    ):
        if value is not None and value not in choices:
            raise CeloBenchError(f"{flag} must be one of {', '.join(choices)}, got '{value}'")


def _require_data(jobs: Sequence[plan.Job]) -> None:
    """Fail before any training when a job's dataset is missing (the error names the fix)."""
    from celo_bench import data
    from celo_bench.suite import canonical_json

    seen = set()
    for job in jobs:
        key = (job.task.dataset, canonical_json(job.task.data))
        if key not in seen:
            seen.add(key)
            data.require(job.task.dataset, job.task.data)


def status(config: RunConfig) -> dict:
    """Counts of the grid's runs by state: total, done, missing, ok, diverged, failed."""
    jobs, _, _ = plan_grid(config)
    statuses = Store(config.results).statuses()
    keys = [r.key for j in jobs for r in j.runs]
    got = [statuses.get(k) for k in keys]
    out = {
        "suite": config.suite,
        "results": str(config.results),
        "total": len(keys),
        "done": sum(s is not None for s in got),
        "missing": sum(s is None for s in got),
        "ok": sum(s == "ok" for s in got),
        "diverged": sum(s == "diverged" for s in got),
        "failed": sum(s == "failed" for s in got),
    }
    per_task: dict[str, dict[str, int]] = {}
    for j in jobs:
        row = per_task.setdefault(j.task.name, {"total": 0, "done": 0})
        row["total"] += len(j.runs)
        row["done"] += sum(statuses.get(r.key) is not None for r in j.runs)
    out["tasks"] = per_task
    return out
