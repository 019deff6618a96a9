"""Executors ship jobs to the engine; the driver alone writes the store."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from celo_bench.errors import CeloBenchError
from celo_bench.execute._job import EngineSettings, execute_job, failed_records
from celo_bench.execute._local import LocalExecutor
from celo_bench.plan import Job
from celo_bench.store import Store

EXECUTORS = ("local", "ray")


@dataclass
class RunSummary:
    """What a grid run did; ``executed`` counts runs trained now, by final status."""

    executed: int = 0
    skipped: int = 0
    diverged: int = 0
    failed: int = 0
    jobs: int = 0
    seconds: float = 0.0
    unavailable: dict[str, str] = field(default_factory=dict)  # learned optimizer -> why skipped

    def as_dict(self) -> dict:
        return asdict(self)


def make_executor(
    name: str, settings: EngineSettings, address: str | None = None, options: dict | None = None
):
    """Build an executor by name; Ray is imported only when asked for."""
    if name == "local":
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
    on_job: Callable[[Job, list[dict]], None] | None = None,
) -> RunSummary:
    """Execute `jobs`, writing each job's records as soon as it finishes."""
    import time

    t0 = time.perf_counter()
    summary = RunSummary(skipped=skipped)
    for job, records in executor.map(list(jobs)):
        store.write_many(records)
        summary.jobs += 1
        summary.executed += len(records)
        summary.diverged += sum(r["status"] == "diverged" for r in records)
        summary.failed += sum(r["status"] == "failed" for r in records)
        if on_job:
            on_job(job, records)
    summary.seconds = time.perf_counter() - t0
    return summary


__all__ = [
    "EXECUTORS",
    "EngineSettings",
    "LocalExecutor",
    "RunSummary",
    "execute_job",
    "failed_records",
    "make_executor",
    "run_jobs",
]
