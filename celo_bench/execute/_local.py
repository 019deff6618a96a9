"""The default executor: jobs one after another in this process."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from celo_bench.execute._job import EngineSettings, execute_job
from celo_bench.plan import Job


class LocalExecutor:
    """``map(jobs) -> (job, records)`` in submission order."""

    name = "local"

    def __init__(self, settings: EngineSettings = EngineSettings()):
        self.settings = settings

    def map(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, list[dict]]]:
        for job in jobs:
            yield job, execute_job(job, self.settings)
