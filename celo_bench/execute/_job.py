"""Run one job and turn its curves into run records (the unit every executor ships)."""

from __future__ import annotations

import dataclasses
import json
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from celo_bench.engine import JobResult, default_strategy, prepare_starts, run_job
from celo_bench.engine.memory import DeviceOutOfMemoryError
from celo_bench.execute.settings import EngineSettings
from celo_bench.plan import Job, RunSpec
from celo_bench.records import RunRecord


def first_nonfinite(curve: np.ndarray, steps: np.ndarray) -> int | None:
    """Step of the first non-finite value of `curve` (sampled at `steps`), or None."""
    bad = ~np.isfinite(curve)
    return int(steps[np.argmax(bad)]) if bad.any() else None


def _records(job: Job, res: JobResult, provenance: Mapping[str, Any]) -> list[RunRecord]:
    T = job.num_steps
    train_steps = np.arange(T + 1)
    out = []
    for r, run in enumerate(job.runs):
        train = res.train_loss[r].astype(np.float32)
        evals = {s: res.eval_loss[s][r].astype(np.float32) for s in res.eval_loss}
        hits = [first_nonfinite(train, train_steps)] + [
            first_nonfinite(v, res.eval_steps) for v in evals.values()
        ]
        hits = [h for h in hits if h is not None]
        div = min(hits) if hits else None
        if div is not None:  # keep the curve up to divergence, nothing after it
            train[train_steps > div] = np.nan
            for v in evals.values():
                v[res.eval_steps > div] = np.nan
        out.append(
            RunRecord(
                **_base(job, run, provenance),
                status="diverged" if div is not None else "ok",
                message=f"non-finite loss at step {div}" if div is not None else "",
                diverged_step=div,
                train_loss=train,
                eval_steps=res.eval_steps,
                eval_train_loss=evals["train"],
                eval_valid_loss=evals["outer_valid"],
                eval_test_loss=evals["test"],
                compile_seconds=res.compile_seconds,
                run_seconds=res.run_seconds,
                job_runs=len(job.runs),
                strategy=res.strategy,
            )
        )
    return out


def _base(job: Job, run: RunSpec, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The identity and provenance fields of a run's record (shared by every outcome)."""
    return {
        "key": run.key,
        "suite": run.suite,
        "suite_version": run.suite_version,
        "task": run.task,
        "optimizer": run.optimizer,
        "optimizer_kind": job.optimizer.kind,
        "hparams": json.dumps(dict(run.hparams), sort_keys=True),
        "hparam_id": run.hparam_id,
        "learning_rate": run.hparams.get("learning_rate"),
        "seed": run.seed,
        "num_steps": run.num_steps,
        "config": run.config,
        "provenance": dict(provenance) | dict(job.provenance),
    }


def failed_records(job: Job, message: str, provenance: Mapping[str, Any]) -> list[RunRecord]:
    """One ``failed`` record per run of a job that raised: the grid goes on, nothing is lost."""
    return [
        RunRecord(**_base(job, run, provenance), status="failed", message=message[-2000:], job_runs=len(job.runs))
        for run in job.runs
    ]


def execute_job(job: Job, settings: EngineSettings = EngineSettings()) -> list[RunRecord]:
    """Train every run of `job` in one program; returns records (``failed`` ones on error)."""
    from celo_bench import compile_cache
    from celo_bench.provenance import provenance

    compile_cache.enable()
    prov = provenance()
    try:
        import jax

        from celo_bench import optimizers
        from celo_bench.assembly import build_task

        task = build_task(job.task)
        make = optimizers.builder(job.optimizer, num_steps=job.num_steps, checkpoint=job.checkpoint,
                                  sha256=job.weights_sha256)
        strat = job.strategy or default_strategy(
            job.task.family, jax.default_backend(), {**job.task.strategy, **settings.strategy_overrides()}
        )
        strat = dataclasses.replace(strat, block_size=settings.block_size)
        names = sorted(job.runs[0].hparams)
        hparams = {k: np.array([r.hparams[k] for r in job.runs]) for k in names}
        seeds = np.array([r.seed for r in job.runs])
        res = run_job(
            task, make, hparams, seeds, num_steps=job.num_steps, strategy=strat,
            memory_budget=settings.memory_budget,
            max_runs_per_program=settings.max_runs_per_program,
        )
        return _records(job, res, prov)
    except (KeyboardInterrupt, DeviceOutOfMemoryError):
        raise  # not the optimizer's doing: never stored as its failure
    except Exception as e:  # recorded, never a traceback from deep inside
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        return failed_records(job, f"{type(e).__name__}: {detail}", prov)


def prepare_tasks(jobs: Sequence[Job], stop: Callable[[], bool] = lambda: False) -> None:
    """Load the tasks of `jobs` and compute what their seeds fix (``engine.prepare_starts``), in this
    process, ahead of the jobs (the local executor's jobs then find both cached).

    Runs no optimizer code. Best effort: a task that cannot be prepared (missing data, a bad
    spec) is left to its jobs, which report it. `stop` is asked before each task; True ends the
    preparation (its jobs will not run).
    """
    from celo_bench import compile_cache
    from celo_bench.assembly import build_task

    compile_cache.enable()
    seen: set[tuple[str, int]] = set()
    for job in jobs:
        if stop():
            return
        if (job.task.name, job.num_steps) in seen:
            continue
        seen.add((job.task.name, job.num_steps))
        try:
            prepare_starts(build_task(job.task), job.num_steps, np.array([r.seed for r in job.runs]))
        except Exception:  # noqa: BLE001 -- the job itself records or reports what went wrong
            continue
