"""``celo-bench submit``: validate, run only the submission's missing cells, score, rank.

The submission's optimizer is added to a :class:`~celo_bench.suite.Registry` and its grid
runs through :func:`celo_bench.runner.run`, the path of ``celo-bench run``: the same
up-front checks (data, checkpoints, engine settings) and the same executors (local or
Ray). Baselines are never re-run implicitly: their runs come from the results store or, for a
baseline the store has no run of, from the suite's reference results that ship with the
package (:mod:`celo_bench.references`; read beside the store, never written into it). The
reference (tuned Adam) must be in one of them for the same suite version, horizon and seeds, or
nothing runs; ``run_baselines=True`` runs the suite's missing baseline runs in the same
call. Other missing baselines are reported and ranked without. Runs are
content-addressed, so submitting the same folder again trains nothing. An accepted
submission's folder is kept in the store (``<results>/.submissions/<name>/``,
:mod:`celo_bench.submission.stored`): it stays on that store's leaderboard through every
later ``report``, ``run`` and ``submit``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from celo_bench import execute, optimizers, strategy
from celo_bench.defaults import report_dir
from celo_bench.errors import CeloBenchError
from celo_bench.execute import EngineSettings, RunSummary
from celo_bench.plan import Job, expand
from celo_bench.references import References
from celo_bench.references import load as load_references
from celo_bench.runner import GridPlan, RunConfig, plan_grid, plan_run, run
from celo_bench.score import ScoreConfig
from celo_bench.store import Store
from celo_bench.submission import loader, stored
from celo_bench.submission.schema import Submission
from celo_bench.submission.validate import (
    DEFAULT_TIMEOUT,
    Report,
    SubmissionInvalid,
    validate_submission,
)
from celo_bench.suite import load_registry


@dataclass
class SubmitResult:
    """What ``submit`` did and where the submission ranks (``rank`` None: not scored)."""

    name: str
    suite: str
    suite_version: str
    summary: RunSummary
    baselines_run: int = 0
    missing_baselines: dict[str, int] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    rank: int | None = None
    of: int = 0
    row: dict[str, Any] = field(default_factory=dict)
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None
    notes: list[str] = field(default_factory=list)
    from_references: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "suite": self.suite, "suite_version": self.suite_version,
            "executed": self.summary.executed, "skipped": self.summary.skipped,
            "diverged": self.summary.diverged, "failed": self.summary.failed,
            "baselines_run": self.baselines_run, "missing_baselines": self.missing_baselines,
            "provenance": self.provenance, "rank": self.rank, "of": self.of, "row": _plain(self.row),
            "report": str(self.report) if self.report else None, "notes": self.notes,
            "from_references": self.from_references,
        }


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready values: NumPy scalars to Python, NaN to None."""
    out = {}
    for k, v in row.items():
        v = v.item() if hasattr(v, "item") else v
        out[k] = None if isinstance(v, float) and v != v else v
    return out


def _runs(jobs: list[Job]) -> dict[str, int]:
    out: dict[str, int] = {}
    for j in jobs:
        out[j.optimizer.name] = out.get(j.optimizer.name, 0) + len(j.runs)
    return out


def _covered(loaded: References | None, base: GridPlan) -> dict[str, int]:
    """optimizer -> its planned runs that `loaded` references hold, for every baseline of which the
    store has no planned run (an optimizer's runs come all from the store or all from references)."""
    if loaded is None:
        return {}
    planned: dict[str, set[str]] = {}
    for j in base.jobs:
        planned.setdefault(j.optimizer.name, set()).update(r.key for r in j.runs)
    todo = _runs(base.todo)
    out = {}
    for name, keys in planned.items():
        if todo.get(name, 0) == len(keys):  # none stored
            n = len(loaded.covering(keys, ()))
            if n:
                out[name] = n
    return out


