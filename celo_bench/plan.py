"""Grid expansion: a suite becomes jobs (one per task x optimizer) of runs with stable keys.

A run's key hashes everything that changes its numbers: the resolved task and optimizer
specs, its hyper-parameters, seed and horizon, the suite version and the engine version,
the content of the inputs it reads (the dataset's fingerprint, the sha256 of a learned
optimizer's meta-parameters: :mod:`celo_bench.inputs`) and the execution choices a user
overrides (steps and runs strategy, XLA optimisation level: :mod:`celo_bench.strategy`).
A device's measured default strategy is not in the key: like the device itself, it is
recorded in each record's provenance, so stored results are found from any machine.
Planning imports no JAX.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from celo_bench import inputs
from celo_bench.data.synthetic import synthetic_name
from celo_bench.errors import CeloBenchError, DataMissingError
from celo_bench.strategy import SETTINGS, Strategy, check_overrides, default_strategy
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
    strategy: Strategy | None = None  # planned execution (None: the engine's default)
    checkpoint: str | None = None  # the weights file a learned optimizer loads
    weights_sha256: str | None = None  # ... and the sha256 its bytes must have
    unavailable: str = ""  # why the job cannot run here (missing weights), with the fix
    data_missing: str = ""  # the dataset is not present here (the message names the command)

    @property
    def name(self) -> str:
        return f"{self.task.name} x {self.optimizer.name}"

    def with_runs(self, runs: Sequence[RunSpec]) -> Job:
        return replace(self, runs=tuple(runs))


DATA_CHOICES = ("real", "synthetic")
SYNTHETIC_SUITE_SUFFIX = "@synthetic"
"""Records of a synthetic grid of suite ``paper`` are labelled ``paper@synthetic``."""
DEFAULT_SYNTHETIC_RESULTS = Path("results-synthetic")
"""Where ``--data synthetic`` writes unless given a folder other than the default ``results``."""


def run_key(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:24]


def key_payload(*, config: str, hparams: Mapping[str, float], seed: int, num_steps: int, suite: str,
                suite_version: str, data: str | None, weights: str | None, execution: Mapping[str, Any],
                synthetic: bool = False, engine: str = ENGINE_VERSION) -> dict[str, Any]:
    """What a run key hashes (:func:`run_key`): the architecture's run-key contract, built in one place
    for :func:`expand` and :func:`record_key`."""
    payload = {"config": config, "hparams": dict(hparams), "seed": seed, "num_steps": num_steps,
               "suite": suite, "suite_version": suite_version, "engine": engine,
               "inputs": {"data": data, "weights": weights}, "execution": dict(execution)}
    if synthetic:
        payload["data"] = "synthetic"
    return payload


def record_key(record: Mapping[str, Any]) -> str:
    """The run key of a stored record, recomputed from what the record states.

    Its ``config``, ``hparams``, ``seed``, ``num_steps``, suite and suite version, and from its
    ``provenance`` the data fingerprint, the weights' sha256 and the execution settings that were
    not the device's default (the ``execution`` it ran with against the default of its
    ``backend`` for the task's family), hashed with this installation's engine version. It equals
    the stored key unless the record was altered or made by another engine version (bundles are
    checked this way: :mod:`celo_bench.submission.bundle`).

    Raises:
      ValueError: the record's config or provenance cannot say it (not JSON, no backend).
    """
    prov = record["provenance"]
    prov = json.loads(prov or "{}") if isinstance(prov, str) else dict(prov or {})
    hparams = record["hparams"]
    hparams = json.loads(hparams or "{}") if isinstance(hparams, str) else dict(hparams)
    task = json.loads(record["config"])["task"]
    if not prov.get("backend"):
        raise ValueError("its provenance names no backend, which the run key's execution settings depend on")
    planned = default_strategy(task["family"], prov["backend"], dict(task.get("strategy") or {}))
    ran = prov.get("execution") or {}
    execution = {s.name: ran[s.name] for s in SETTINGS if s.name in ran and ran[s.name] != getattr(planned, s.name)}
    suite = str(record["suite"])
    synthetic = prov.get("data") == "synthetic"
    if synthetic and suite.endswith(SYNTHETIC_SUITE_SUFFIX):
        suite = suite[: -len(SYNTHETIC_SUITE_SUFFIX)]
    return run_key(key_payload(config=record["config"], hparams=hparams, seed=int(record["seed"]),
                               num_steps=int(record["num_steps"]), suite=suite,
                               suite_version=str(record["suite_version"]), data=prov.get("data_fingerprint"),
                               weights=prov.get("weights_sha256"), execution=execution, synthetic=synthetic))


def grid_points(grid: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    """Cartesian product of a grid; an empty grid is one point (learned optimizers)."""
    names = sorted(grid)
    return [dict(zip(names, vals, strict=True)) for vals in itertools.product(*(grid[n] for n in names))]


def check_selection(reg: Registry, suite: SuiteSpec, tasks: Sequence[str] | None,
                    optimizers: Sequence[str] | None) -> None:
    """Raise one line for an unknown task or optimizer, or a task that is not one of `suite`'s.

    A suite's report scores its own tasks only, so runs of another task under its name would
    be stored but never scored. `optimizers` may name any registered optimizer (a submission
    runs on a suite it is not part of).

    Raises:
      UnknownNameError: a name that no task or optimizer has (with the closest names).
      CeloBenchError: a task that is not in `suite`.
    """
    for name in tasks or ():
        reg.task(name)
        if name not in suite.tasks:
            raise CeloBenchError(
                f"task '{name}' is not in suite '{suite.name}' (its tasks: {', '.join(suite.tasks)}); "
                "its runs would never be scored: pick a suite that has it (`celo-bench list suites`)"
            )
    for name in optimizers or ():
        reg.optimizer(name)


def expand(
    registry: Registry,
    suite: SuiteSpec,
    *,
    tasks: Iterable[str] | None = None,
    optimizers: Iterable[str] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    grids: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    data: str = "real",
    backend: str | None = None,
    strategy_overrides: Mapping[str, Any] | None = None,
) -> list[Job]:
    """The suite's grid as jobs, optionally restricted to some tasks/optimizers.

    Horizon precedence: `steps` argument, then the suite's ``steps``, then the task's.
    Grid precedence: `grids` argument, then the suite's ``[grids]``, then the spec's.
    ``data="synthetic"`` trains on random stand-ins (:mod:`celo_bench.data.synthetic`): each
    task's dataset becomes ``synthetic:<name>``, run keys gain ``"data": "synthetic"`` and the
    records' suite is ``<suite>@synthetic``, so they are never scored with real runs.
    `backend` ("cpu", "gpu", "tpu"; default: :func:`celo_bench.strategy.backend_kind`) and
    `strategy_overrides` (execution settings by name: :data:`celo_bench.strategy.SETTINGS`) decide each job's
    :class:`~celo_bench.strategy.Strategy`. The overrides that differ from the job's default
    enter the run keys; the measured default of a device does not (it is part of the device,
    whose numbers differ anyway), so results made on a GPU are scored on a laptop; each
    record says how it ran.

    A job whose weights or data are missing here is still planned and carries the reason in
    ``Job.unavailable`` (weights) or ``Job.data_missing`` (data). `tasks` must be tasks of
    `suite` (:func:`check_selection`).
    """
    if data not in DATA_CHOICES:
        raise CeloBenchError(f"--data must be one of {', '.join(DATA_CHOICES)}, got '{data}'")
    synthetic = data == "synthetic"
    suite_label = f"{suite.name}{SYNTHETIC_SUITE_SUFFIX}" if synthetic else suite.name
    tasks = list(tasks) if tasks else None
    optimizers = list(optimizers) if optimizers else None
    check_selection(registry, suite, tasks, optimizers)
    task_names = list(tasks) if tasks else list(suite.tasks)
    opt_names = list(optimizers) if optimizers else list(suite.optimizers)
    n_seeds = seeds or suite.seeds
    backend = backend or inputs.backend_kind()
    overrides = {k: v for k, v in (strategy_overrides or {}).items() if v is not None}
    check_overrides(overrides)
    jobs = []
    for tname in task_names:
        tspec = registry.task(tname)
        T = steps or suite.steps or tspec.steps
        if T % tspec.eval_every:
            raise CeloBenchError(
                f"--steps {T} is not a multiple of eval_every={tspec.eval_every} of task '{tname}'"
            )
        tspec = replace(tspec, steps=T)
        if synthetic:
            tspec = replace(tspec, dataset=synthetic_name(tspec.dataset))
        data_missing = inputs.data_missing(tspec)
        try:
            data_fp = inputs.data_fingerprint(tspec)
        except DataMissingError:
            data_fp = None
        for oname in opt_names:
            ospec = registry.optimizer(oname)
            grid = (grids or {}).get(oname) or suite.grids.get(oname) or ospec.grid
            ospec = replace(ospec, grid={k: tuple(v) for k, v in grid.items()})
            config = canonical_json({"task": tspec.resolved(), "optimizer": ospec.resolved()})
            points = grid_points(ospec.grid)
            planned = default_strategy(tspec.family, backend, dict(tspec.strategy))
            strategy = default_strategy(tspec.family, backend, {**dict(tspec.strategy), **overrides})
            w = inputs.weights_input(ospec)
            # defaults follow the device, like its floats; an override equal to the default is none
            execution = {k: v for k, v in sorted(overrides.items()) if getattr(planned, k) != v}
            unavailable = w.unavailable if w else ""
            runs = []
            for hp in points:
                for seed in range(n_seeds):
                    key = run_key(key_payload(config=config, hparams=hp, seed=seed, num_steps=T, suite=suite.name,
                                              suite_version=suite.version, data=data_fp,
                                              weights=w.key_sha256 if w else None, execution=execution,
                                              synthetic=synthetic))
                    runs.append(RunSpec(key, suite_label, suite.version, tname, oname, hp, seed, T, config))
            prov: dict[str, Any] = {"data_fingerprint": data_fp, "execution": strategy.as_dict()}
            if synthetic:
                prov["data"] = "synthetic"
            if w is not None:
                prov |= {"weights_sha256": w.sha256, "weights_origin": w.origin, "weights_path": w.path}
            jobs.append(Job(task=tspec, optimizer=ospec, num_steps=T, runs=tuple(runs), provenance=prov,
                            strategy=strategy, checkpoint=w.path if w else None,
                            weights_sha256=w.sha256 if w else None, unavailable=unavailable,
                            data_missing=data_missing))
    return jobs


def missing(jobs: Iterable[Job], done: set[str]) -> list[Job]:
    """Jobs reduced to the runs whose keys are not in `done`; empty jobs dropped."""
    out = []
    for job in jobs:
        runs = [r for r in job.runs if r.key not in done]
        if runs:
            out.append(job.with_runs(runs))
    return out


def program_identity(job: Job) -> tuple:
    """What a job's compiled programs mostly depend on, short of weights and hyper-parameter
    values: the task and horizon, the optimizer's factory, the grid's names, the execution
    strategy and the number of runs. Jobs of one identity usually run the same programs
    (learned optimizers that differ in weights only, e.g. ``celo`` and ``celo_cpu_diet``), which
    the engine compiles once (``celo_bench.engine._train._optimizer_identity``, which also looks
    at the factory's resolved defaults: planning imports no JAX, so this is an estimate, used
    only to order jobs)."""
    o = job.optimizer
    return (job.task.name, job.num_steps, o.factory, tuple(sorted(o.grid)),
            job.strategy.label if job.strategy else None, job.checkpoint is not None, len(job.runs))


def reusers_last(jobs: Sequence[Job]) -> list[Job]:
    """`jobs` with every job whose :func:`program_identity` an earlier job has moved to the end
    (both groups keep their order).

    A job that reuses another's programs costs only its training, but started beside the job
    that compiles them it waits for that compile: on the quick tier ``celo_cpu_diet`` started
    next to ``celo`` on every task and one of the two CPU cores sat idle for ~10-20 s each time.
    Last, it finds the programs compiled, and the grid ends on short jobs.
    """
    seen: set[tuple] = set()
    first: list[Job] = []
    later: list[Job] = []
    for job in jobs:
        ident = program_identity(job)
        (later if ident in seen else first).append(job)
        seen.add(ident)
    return first + later
