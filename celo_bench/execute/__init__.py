"""Executors ship jobs to the engine; the driver alone writes the store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

from celo_bench.errors import CeloBenchError
from celo_bench.execute._claims import Claims
from celo_bench.execute.settings import EngineSettings
from celo_bench.plan import Job
from celo_bench.records import RunRecord
from celo_bench.store import Store, StoreWriteError, write_error

EXECUTORS = ("local", "ray")


@dataclass
class RunSummary:
    """What a grid run did; ``executed`` counts runs trained now, by final status.

    ``by_others`` counts planned runs another process on the same results folder stored
    while this one ran; ``left_to_others`` counts runs still claimed by another process
    when ``claim_timeout`` ran out (not stored yet: a re-run picks them up).
    """

    executed: int = 0
    skipped: int = 0
    diverged: int = 0
    failed: int = 0
    jobs: int = 0
    seconds: float = 0.0
    unavailable: dict[str, str] = field(default_factory=dict)  # learned optimizer -> why skipped
    by_others: int = 0
    left_to_others: int = 0
    notes: list[str] = field(default_factory=list)  # one line each, for the user
    failed_stored: int = 0  # runs of this grid stored as failed before (``--retry-failed`` re-runs them)
    compile_seconds: float = 0.0  # summed over the jobs executed now
    execute_seconds: float = 0.0  # summed over the jobs executed now (compile excluded)

    @property
    def compile_share(self) -> float | None:
        """Σ compile / Σ (compile + execution) over the jobs executed now (None: none ran)."""
        total = self.compile_seconds + self.execute_seconds
        return self.compile_seconds / total if total > 0 else None

    def as_dict(self) -> dict:
        return asdict(self) | {"compile_share": self.compile_share}


def make_executor(
    name: str, settings: EngineSettings, address: str | None = None, options: dict | None = None
):
    """Build an executor by name; the engine (JAX) and Ray are imported only when asked for."""
    if name == "local":
        from celo_bench.execute._local import LocalExecutor  # deferred: loads JAX

        return LocalExecutor(settings)
    if name == "ray":
        try:
            from celo_bench.execute._ray import RayExecutor
        except ImportError as e:
            raise CeloBenchError(
                f"--executor ray needs the ray extra: pip install 'celo-bench[ray]' ({e})"
            ) from None
        return RayExecutor(settings, address=address, resources=options)
    raise CeloBenchError(f"unknown executor '{name}'; choose one of {', '.join(EXECUTORS)}")


def run_jobs(
    jobs: Iterable[Job],
    store: Store,
    executor,
    *,
    skipped: int = 0,
    on_job: Callable[[Job, list[RunRecord]], None] | None = None,
    claims: bool = True,
    claim_timeout: float | None = None,
    on_wait: Callable[[Job], None] | None = None,
) -> RunSummary:
    """Execute `jobs`, writing each job's records as soon as it finishes.

    With `claims` (the default), the runs of each job are claimed together (see
    :mod:`celo_bench.execute._claims`: one claim per run, so overlapping grids of other
    shapes exclude each other too) right before the executor takes the job, and released
    once its records are written. A job any of whose runs another live process holds is
    skipped at first; once every other job is done, this process waits for it
    (``on_wait(job)`` is called first), at most
    `claim_timeout` seconds in all (None: as long as its holder lives; a dead holder
    releases at once), re-reads which of its runs are stored and trains the rest.

    Any executor works whose ``map(jobs)`` yields ``(job, records)`` with the very job
    objects it was given; one that pulls jobs lazily (the local executor) claims each job
    just before it starts, one that takes the whole list first (Ray) claims them all.

    Raises:
        StoreWriteError: a record or claim file could not be written (disk full, no
            permission, ...): one line saying how many runs of this grid are stored; a
            re-run of the same command resumes.
    """
    t0 = time.perf_counter()
    jobs = list(jobs)
    summary = RunSummary(skipped=skipped)
    total = skipped + sum(len(j.runs) for j in jobs)
    held = Claims(store, jobs) if claims else None

    def stored() -> int:
        return skipped + summary.executed + summary.by_others

    def run_batch(batch: Iterable[Job]) -> None:
        for job, records in executor.map(batch):
            written = 0
            try:
                for rec in records:
                    store.write(rec)
                    written += 1
            except StoreWriteError as e:
                raise e.with_count(stored() + written, total) from None
            if held is not None:
                held.release(job)
            summary.jobs += 1
            summary.executed += len(records)
            summary.diverged += sum(r["status"] == "diverged" for r in records)
            summary.failed += sum(r["status"] == "failed" for r in records)
            if records:  # every record of a job carries the job's timings
                summary.compile_seconds += float(records[0]["compile_seconds"] or 0.0)
                summary.execute_seconds += float(records[0]["run_seconds"] or 0.0)
            if on_job:
                on_job(job, records)

    def claimed(job: Job) -> Job | None:
        """The part of a just-claimed job still to train (its claim moves to that part)."""
        todo = held.still_to_do(job)
        summary.by_others += len(job.runs) - (len(todo.runs) if todo else 0)
        if todo is None:
            held.release(job)
        else:
            held.rekey(job, todo)
        return todo

    deferred: list[Job] = []

    def first_pass() -> Iterator[Job]:
        for job in jobs:
            if not _claim(held, job, 0):
                deferred.append(job)
            elif (todo := claimed(job)) is not None:
                yield todo

    try:
        if held is None:
            run_batch(jobs)
        else:
            run_batch(first_pass())
            deadline = None if claim_timeout is None else time.monotonic() + claim_timeout
            while deferred:
                # take every claim that is free now, without waiting (no deadlock possible) ...
                free = [j for j in deferred if _claim(held, j, 0)]
                if not free:
                    # ... else wait for the first one, holding no other claim
                    job = deferred[0]
                    if on_wait:
                        on_wait(job)
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if not _claim(held, job, left):
                        summary.left_to_others += sum(len(j.runs) for j in deferred)
                        break
                    free = [job]
                deferred = [j for j in deferred if all(j is not f for f in free)]
                run_batch([t for t in map(claimed, free) if t is not None])
    finally:
        if held is not None:
            held.release_all()
    if summary.by_others:
        summary.notes.append(f"{summary.by_others} runs were trained by another process on {store.root}")
    if summary.left_to_others:
        summary.notes.append(
            f"{summary.left_to_others} runs are still claimed by another process on {store.root}; "
            "re-run the same command later to train any it leaves"
        )
    summary.seconds = time.perf_counter() - t0
    return summary


_LAZY = {"execute_job": "_job", "failed_records": "_job", "prepare_tasks": "_job", "LocalExecutor": "_local"}


def __getattr__(name: str):
    """``execute_job``, ``failed_records``, ``prepare_tasks`` and ``LocalExecutor`` load the engine (JAX) on first use,
    so that planning, ``status`` and the CLI's ``--help`` import this package without JAX."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _claim(held: Claims, job: Job, timeout: float | None) -> bool:
    """Claim `job` (wait at most `timeout` s; 0: only if free); claim-file errors are one line."""
    try:
        return held.try_claim(job) if timeout == 0 else held.wait_claim(job, timeout)
    except OSError as e:
        raise write_error(f"cannot create the run claim {held.lock_path(job)}", e, held.lock_path(job)) from None


__all__ = [
    "EXECUTORS",
    "Claims",
    "EngineSettings",
    "LocalExecutor",
    "RunSummary",
    "execute_job",
    "failed_records",
    "make_executor",
    "run_jobs",
]