def _reference_missing(store: Store, suite: str, version: str, ref: str, n: int, cfg: RunConfig) -> str:
    """The message when the reference's runs are missing; names other suite versions found."""
    df = store.read(optimizers=[ref], curves=False)
    df = df[df["suite"] == suite] if len(df) else df
    found = sorted(set(df["suite_version"])) if len(df) else []
    others = [v for v in found if v != version]
    flags = "".join(f" --{k} {v}" for k, v in (("steps", cfg.steps), ("seeds", cfg.seeds)) if v)
    flags += strategy.flags(cfg.engine.strategy_overrides())
    why = ""
    if others and version not in found:
        why = (f" (the store holds '{ref}' runs of suite '{suite}' version {', '.join(others)} only: "
               f"results of different suite versions are never compared)")
    elif found:
        horizons = sorted(set(df.loc[df["suite_version"] == version, "num_steps"]))
        why = f" (stored '{ref}' runs have horizons {horizons} and other seeds or grids)"
    return (f"{n} runs of the reference '{ref}' for suite '{suite}' v{version} are missing from "
            f"{cfg.results}{why}; every score is relative to it: run `celo-bench run --suite {suite} "
            f"-o {ref}{flags} --results {cfg.results} --no-report` first, or pass --run-baselines")


def _conflicts(store: Store, jobs: list[Job], name: str) -> None:
    """Refuse to mix runs of an edited submission with the stored runs of its old code."""
    planned = {r.key for j in jobs for r in j.runs}
    horizon = {j.task.name: j.num_steps for j in jobs}
    df = store.read(optimizers=[name], curves=False)
    if df.empty:
        return
    version = jobs[0].runs[0].suite_version if jobs and jobs[0].runs else None
    same = df[(df["suite"] == jobs[0].runs[0].suite) & (df["suite_version"] == version)
              & (df["num_steps"] == df["task"].map(horizon))]
    stale = same[~same["key"].isin(planned)]
    if len(stale):
        folder = store.root / stale["task"].iloc[0] / name
        raise CeloBenchError(
            f"{store.root} already holds {len(stale)} runs of '{name}' from a different optimizer.py, "
            f"checkpoint or search space; they would be scored together with the new ones. Rename the "
            f"submission (name in submission.toml), or delete its old runs ({folder} and the same "
            "folder under the other tasks)"
        )


@contextmanager
def _ray_workers_register(sub: Submission, factory_name: str, address: str | None) -> Iterator[None]:
    """Start the Ray session so that every worker registers the submission's factory.

    Ray workers are fresh processes: the factory registered here (under `factory_name`)
    does not exist there. Ray's ``worker_process_setup_hook`` runs a function in each
    worker before its first job; the submission's module is pickled by value, so the
    workers need neither the submission folder nor a shared filesystem. When Ray is
    already initialised by the caller, or not installed, nothing is done here (the
    runner then reports a missing ray extra in one line).
    """
    try:
        import ray
        from ray import cloudpickle
    except ImportError:
        yield
        return
    if ray.is_initialized():
        yield
        return
    cloudpickle.register_pickle_by_value(loader.load_module(sub))
    entry = optimizers.factory(factory_name)

    def register_submission_factory() -> None:
        if entry.name not in optimizers.REGISTERED_FACTORIES:
            optimizers.register(entry.name, entry.fn, learned=entry.learned,
                                init_meta_params=entry.init_meta_params)

    try:
        ray.init(address=address, logging_level=logging.WARNING,
                 runtime_env={"worker_process_setup_hook": register_submission_factory})
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "this machine"
        raise CeloBenchError(
            f"cannot reach a Ray cluster at {where}: {str(e).rstrip('.')}. Start one with `ray start "
            "--head` or pass --address HOST:PORT (see docs/ray.md)"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def _validate_while_preparing(folder: str | Path, *, timeout: float, suite: str, steps: int | None,
                              seeds: int | None, executor: str) -> Report:
    """Validate `folder` (its code checks run in a process of their own) while this process loads
    the suite's tasks and computes what their seeds fix, which the submission's jobs then find
    cached. Nothing here runs submission code or writes a store. Measured cold on 2 cores (quick
    v3, `adan_cosine`): the checks alone take 5.6 s; the rank was printed at 58.6 s with the two
    one after the other, at 46.2 and 49.5 s side by side. A submission that fails its checks is
    reported as soon as the task being prepared is done. Other executors train elsewhere: they
    only validate."""
    if executor != "local":
        return validate_submission(folder, timeout=timeout)
    try:
        reg = load_registry()
        spec = reg.suite(suite)
        jobs = expand(reg, spec, optimizers=[ScoreConfig.for_suite(spec).reference], steps=steps, seeds=seeds)
    except CeloBenchError:  # an unknown suite or bad settings: said after validation, as before
        return validate_submission(folder, timeout=timeout)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="celo-bench-validate") as pool:
        pending = pool.submit(validate_submission, folder, timeout=timeout)
        # a submission that failed its checks trains nothing: stop preparing as soon as that is known
        execute.prepare_tasks(jobs, stop=lambda: pending.done() and not pending.result().ok)
        return pending.result()


