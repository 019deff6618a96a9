"""Run claims: processes running grids on one results folder never train the same run.

A claim is an OS file lock (``flock`` on POSIX, ``msvcrt`` locking on Windows, through
`filelock`) on ``<results>/.claims/<run key>.lock``, one per run, held while the run's job
trains and until its records are written. The operating system drops the lock when its
process dies, so a killed run never keeps a claim. Soft (marker-file) locks are never used:
they would outlive a killed process.

Claims are per run, not per job, because two different grids can share runs in jobs of
different shapes (``run --seeds 1`` and ``run --seeds 2`` plan the same (task, optimizer)
jobs with 3 and 6 runs: distinct jobs, 3 common runs). A job is claimed whole or not at all:
every one of its runs' locks, taken in key order (two waiting processes never deadlock), or
none, so **a job keeps the shape it was planned with**. When another process holds any run
of a job, this process runs its other jobs first, then waits for that one; once it holds the
job, runs another process stored meanwhile are dropped and the rest train as one job.

Why not train the unclaimed runs of a shared job at once: a run's numbers can depend on how
many runs share its compiled program (float rounding of a vmapped program:
:mod:`celo_bench.versions`), and that count would then depend on the timing of two
processes. Waiting makes it depend only on what is stored when the job starts, exactly as a
resumed grid does (``plan.missing`` reduces a job to its missing runs the same way): two
overlapping commands give the grouping that running them one after the other gives.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from filelock import FileLock, Timeout

from celo_bench.plan import Job
from celo_bench.store import CLAIMS_DIR, Store

# filelock >= 4 may fall back to a marker file (which outlives a killed process) where
# flock is missing; a claim must be an OS lock, so that fallback is turned off
_NO_SOFT = {"fallback_to_soft": False} if "fallback_to_soft" in inspect.signature(FileLock.__init__).parameters else {}


def job_slot(job: Job) -> tuple[str, ...]:
    """The run keys of a job as an executor hands it back (jobs themselves are not hashable)."""
    return tuple(r.key for r in job.runs)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _allow_open_files(n: int) -> None:
    """Raise this process's open-file limit toward `n` (up to the hard limit): every held
    claim is an open file, and an executor that takes the whole grid first (Ray) claims it all."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = n + 256
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY
                                                        else min(want, hard), hard))


class Claims:
    """The claims this process holds on a store's runs, taken and released job by job.

    Args:
        store: the results store (claims live in ``<root>/.claims``).
        jobs: every job this process was asked to run; the files of their runs are noted
            now, so a run re-done on purpose (a ``failed`` record with ``--retry-failed``,
            an unreadable file) is told apart from one another process has just stored.

    Raises (from :meth:`try_claim` / :meth:`wait_claim`):
        OSError: a claim file cannot be created (the caller turns it into a
            ``StoreWriteError``).
    """

    def __init__(self, store: Store, jobs: Sequence[Job]):
        self.store = store
        self.dir = store.root / CLAIMS_DIR
        self._locks: dict[str, FileLock] = {}  # run key -> its held lock
        self._held: dict[tuple[str, ...], tuple[str, ...]] = {}  # job slot -> the run keys it holds
        self._before: Mapping[str, tuple[int, int] | None] = {
            r.key: _signature(store.path(r.task, r.optimizer, r.key)) for j in jobs for r in j.runs
        }
        self._runs = len(self._before)

    def lock_path(self, job_or_key: Job | str) -> Path:
        """The lock file of a run (given its key), or of a job's first run in key order."""
        key = job_or_key if isinstance(job_or_key, str) else min(r.key for r in job_or_key.runs)
        return self.dir / f"{key}.lock"

    def _take(self, job: Job, timeout: float | None) -> bool:
        """Lock every run of `job` in key order (`timeout` in all; None: wait as long as it
        takes, 0: only if all are free), or none of them."""
        keys = sorted({r.key for r in job.runs})
        if not self._locks:
            self.dir.mkdir(parents=True, exist_ok=True)
            _allow_open_files(self._runs)
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        taken: list[str] = []
        try:
            for key in keys:
                if key in self._locks:  # already ours (one plan never holds a run twice)
                    continue
                lock = FileLock(self.lock_path(key), thread_local=False, **_NO_SOFT)
                left = -1 if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    lock.acquire(timeout=left)
                except Timeout:
                    self._drop(taken)
                    return False
                self._locks[key] = lock
                taken.append(key)
        except BaseException:
            self._drop(taken)
            raise
        self._held[job_slot(job)] = tuple(taken)
        return True

    def _drop(self, keys: Sequence[str]) -> None:
        for key in keys:
            lock = self._locks.pop(key, None)
            if lock is not None:
                lock.release()

    def try_claim(self, job: Job) -> bool:
        """Claim every run of `job` now if no other process holds any of them."""
        return self._take(job, 0)

    def wait_claim(self, job: Job, timeout: float | None) -> bool:
        """Wait (at most `timeout` s; None: while their holders live) for all of `job`'s runs."""
        return self._take(job, timeout)

    def still_to_do(self, job: Job) -> Job | None:
        """`job` reduced to runs no other process stored since planning (None: none left)."""
        runs = [r for r in job.runs if self._to_do(r.task, r.optimizer, r.key)]
        return job.with_runs(runs) if runs else None

    def _to_do(self, task: str, optimizer: str, key: str) -> bool:
        status = self.store.status_of(task, optimizer, key)
        if status is None:
            return True  # missing, or unreadable (the write moves it aside)
        if status != "failed":
            return False  # trained by another process
        # a failed record: re-run only the one this process was asked to retry
        return _signature(self.store.path(task, optimizer, key)) == self._before.get(key)

    def rekey(self, claimed: Job, reduced: Job) -> None:
        """Hold `claimed`'s claims under `reduced`, the job sent to the executor; the runs it
        dropped (stored by another process) are released now."""
        keys = self._held.pop(job_slot(claimed))
        keep = {r.key for r in reduced.runs}
        self._drop([k for k in keys if k not in keep])
        self._held[job_slot(reduced)] = tuple(k for k in keys if k in keep)

    def release(self, job: Job) -> None:
        self._drop(self._held.pop(job_slot(job), ()))

    def release_all(self) -> None:
        for slot in list(self._held):
            self._drop(self._held.pop(slot))

    @property
    def held(self) -> int:
        """Jobs whose claims this process holds."""
        return len(self._held)
