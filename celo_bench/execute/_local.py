"""The default executor: jobs in this process, a few at a time.

XLA compiles on one thread, and on small CPU tasks compiling a job takes longer than
training it, so by default two jobs run at once on a CPU (one compiles while the other
trains). On an accelerator jobs run one at a time: each already fills the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from celo_bench.execute._job import EngineSettings, execute_job
from celo_bench.plan import Job


def default_workers() -> int:
    import os

    import jax

    return 1 if jax.default_backend() != "cpu" else max(1, min(2, os.cpu_count() or 1))


class LocalExecutor:
    """``map(jobs) -> (job, records)`` in completion order, at most `workers` jobs at once."""

    name = "local"

    def __init__(self, settings: EngineSettings = EngineSettings(), workers: int | None = None):
        self.settings = settings
        self.workers = workers or settings.parallel_jobs or default_workers()

    def map(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, list[dict]]]:
        # jobs are pulled one at a time, as a worker frees up (run_jobs claims each then)
        if self.workers == 1:
            for job in jobs:
                yield job, execute_job(job, self.settings)
            return
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="celo-bench-job")
        pending: dict[Future, Job] = {}
        queue = iter(jobs)
        try:
            for job in queue:  # keep exactly `workers` jobs in flight, submitted in plan order
                pending[pool.submit(execute_job, job, self.settings)] = job
                if len(pending) == self.workers:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending[pool.submit(execute_job, nxt, self.settings)] = nxt
                    yield job, fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