def submit(
    folder: str | Path,
    *,
    suite: str,
    results: Path,
    out: Path | None | Literal["per-suite"] = "per-suite",
    steps: int | None = None,
    seeds: int | None = None,
    run_baselines: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    reps: int | None = None,
    executor: str = "local",
    address: str | None = None,
    executor_options: Mapping[str, Any] | None = None,
    engine: EngineSettings | None = None,
    on_plan: Callable[[list[Job]], None] | None = None,
    on_job: Callable[[Job, list], None] | None = None,
    on_ranked: Callable[[SubmitResult], None] | None = None,
    references: bool | str | os.PathLike = True,
) -> SubmitResult:
    """Validate `folder`, train its missing runs on `suite`, score it, write the report.

    The runs go through :func:`celo_bench.runner.run` with the submission in the
    registry; `executor`, `address`, `executor_options` and `engine` are those of
    ``celo-bench run``. With `run_baselines`, the suite's missing baseline runs train in
    the same call; learned baselines whose checkpoint is unavailable are not run (and not
    stored) and a note says why. Nothing is written to `results` unless validation passed
    and the reference's runs are available (or `run_baselines`). The report goes to `out`
    (default ``"per-suite"``: :func:`celo_bench.defaults.report_dir` of `suite` and `results`);
    `out=None` skips it. The accepted submission's folder is kept in the store
    (:func:`celo_bench.submission.stored.keep`), so every later ``report``, ``run`` and ``submit``
    of that store ranks it too.

    Baselines the store has no run of come from the suite's reference results where they ship
    (`references`: True, a folder of references, or False; :mod:`celo_bench.references`), so a
    submission trains only its own runs: the store is never written with them, their rows are
    marked, and a difference of environment between them and the submission's runs is noted.
    `on_ranked` is called with the result once the submission is ranked, before the report is
    written (the command prints the ranking then).

    Raises:
        SubmissionInvalid: the submission failed validation (``.report`` lists why).
        CeloBenchError: missing reference runs, stale runs of an edited submission, an
            unknown suite, or any up-front check of ``run`` (missing data, bad settings,
            unknown executor).
    """
    from celo_bench.aggregate import DEFAULT_REPS
    from celo_bench.results import score_results

    reps = reps or DEFAULT_REPS
    if out == "per-suite":
        out = report_dir(suite, results)
    report = _validate_while_preparing(folder, timeout=timeout, suite=suite, steps=steps, seeds=seeds,
                                       executor=executor)
    if not report.ok:
        raise SubmissionInvalid(report)
    sub = report.submission
    base_reg = load_registry()
    suite_spec = base_reg.suite(suite)
    spec = loader.register_submission(sub)
    results = Path(results)
    kept_reg, kept_notes = stored.with_stored(base_reg, results)  # earlier submissions keep their rows
    reg = kept_reg.with_optimizer(spec)
    store = Store(results)
    cfg = RunConfig(suite=suite, seeds=seeds, steps=steps, results=results, registry=reg,
                    executor=executor, address=address, executor_options=dict(executor_options or {}),
                    engine=engine or EngineSettings())
    ref = ScoreConfig.for_suite(suite_spec).reference

    baselines = list(suite_spec.optimizers)
    base = plan_run(replace(cfg, optimizers=baselines))
    loaded = None
    if references is not False:
        loaded = load_references(suite, None if references is True else references)
    covered = {} if run_baselines else _covered(loaded, base)
    missing = {o: n - covered.get(o, 0) for o, n in _runs(base.todo).items() if n > covered.get(o, 0)}
    if missing.get(ref) and not run_baselines:
        raise CeloBenchError(_reference_missing(store, suite, suite_spec.version, ref, missing[ref], cfg))
    jobs, _, skipped = plan_grid(replace(cfg, optimizers=[sub.name]))
    _conflicts(store, jobs, sub.name)

    prov = loader.provenance(sub)
    names = baselines + [sub.name] if run_baselines else [sub.name]
    cfg = replace(cfg, optimizers=names, provenance={sub.name: prov},
                  job_seconds=dict(loaded.manifest.task_seconds) if loaded is not None else {})
    mine = RunSummary(skipped=skipped)
    others = {"executed": 0}

    def count(job: Job, records: list) -> None:
        if job.optimizer.name == sub.name:
            mine.jobs += 1
            mine.executed += len(records)
            mine.diverged += sum(r["status"] == "diverged" for r in records)
            mine.failed += sum(r["status"] == "failed" for r in records)
        else:
            others["executed"] += len(records)
        if on_job:
            on_job(job, records)

    with _ray_workers_register(sub, spec.factory, address) if executor == "ray" else nullcontext():
        summary = run(cfg, on_job=count, on_plan=on_plan)
    mine.seconds = summary.seconds
    stored.keep(sub, results)  # accepted: every later report of this store ranks it
    mine.unavailable = dict(summary.unavailable)
    result = SubmitResult(name=sub.name, suite=suite, suite_version=suite_spec.version,
                          summary=mine, provenance=prov, baselines_run=others["executed"])
    if not run_baselines:
        result.missing_baselines = missing
    # --run-baselines helps only the baselines this machine can run; the others get their own fix
    runnable = {k: v for k, v in result.missing_baselines.items() if k not in base.not_run}
    if runnable:
        result.notes.append("ranked without the missing baseline runs: " + ", ".join(
            f"{k} ({v})" for k, v in sorted(runnable.items())) + "; pass --run-baselines to run them")
    for name in sorted(set(result.missing_baselines) & set(base.not_run) - set(summary.unavailable)):
        result.notes.append(f"ranked without the {missing[name]} missing runs of '{name}', which cannot run "
                            f"here: {base.not_run[name]}")
    for name, why in sorted(summary.unavailable.items()):
        result.notes.append(f"'{name}' not run (nothing stored): {why}")

    res = score_results(results, suite, reps=reps, registry=reg, steps=steps, seeds=seeds,
                        execution=cfg.engine.strategy_overrides(), references=loaded or False)
    result.from_references = dict(res.from_references)
    result.notes += kept_notes + list(res.notes)
    table = res.aggregate
    result.leaderboard = table.to_dict("records")
    result.of = int(table["rank"].notna().sum())
    row = table[table["optimizer"] == sub.name]
    if len(row) and pd.notna(row["rank"].iloc[0]):
        result.rank = int(row["rank"].iloc[0])
        result.row = row.iloc[0].to_dict()
    else:
        result.notes.append(f"'{sub.name}' has no scored task: are its runs at the stored horizon?")
    if on_ranked:
        on_ranked(result)
    if out is not None:
        from celo_bench.report import write_scored_report

        result.report = write_scored_report(res, suite=suite, results=results, out=Path(out),
                                            registry=reg, highlight=sub.name,
                                            not_run=summary.unavailable or None)
    return result
