"""Job claims: two processes running grids on one results folder never train the same job.

A claim is an OS file lock (``flock`` on POSIX, ``msvcrt`` locking on Windows, through
`filelock`) on ``<results>/.claims/<job id>.lock``, held while the job trains and until
its records are written. The operating system drops the lock when its process dies, so
a killed run never keeps a claim. Soft (marker-file) locks are never used: they would
outlive a killed process. The job id hashes the job's run keys.

After taking a claim, the job is re-checked against the store: runs that another
process stored meanwhile are not trained again.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path

from filelock import FileLock, Timeout

from celo_bench.plan import Job
from celo_bench.store import CLAIMS_DIR, Store

# filelock >= 4 may fall back to a marker file (which outlives a killed process) where
# flock is missing; a claim must be an OS lock, so that fallback is turned off
_NO_SOFT = {"fallback_to_soft": False} if "fallback_to_soft" in inspect.signature(FileLock.__init__).parameters else {}


def job_id(job: Job) -> str:
    """Hash of the job's run keys (order-independent), 24 hex digits."""
    return hashlib.sha256(",".join(sorted(r.key for r in job.runs)).encode()).hexdigest()[:24]


def job_slot(job: Job) -> tuple[str, ...]:
    """The run keys of a job as an executor hands it back (jobs themselves are not hashable)."""
    return tuple(r.key for r in job.runs)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


class Claims:
    """The claims this process holds on a store's jobs.

    Args:
        store: the results store (claims live in ``<root>/.claims``).
        jobs: every job this process was asked to run; the files of their runs are noted
            now, so a run re-done on purpose (a ``failed`` record with ``--retry-failed``,
            an unreadable file) is told apart from one another process has just stored.

    Raises (from :meth:`try_claim` / :meth:`wait_claim`):
        OSError: the claim file cannot be created (the caller turns it into a
            ``StoreWriteError``).
    """

    def __init__(self, store: Store, jobs: Sequence[Job]):
        self.store = store
        self.dir = store.root / CLAIMS_DIR
        self._held: dict[tuple[str, ...], FileLock] = {}
        self._before: Mapping[str, tuple[int, int] | None] = {
            r.key: _signature(store.path(r.task, r.optimizer, r.key)) for j in jobs for r in j.runs
        }

    def lock_path(self, job: Job) -> Path:
        return self.dir / f"{job_id(job)}.lock"

    def _acquire(self, job: Job, timeout: float) -> FileLock | None:
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_path(job), thread_local=False, **_NO_SOFT)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            return None
        return lock

    def try_claim(self, job: Job) -> bool:
        """Claim `job` now if no other process holds it."""
        lock = self._acquire(job, 0)
        if lock is not None:
            self._held[job_slot(job)] = lock
        return lock is not None

    def wait_claim(self, job: Job, timeout: float | None) -> bool:
        """Wait (at most `timeout` s; None: while its holder lives) for `job`'s claim."""
        lock = self._acquire(job, -1 if timeout is None else max(timeout, 0.0))
        if lock is not None:
            self._held[job_slot(job)] = lock
        return lock is not None

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
        """Hold `claimed`'s lock under the runs of `reduced`, the job sent to the executor."""
        self._held[job_slot(reduced)] = self._held.pop(job_slot(claimed))

    def release(self, job: Job) -> None:
        lock = self._held.pop(job_slot(job), None)
        if lock is not None:
            lock.release()

    def release_all(self) -> None:
        for slot in list(self._held):
            self._held.pop(slot).release()

    @property
    def held(self) -> int:
        return len(self._held)

