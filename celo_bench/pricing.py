"""Plan and price a grid before running it: runs, jobs, programs, data, weights, storage, time.

``celo-bench plan`` is a dry run. From the suite and grid specs alone (no training, no device)
it counts what a ``celo-bench run`` with the same options would do:

- **runs** (one per grid point x seed x task), **jobs** (one per task x optimizer) and
  **compiled programs**: a job splits into ``ceil(runs / runs_per_program)`` chunks when its
  runs do not fit in the device's memory budget (:mod:`celo_bench.engine.memory`); each
  chunk compiles :data:`PROGRAMS_PER_CHUNK` programs of its own (init, a block of steps),
  and each task adds :data:`START_PER_TASK` plus :data:`SHARED_PER_SHAPE` per distinct
  chunk shape (evaluation, and the gradient or the final loss), shared by its jobs;
- what the results folder already holds (:class:`~celo_bench.store.Store` statuses);
- which datasets and learned-optimizer weights are present, and the command that fetches
  each missing one;
- the store's expected size: per record ``(T + 1)`` float32 training losses, three
  evaluation curves of ``T / eval_every + 1`` float32 values and ~2 KB of metadata;
- with a calibration (:mod:`celo_bench.calibration`, the only part that runs anything), the
  projected wall time and device-hours of the grid on the probed device.

This module imports no JAX: the parts that need it (model sizes by abstract evaluation,
the timed probe) are :mod:`celo_bench.calibration`, whose results arrive here as plain data.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from celo_bench import hub, inputs, plan
from celo_bench.data import RECIPES
from celo_bench.data.synthetic import is_synthetic, real_name
from celo_bench.errors import CeloBenchError
from celo_bench.store import Store
from celo_bench.strategy import (
    BACKENDS,
    ENGINE_PROGRAMS_PER_CHUNK,
    PROGRAMS_PER_CHUNK,
    SHARED_PER_SHAPE,
    START_PER_TASK,
)
from celo_bench.suite import Registry, canonical_json

METADATA_BYTES = 2048
"""Per-record metadata (config JSON, provenance, timings) in the store, roughly."""


@dataclass(frozen=True)
class TaskSize:
    """Memory facts of one task: trainable scalars, bytes per example and per run."""

    n_params: int
    example_bytes: int
    bytes_per_run: int


@dataclass
class JobPrice:
    """One (task, optimizer) job of the grid."""

    task: str
    family: str
    optimizer: str
    kind: str  # handcrafted | learned | extra | submission
    runs: int
    stored: int
    num_steps: int
    eval_every: int
    strategy: str  # e.g. "scan+vmap"
    runs_per_program: int
    chunks: int
    programs: int


@dataclass
class Plan:
    """Everything ``celo-bench plan`` reports (plain data; :meth:`as_dict` for JSON)."""

    suite: str
    suite_label: str
    data: str
    results: str
    backend: str
    memory_budget_bytes: int | None
    jobs: list[JobPrice]
    stored: dict[str, int]
    datasets: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    storage: dict[str, Any]
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    projection: dict[str, Any] | None = None

    @property
    def counts(self) -> dict[str, int]:
        runs = sum(j.runs for j in self.jobs)
        return {
            "tasks": len({j.task for j in self.jobs}),
            "optimizers": len({j.optimizer for j in self.jobs}),
            "runs": runs,
            "runs_handcrafted": sum(j.runs for j in self.jobs if j.kind != "learned"),
            "runs_learned": sum(j.runs for j in self.jobs if j.kind == "learned"),
            "jobs": len(self.jobs),
            "chunks": sum(j.chunks for j in self.jobs),
            "programs": sum(j.programs for j in self.jobs) + self.shared_programs(),
            "shared_programs": self.shared_programs(),
            "task_steps": sum(j.runs * j.num_steps for j in self.jobs),
            "runs_to_do": runs - sum(j.stored for j in self.jobs),
            "runs_without_weights": sum(
                j.runs for j in self.jobs
                if any(c["optimizer"] == j.optimizer and not c["present"] for c in self.checkpoints)
            ),
        }

    def shared_programs(self) -> int:
        """Programs shared by the jobs of a task: the start, and per distinct chunk shape (runs
        per program, vmapped or not) the evaluation plus the gradient (``split`` jobs, whose
        gradient program also gives the final loss) or the final loss (other jobs)."""
        kinds: dict[str, dict[tuple[bool, int], set[str]]] = {}
        for j in self.jobs:
            vmap = "+vmap" in j.strategy
            sizes = {min(j.runs_per_program, j.runs), j.runs - (j.chunks - 1) * j.runs_per_program}
            kind = "gradient" if j.strategy.startswith("split") else "final loss"
            for s in sizes:
                if s > 0:
                    kinds.setdefault(j.task, {}).setdefault((vmap, s if vmap else 1), set()).add(kind)
        return sum(START_PER_TASK + sum(1 + len(k) for k in shapes.values()) for shapes in kinds.values())

    def by_strategy(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for j in self.jobs:
            row = out.setdefault(j.strategy, {"jobs": 0, "chunks": 0, "programs": 0, "runs": 0})
            row["jobs"] += 1
            row["chunks"] += j.chunks
            row["programs"] += j.programs
            row["runs"] += j.runs
        return out

    def by_task(self) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for j in self.jobs:
            row = rows.setdefault(j.task, {"task": j.task, "family": j.family, "runs": 0, "stored": 0,
                                           "jobs": 0, "programs": 0, "strategies": Counter()})
            row["runs"] += j.runs
            row["stored"] += j.stored
            row["jobs"] += 1
            row["programs"] += j.programs
            row["strategies"][j.strategy] += 1
        out = []
        for name, row in rows.items():
            row["strategies"] = dict(row["strategies"])
            out.append(row | self.sizes.get(name, {}))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite, "suite_label": self.suite_label, "data": self.data,
            "results": self.results, "backend": self.backend,
            "memory_budget_bytes": self.memory_budget_bytes,
            "counts": self.counts, "strategies": self.by_strategy(), "stored": self.stored,
            "tasks": self.by_task(), "datasets": self.datasets, "checkpoints": self.checkpoints,
            "storage": self.storage, "projection": self.projection,
            "jobs": [asdict(j) for j in self.jobs],
        }


def record_bytes(num_steps: int, eval_every: int) -> int:
    """Expected bytes of one stored record: train curve, 3 eval curves, metadata."""
    return 4 * (num_steps + 1) + 3 * 4 * (num_steps // eval_every + 1) + METADATA_BYTES


_PREPARE = re.compile(r"`(celo-bench data prepare[^`]*)`")


def dataset_status(jobs: Sequence[plan.Job]) -> list[dict[str, Any]]:
    """Per dataset of `jobs`: present, or missing with the command that fetches it.

    A dataset used with several ``[data]`` options (e.g. LM sequence lengths 8 and 32) is
    present only if every option can be loaded; its command is the first missing one's.
    """
    groups: dict[str, dict[str, Any]] = {}
    for job in jobs:
        g = groups.setdefault(job.task.dataset, {"options": {}, "tasks": set(), "problems": []})
        g["options"][canonical_json(dict(job.task.data))] = dict(job.task.data)
        g["tasks"].add(job.task.name)
        if job.data_missing and job.data_missing not in g["problems"]:
            g["problems"].append(job.data_missing)
    out = []
    for name, g in groups.items():
        row: dict[str, Any] = {"dataset": name, "options": list(g["options"].values()), "tasks": sorted(g["tasks"])}
        if g["problems"]:
            m = _PREPARE.search(g["problems"][0])
            row |= {"present": False, "detail": g["problems"][0],
                    "command": m.group(1) if m else f"celo-bench data prepare {real_name(name)}",
                    "download": RECIPES[name].download_size if name in RECIPES else ""}
        elif is_synthetic(name):
            row |= {"present": True, "detail": f"synthetic stand-in of {real_name(name)}, generated", "command": ""}
        elif name not in RECIPES:
            row |= {"present": True, "detail": "ships with installed packages", "command": ""}
        else:
            row |= {"present": True, "detail": "prepared", "command": ""}
        out.append(row)
    return out


def checkpoint_status(jobs: Sequence[plan.Job]) -> list[dict[str, Any]]:
    """Per learned optimizer of `jobs`: where its weights are, or why not and how to get them.

    A learned optimizer without weights is skipped by ``celo-bench run`` (its runs stay
    missing), not failed.
    """
    out, seen = [], set()
    for job in jobs:
        spec = job.optimizer
        if spec.kind != "learned" or spec.name in seen:
            continue
        seen.add(spec.name)
        runs = sum(len(j.runs) for j in jobs if j.optimizer.name == spec.name)
        row: dict[str, Any] = {"optimizer": spec.name, "source": spec.checkpoint.get("source", ""), "runs": runs}
        if job.unavailable:
            w = inputs.weights_input(spec)
            # a file that is there but wrong (bad hash, not msgpack) carries its own fix in the reason
            wrong = bool(w and w.reason and not w.fix)
            command = "" if wrong else fetch_command(spec.checkpoint)
            if not wrong and w and w.fix and not row["source"].startswith("hf://"):
                command = w.fix  # never published: the weights' own fix (make them), not a download
            row |= {"present": False, "reason": (w.reason if w and w.reason else job.unavailable),
                    "command": command}
        else:
            row |= {"present": True, "origin": job.provenance.get("weights_origin"),
                    "path": job.checkpoint, "command": ""}
        out.append(row)
    return out


def fetch_command(checkpoint: Mapping[str, str]) -> str:
    """The command that makes a learned optimizer's weights available, from its ``[checkpoint]``."""
    source = checkpoint.get("source", "")
    if checkpoint.get("make"):
        return checkpoint["make"]
    if source.startswith("hf://"):
        parts = source.removeprefix("hf://").split("/")
        repo, filename = "/".join(parts[:2]), "/".join(parts[2:]) or "theta.state"
        return hub.download_command(repo, filename)
    return "set CELO_BENCH_CHECKPOINTS to a folder holding <optimizer>/theta.state"


