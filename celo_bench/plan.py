"""Grid expansion: a suite becomes jobs (one per task x optimizer) of runs with stable keys.

A run's key hashes everything that changes its numbers: the resolved task and optimizer
specs, its hyper-parameters, seed and horizon, the suite version and the engine version.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from celo_bench.errors import CeloBenchError
from celo_bench.suite import OptimizerSpec, Registry, SuiteSpec, TaskSpec, canonical_json
from celo_bench.versions import ENGINE_VERSION


@dataclass(frozen=True)
class RunSpec:
    """One training run: what it is and its content-addressed key."""

    key: str
    suite: str
    suite_version: str
    task: str
    optimizer: str
    hparams: Mapping[str, float]
    seed: int
    num_steps: int
    config: str  # canonical JSON of the resolved task and optimizer specs

    @property
    def hparam_id(self) -> str:
        """Printable ID in benchopt's bracket style, e.g. ``adam[learning_rate=0.001]``."""
        inner = ",".join(f"{k}={v:g}" for k, v in sorted(self.hparams.items()))
        return f"{self.optimizer}[{inner}]"


@dataclass(frozen=True)
class Job:
    """All runs of one (task, optimizer) pair: they train in one compiled program."""

    task: TaskSpec
    optimizer: OptimizerSpec
    num_steps: int
    runs: tuple[RunSpec, ...]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.task.name} x {self.optimizer.name}"

    def with_runs(self, runs: Sequence[RunSpec]) -> Job:
        return replace(self, runs=tuple(runs))


def run_key(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:24]


def grid_points(grid: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    """Cartesian product of a grid; an empty grid is one point (learned optimizers)."""
    names = sorted(grid)
    return [dict(zip(names, vals, strict=True)) for vals in itertools.product(*(grid[n] for n in names))]


def expand(
    registry: Registry,
    suite: SuiteSpec,
    *,
    tasks: Iterable[str] | None = None,
    optimizers: Iterable[str] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    grids: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> list[Job]:
    """The suite's grid as jobs, optionally restricted to some tasks/optimizers.

    Horizon precedence: `steps` argument, then the suite's ``steps``, then the task's.
    Grid precedence: `grids` argument, then the suite's ``[grids]``, then the spec's.
    """
    task_names = list(tasks) if tasks else list(suite.tasks)
    opt_names = list(optimizers) if optimizers else list(suite.optimizers)
    n_seeds = seeds or suite.seeds
    jobs = []
    for tname in task_names:
        tspec = registry.task(tname)
        T = steps or suite.steps or tspec.steps
        if T % tspec.eval_every:
            raise CeloBenchError(
                f"--steps {T} is not a multiple of eval_every={tspec.eval_every} of task '{tname}'"
            )
        tspec = replace(tspec, steps=T)
        for oname in opt_names:
            ospec = registry.optimizer(oname)
            grid = (grids or {}).get(oname) or suite.grids.get(oname) or ospec.grid
            ospec = replace(ospec, grid={k: tuple(v) for k, v in grid.items()})
            config = canonical_json({"task": tspec.resolved(), "optimizer": ospec.resolved()})
            runs = []
            for hp in grid_points(ospec.grid):
                for seed in range(n_seeds):
                    key = run_key(
                        {"config": config, "hparams": hp, "seed": seed, "num_steps": T,
                         "suite": suite.name, "suite_version": suite.version, "engine": ENGINE_VERSION}
                    )
                    runs.append(RunSpec(key, suite.name, suite.version, tname, oname, hp, seed, T, config))
            jobs.append(Job(task=tspec, optimizer=ospec, num_steps=T, runs=tuple(runs)))
    return jobs


def missing(jobs: Iterable[Job], done: set[str]) -> list[Job]:
    """Jobs reduced to the runs whose keys are not in `done`; empty jobs dropped."""
    out = []
    for job in jobs:
        runs = [r for r in job.runs if r.key not in done]
        if runs:
            out.append(job.with_runs(runs))
    return out