def storage(plan_jobs: Sequence[JobPrice], store: Store) -> dict[str, Any]:
    """Expected store size of the grid, and the measured size of the records already there."""
    per = [record_bytes(j.num_steps, j.eval_every) for j in plan_jobs for _ in range(j.runs)]
    todo = sum(record_bytes(j.num_steps, j.eval_every) * (j.runs - j.stored) for j in plan_jobs)
    out: dict[str, Any] = {"records": len(per), "bytes": sum(per), "bytes_to_write": todo,
                           "bytes_per_record": round(sum(per) / len(per)) if per else 0}
    scan = store.scan() if store.root.is_dir() else None
    if scan and scan.paths:
        sizes = [p.stat().st_size for p in scan.paths.values() if p.is_file()]
        out["stored_records"] = len(sizes)
        out["measured_bytes_per_record"] = round(sum(sizes) / len(sizes)) if sizes else 0
    return out


def price(
    registry: Registry,
    suite: str,
    *,
    tasks: Iterable[str] | None = None,
    optimizers: Iterable[str] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    data: str = "real",
    results: str | os.PathLike = "results",
    backend: str = "cpu",
    memory_budget: int | None = None,
    sizes: Mapping[str, TaskSize] | None = None,
    execution: Mapping[str, Any] | None = None,
    max_runs_per_program: int | None = None,
) -> Plan:
    """The plan of a grid: counts, stored runs, data, weights and storage (no training).

    Args:
      registry, suite, tasks, optimizers, seeds, steps, data: as ``celo-bench run``.
      results: the results folder whose records count as stored.
      backend: the device the grid will run on (``cpu``, ``gpu``, ``tpu``): it picks each
        family's strategy.
      memory_budget: bytes per job; with `sizes` it decides the chunks (None: one chunk).
      sizes: per task, :class:`TaskSize` (from :func:`celo_bench.calibration.task_sizes`).
      execution: execution settings (:data:`celo_bench.strategy.SETTINGS`), as ``run --steps-strategy`` ...
      max_runs_per_program: an engine override, as ``run``.

    Raises:
      CeloBenchError: unknown names, a bad ``--data`` or backend, steps not a multiple of
        a task's ``eval_every``.
    """
    if backend not in BACKENDS:
        raise CeloBenchError(f"--backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    spec = registry.suite(suite)
    with hub.no_downloads("a plan never downloads"):  # weights are looked up in caches only
        jobs = plan.expand(registry, spec, tasks=tasks, optimizers=optimizers, seeds=seeds, steps=steps,
                           data=data, backend=backend,
                           strategy_overrides=execution)
    store = Store(results)
    statuses = store.statuses() if Path(results).is_dir() else {}
    priced = []
    for job in jobs:
        label = job.strategy.label
        size = (sizes or {}).get(job.task.name)
        if memory_budget and size:
            per_program = max(1, memory_budget // max(1, size.bytes_per_run))
        else:
            per_program = len(job.runs)
        if max_runs_per_program:
            per_program = min(per_program, max_runs_per_program)
        n_chunks = math.ceil(len(job.runs) / per_program)
        priced.append(JobPrice(
            task=job.task.name, family=job.task.family, optimizer=job.optimizer.name,
            kind=job.optimizer.kind, runs=len(job.runs),
            stored=sum(r.key in statuses for r in job.runs), num_steps=job.num_steps,
            eval_every=job.task.eval_every, strategy=label,
            runs_per_program=min(per_program, len(job.runs)), chunks=n_chunks,
            programs=n_chunks * PROGRAMS_PER_CHUNK,
        ))
    keys = {r.key for j in jobs for r in j.runs}
    got = Counter(s for k, s in statuses.items() if k in keys)
    stored = {"total": len(keys), "stored": sum(got.values()), "missing": len(keys) - sum(got.values()),
              **{s: got.get(s, 0) for s in ("ok", "diverged", "failed")}}
    return Plan(
        suite=spec.name, suite_label=jobs[0].runs[0].suite if jobs and jobs[0].runs else spec.name,
        data=data, results=str(results), backend=backend, memory_budget_bytes=memory_budget,
        jobs=priced, stored=stored, datasets=dataset_status(jobs),
        checkpoints=checkpoint_status(jobs),
        storage=storage(priced, store),
        sizes={k: asdict(v) for k, v in (sizes or {}).items()},
    )


def project(p: Plan, rates: Mapping[str, Mapping[str, Any]], *, skip_unavailable: bool = True) -> dict[str, Any]:
    """Projected wall time of plan `p` from measured probe rates, one device, jobs in sequence.

    `rates` maps task -> ``{"handcrafted": r, "learned": r}`` where each ``r`` has
    ``compile_s`` (compile seconds per chunk, shared programs included: an upper bound) and
    ``run_step_s`` (seconds per training step of one run, evaluations included). A job costs
    ``chunks x compile_s + runs x T x run_step_s``. Runs still to do only; learned optimizers without weights
    are left out (``run`` skips them) unless `skip_unavailable` is False.

    Returns:
      ``{"seconds", "hours", "device_hours", "compile_seconds", "train_seconds", "tasks": {task: s}}``.
    """
    no_weights = {c["optimizer"] for c in p.checkpoints if not c["present"]} if skip_unavailable else set()
    per_task: dict[str, float] = {}
    compile_s = train_s = 0.0
    for j in p.jobs:
        todo = j.runs - j.stored
        if not todo or j.optimizer in no_weights or j.task not in rates:
            continue
        r = rates[j.task]["learned" if j.kind == "learned" else "handcrafted"]
        c = math.ceil(todo / j.runs_per_program) * r["compile_s"]
        t = todo * j.num_steps * r["run_step_s"]
        compile_s, train_s = compile_s + c, train_s + t
        per_task[j.task] = per_task.get(j.task, 0.0) + c + t
    total = compile_s + train_s
    return {"seconds": total, "hours": total / 3600, "device_hours": total / 3600,
            "compile_seconds": compile_s, "train_seconds": train_s,
            "tasks": {k: round(v, 1) for k, v in per_task.items()},
            "unprojected_tasks": sorted({j.task for j in p.jobs} - set(rates))}


__all__ = [
    "BACKENDS",
    "METADATA_BYTES",
    "ENGINE_PROGRAMS_PER_CHUNK",
    "PROGRAMS_PER_CHUNK",
    "SHARED_PER_SHAPE",
    "START_PER_TASK",
    "JobPrice",
    "Plan",
    "TaskSize",
    "checkpoint_status",
    "dataset_status",
    "fetch_command",
    "price",
    "project",
    "record_bytes",
]
