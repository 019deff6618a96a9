"""Fault injection on the results store: kills, corrupt files, full disks, two runs at once.

After each fault a re-run completes the grid with every key present once and the curves
equal to an uninterrupted run. The grid here is synthetic (a fake executor returns records
computed from each run's key), so no test trains anything.

Run as a script, this file is the worker the multi-process tests start.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from celo_bench import store as store_mod
from celo_bench.errors import CeloBenchError
from celo_bench.execute import Claims, run_jobs
from celo_bench.records import RunRecord
from celo_bench.store import Store, StoreWriteError

HERE = Path(__file__).resolve()
T = 40  # steps of a synthetic run


# --------------------------------------------------------------------------- a synthetic grid
@dataclass(frozen=True)
class Run:
    key: str
    task: str
    optimizer: str
    seed: int


@dataclass(frozen=True)
class FakeJob:
    """What run_jobs needs of a plan.Job: its runs, a name, and with_runs."""

    name: str
    runs: tuple[Run, ...]

    def with_runs(self, runs) -> FakeJob:
        return replace(self, runs=tuple(runs))


def grid(n_jobs: int = 4, runs_per_job: int = 3) -> list[FakeJob]:
    jobs = []
    for j in range(n_jobs):
        task, opt = f"task{j % 2}", f"opt{j // 2}"
        runs = tuple(Run(hashlib.sha256(f"{j}-{s}".encode()).hexdigest()[:24], task, opt, s)
                     for s in range(runs_per_job))
        jobs.append(FakeJob(f"{task} x {opt}", runs))
    return jobs


def record(run: Run) -> RunRecord:
    """A deterministic record of `run` (its curve is a function of its key)."""
    rng = np.random.default_rng(int(run.key[:8], 16))
    train = np.cumsum(rng.uniform(-0.1, 0.0, T + 1)) + 3.0
    steps = np.arange(0, T + 1, 10)
    return RunRecord(
        key=run.key, suite="fake", suite_version="1", task=run.task, optimizer=run.optimizer,
        optimizer_kind="handcrafted", hparams={"learning_rate": 0.1}, hparam_id=f"{run.optimizer}[learning_rate=0.1]",
        learning_rate=0.1, seed=run.seed, num_steps=T, status="ok", train_loss=train, eval_steps=steps,
        eval_train_loss=train[steps], eval_valid_loss=train[steps] + 0.1, eval_test_loss=train[steps] + 0.2,
        compile_seconds=0.0, run_seconds=0.0, job_runs=3, strategy="fake", config="{}",
    )


class FakeExecutor:
    """Pulls jobs lazily like the local executor; logs each job it executes to `log`."""

    def __init__(self, log: Path | None = None, delay: float = 0.0):
        self.log, self.delay, self.executed = log, delay, []

    def map(self, jobs):
        for job in jobs:
            self.executed.append(job)
            if self.log is not None:
                with open(self.log, "a") as f:
                    f.write(json.dumps([r.key for r in job.runs]) + "\n")
            time.sleep(self.delay)
            yield job, [record(r) for r in job.runs]


class ListingExecutor(FakeExecutor):
    """Takes the whole job list before running anything, like the Ray executor."""

    def map(self, jobs):
        yield from super().map(list(jobs))


def missing(jobs, st: Store) -> list[FakeJob]:
    """Jobs reduced to the runs the store lacks (the planner's part)."""
    have = st.statuses()
    out = [j.with_runs([r for r in j.runs if r.key not in have]) for j in jobs]
    return [j for j in out if j.runs]


def rerun(root: Path, jobs) -> None:
    """What `celo-bench run` does on a second try: repair, plan what is missing, run it."""
    st = Store(root)
    st.check_writable()
    st.repair()
    todo = missing(jobs, st)
    run_jobs(todo, st, FakeExecutor(), skipped=sum(len(j.runs) for j in jobs) - sum(len(j.runs) for j in todo))


def assert_complete(root: Path, jobs) -> None:
    """Every key stored once, as the only file of its folder, with the uninterrupted curves."""
    st = Store(root)
    scan = st.scan()
    keys = [r.key for j in jobs for r in j.runs]
    assert sorted(scan.statuses) == sorted(keys) and not scan.unreadable and not scan.stale
    files = [p for p in root.rglob("*.parquet") if ".quarantine" not in p.parts]
    assert sorted(p.stem for p in files) == sorted(keys)
    df = st.read().set_index("key")
    runs = {r.key: r for j in jobs for r in j.runs}
    for key in keys:
        want = record(runs[key])
        np.testing.assert_array_equal(df.loc[key, "train_loss"], want.train_loss)
        np.testing.assert_array_equal(df.loc[key, "eval_valid_loss"], want.eval_valid_loss)


def fill(root: Path, jobs) -> Store:
    st = Store(root)
    run_jobs(jobs, st, FakeExecutor())
    return st


def python(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE), *args], **kw)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --------------------------------------------------------------------------- case 8: temporary files
def test_a_temporary_copy_of_a_record_is_never_read_and_is_cleaned(tmp_path):
    jobs = grid(2)
    st = fill(tmp_path, jobs)
    rec = st.path("task0", "opt0", jobs[0].runs[0].key)
    tmp = rec.parent / ".tmp-x.parquet"  # a whole record under a temporary name
    shutil.copy(rec, tmp)
    assert len(st.statuses()) == 6 and len(st.read()) == 6  # counted once
    scan = st.scan()
    assert scan.stale == (tmp,) and any(str(tmp) in line for line in scan.lines())
    assert st.clean_stale() == [tmp] and not tmp.exists() and rec.exists()
    assert_complete(tmp_path, jobs)


def test_a_half_written_temporary_file_is_ignored_and_cleaned_by_the_next_run(tmp_path):
    jobs = grid(2)
    st = fill(tmp_path, jobs)
    rec = st.path("task1", "opt0", jobs[1].runs[2].key)
    data = rec.read_bytes()
    # a killed writer's file (its pid is dead) and a live writer's one (this process)
    dead = rec.parent / f"{store_mod.TMP_PREFIX}{store_mod._HOST}-{dead_pid()}-abcd{store_mod.SUFFIX}"
    live = rec.parent / f"{store_mod.TMP_PREFIX}{store_mod._HOST}-{os.getpid()}-efgh{store_mod.SUFFIX}"
    dead.write_bytes(data[: len(data) // 2])
    live.write_bytes(data[: len(data) // 3])
    assert len(st.statuses()) == 6 and len(st.read()) == 6 and st.problems == []
    scan = st.scan()
    assert scan.stale == (dead,) and scan.in_flight == (live,)
    rerun(tmp_path, jobs)
    assert not dead.exists() and live.exists()  # a live writer's file is never touched
    live.unlink()
    assert_complete(tmp_path, jobs)


# --------------------------------------------------------------------------- case 9: unreadable records
def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _random(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).bytes(p.stat().st_size))


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _other_key(p: Path) -> None:
    other = sorted(q for q in p.parent.glob("*.parquet") if q != p)[0]
    shutil.copy(other, p)  # a whole record whose stored key is not its name


def _misplaced(p: Path) -> None:
    # the record, copied under its own name into another optimizer's folder: a second file for one key
    dest = p.parents[1] / "opt1" / p.name
    dest.parent.mkdir(exist_ok=True)
    shutil.copy(p, dest)


def _sidecar(p: Path) -> None:
    (p.parent / f"._{p.name}").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)  # AppleDouble header


@pytest.mark.parametrize("damage", [_truncate, _random, _empty, _other_key, _misplaced, _sidecar],
                         ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("n_jobs", [2, 25], ids=["6-records", "75-records-read-in-threads"])
def test_an_unreadable_file_is_listed_counted_missing_quarantined_and_rewritten(tmp_path, damage, n_jobs):
    jobs = grid(n_jobs)
    st = fill(tmp_path, jobs)
    assert (3 * n_jobs >= store_mod.THREADED_READ_MIN) == (n_jobs == 25)  # one case each way
    key = jobs[0].runs[1].key
    target = st.path("task0", "opt0", key)
    damage(target)
    bad = {p for p in tmp_path.rglob("*.parquet")} - {st.path(r.task, r.optimizer, r.key) for j in jobs for r in j.runs}
    bad |= {target} if damage not in (_misplaced, _sidecar) else set()
    assert len(bad) == 1

    statuses = st.statuses()  # no crash
    frame = st.read()
    scan = st.scan()
    assert [b.path for b in scan.unreadable] == sorted(bad) and [b.path for b in st.problems] == sorted(bad)
    lines = scan.lines()
    assert len(lines) == 1 and "\n" not in lines[0] and str(next(iter(bad))) in lines[0]
    counted_missing = damage not in (_misplaced, _sidecar)
    assert (key not in statuses) == counted_missing and len(frame) == 3 * n_jobs - counted_missing
    assert frame["key"].is_unique
    if counted_missing:
        assert [j.runs for j in missing(jobs, st)] == [(jobs[0].runs[1],)]

    content = next(iter(bad)).read_bytes()
    rerun(tmp_path, jobs)
    kept = list((tmp_path / store_mod.QUARANTINE_DIR).rglob("*"))
    assert [p.read_bytes() for p in kept if p.is_file()] == [content]  # moved aside, not deleted
    assert_complete(tmp_path, jobs)


def test_write_moves_an_unreadable_file_aside_before_replacing_it(tmp_path):
    jobs = grid(1)
    st = fill(tmp_path, jobs)
    run = jobs[0].runs[0]
    _random(st.path(run.task, run.optimizer, run.key))
    st.write(record(run))  # no quarantine() call first: the write itself keeps the bad file
    assert len(list((tmp_path / store_mod.QUARANTINE_DIR).rglob("*.parquet"))) == 1
    assert_complete(tmp_path, jobs)


# --------------------------------------------------------------------------- case 11: full disk, unwritable folder
def _no_space_after(n: int, monkeypatch) -> list[int]:
    """Make every pyarrow write after the first `n` write half a file, then fail with ENOSPC."""
    real, count = pq.write_table, [0]

    def write_table(table, where, *a, **kw):
        count[0] += 1
        if count[0] <= n:
            return real(table, where, *a, **kw)
        Path(where).write_bytes(b"PAR1" + b"\x00" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_mod.pq, "write_table", write_table)
    return count


def test_a_full_disk_is_one_line_leaves_no_temporary_file_and_resumes(tmp_path, monkeypatch):
    jobs = grid(4)
    _no_space_after(7, monkeypatch)
    with pytest.raises(StoreWriteError) as info:
        run_jobs(jobs, Store(tmp_path), FakeExecutor(), skipped=0)
    msg = str(info.value)
    assert isinstance(info.value, CeloBenchError) and "\n" not in msg
    assert "No space left on device" in msg and str(tmp_path) in msg
    assert "7 of 12 runs of this grid are stored" in msg and "re-run the same command to resume" in msg
    assert not list(tmp_path.rglob(".tmp-*")) and len(Store(tmp_path).statuses()) == 7
    monkeypatch.undo()
    rerun(tmp_path, jobs)
    assert_complete(tmp_path, jobs)


def test_a_refused_rename_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    jobs = grid(1)
    st = fill(tmp_path, jobs)

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(store_mod.os, "replace", refuse)
    extra = replace(jobs[0].runs[0], key="f" * 24)
    with pytest.raises(StoreWriteError, match="Permission denied") as info:
        st.write(record(extra))
    assert "\n" not in str(info.value) and "cannot write run record" in str(info.value)
    monkeypatch.undo()
    assert not list(tmp_path.rglob(".tmp-*"))
    assert_complete(tmp_path, jobs)  # earlier records intact


def test_a_results_folder_under_a_file_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    st = Store(blocker / "results")
    with pytest.raises(StoreWriteError) as info:
        st.check_writable()
    msg = str(info.value)
    assert "\n" not in msg and str(blocker / "results") in msg and "--results" in msg
    with pytest.raises(StoreWriteError):  # and the same kind of error from a write
        st.write(record(grid(1)[0].runs[0]))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_results_folder_cannot_be_written(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(StoreWriteError, match="Permission denied"):
        Store(tmp_path / "ro").check_writable()


# --------------------------------------------------------------------------- file modes


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_record_file_gets_the_mode_of_a_normal_file(tmp_path, umask, mask, mode):
    umask(mask)
    run = grid(1)[0].runs[0]
    file = Store(tmp_path).write(record(run))
    assert file.stat().st_mode & 0o777 == mode  # what open() gives, not mkstemp's 0o600
    assert (file.parent.stat().st_mode & 0o777) == 0o777 & ~mask
    if mask == 0o022:  # the user trial's case: others can read a shared store
        assert file.stat().st_mode & 0o044 == 0o044
    assert Store(tmp_path).statuses() == {run.key: "ok"}


# --------------------------------------------------------------------------- kill -9 at each point of a write
KILL_POINTS = ("before-write", "mid-write", "before-rename", "after-rename")


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_at_any_point_of_a_write_is_repaired_by_the_next_run(tmp_path, point):
    jobs = grid(4)
    proc = python("kill-at", point, str(tmp_path), stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    st = Store(tmp_path)
    scan = st.scan()  # no crash, whatever the kill left
    assert len(scan.statuses) == 4 + (point == "after-rename")
    assert len(scan.stale) == (point in ("before-write", "mid-write", "before-rename"))
    rerun(tmp_path, jobs)
    assert_complete(tmp_path, jobs)


# --------------------------------------------------------------------------- case 12: claims
def test_a_dead_process_never_holds_a_claim(tmp_path):
    job = grid(1)[0]
    ready = tmp_path / "ready"
    proc = python("hold", str(tmp_path), str(ready))
    try:
        _wait_for(ready, proc)
        mine = Claims(Store(tmp_path), [job])
        assert not mine.try_claim(job)  # held by the live process
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert mine.wait_claim(job, timeout=5.0)  # released by the OS with its process
        mine.release_all()
    finally:
        proc.kill()


@pytest.mark.parametrize("holder_finishes", [True, False], ids=["holder-stores-it", "holder-dies"])
def test_a_claimed_job_is_waited_for_then_only_its_missing_runs_run(tmp_path, holder_finishes):
    jobs = grid(3)
    ready = tmp_path / "ready"
    proc = python("hold", str(tmp_path), str(ready), "store" if holder_finishes else "die")
    try:
        _wait_for(ready, proc)
        ex = FakeExecutor()
        waited = []
        summary = run_jobs(jobs, Store(tmp_path), ex, claim_timeout=60, on_wait=waited.append)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert [j.name for j in waited] == [jobs[0].name]  # the held job was deferred, then waited for
    ran = [r.key for j in ex.executed for r in j.runs]
    if holder_finishes:  # it stored 2 of the job's 3 runs before it died
        assert ran == [r.key for j in jobs[1:] for r in j.runs] + [jobs[0].runs[2].key]
        assert summary.by_others == 2 and summary.executed == 7
    else:
        assert sorted(ran) == sorted(r.key for j in jobs for r in j.runs) and summary.by_others == 0
    assert_complete(tmp_path, jobs)


def test_a_claim_still_held_at_the_timeout_is_left_to_its_holder(tmp_path):
    jobs = grid(2)
    ready = tmp_path / "ready"
    proc = python("hold", str(tmp_path), str(ready))
    try:
        _wait_for(ready, proc)
        summary = run_jobs(jobs, Store(tmp_path), ListingExecutor(), claim_timeout=0.5)
    finally:
        proc.kill()
        proc.wait()
    assert summary.left_to_others == 3 and summary.executed == 3
    assert len(summary.notes) == 1 and "3 runs are still claimed by another process" in summary.notes[0]
    assert set(Store(tmp_path).statuses()) == {r.key for r in jobs[1].runs}


def test_two_runs_started_together_never_execute_a_job_twice(tmp_path):
    jobs = grid(8)
    root, gate = tmp_path / "store", tmp_path / "gate"
    gate.mkdir()
    procs = [python("grid", str(root), str(tmp_path / f"log{i}"), str(gate), str(i), stderr=subprocess.PIPE)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    logs = [[json.loads(line) for line in (tmp_path / f"log{i}").read_text().splitlines()] for i in range(2)]
    ran = [key for log in logs for job in log for key in job]
    assert sorted(ran) == sorted(r.key for j in jobs for r in j.runs)  # each run executed exactly once
    assert all(logs), "both processes took jobs"
    summaries = [json.loads((tmp_path / f"log{i}.summary").read_text()) for i in range(2)]
    assert sum(s["executed"] for s in summaries) == 24
    assert all(s["executed"] + s["by_others"] == 24 for s in summaries)  # each waited for the other's jobs
    assert_complete(root, jobs)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, "worker exited early"
        assert time.monotonic() - t0 < timeout, "worker never got ready"
        time.sleep(0.05)


# --------------------------------------------------------------------------- worker processes
def _kill_at(point: str, root: str) -> None:
    """Write the grid's records one by one; SIGKILL this process at `point` of the 5th write."""
    count = [0]

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    real_write, real_replace = pq.write_table, os.replace

    def write_table(table, where, *a, **kw):
        count[0] += 1
        if count[0] == 5 and point == "before-write":
            die()
        if count[0] == 5 and point == "mid-write":
            real_write(table, where, *a, **kw)
            Path(where).write_bytes(Path(where).read_bytes()[:200])
            die()
        return real_write(table, where, *a, **kw)

    def os_replace(src, dst):
        if count[0] == 5 and point == "before-rename":
            die()
        real_replace(src, dst)
        if count[0] == 5 and point == "after-rename":
            die()

    store_mod.pq.write_table = write_table
    store_mod.os.replace = os_replace
    st = Store(root)
    for job in grid(4):
        for run in job.runs:
            st.write(record(run))


def _hold(root: str, ready: str, then: str = "sleep") -> None:
    """Claim the first job of the grid; then sleep, die, or store 2 of its runs and die."""
    job = grid(3)[0]
    st = Store(root)
    claims = Claims(st, [job])
    assert claims.try_claim(job)
    Path(ready).touch()
    if then == "sleep":
        time.sleep(600)
    time.sleep(1.0)  # the other process has deferred the job by now
    if then == "store":
        for run in job.runs[:2]:
            st.write(record(run))
    os.kill(os.getpid(), signal.SIGKILL)  # never releases: the OS must


def _grid(root: str, log: str, gate: str, me: str) -> None:
    """Run the 8-job grid once both workers are ready (a barrier on files in `gate`)."""
    jobs = grid(8)
    st = Store(root)
    st.check_writable()
    st.repair()
    (Path(gate) / me).touch()
    while len(list(Path(gate).iterdir())) < 2:
        time.sleep(0.01)
    summary = run_jobs(missing(jobs, st), st, FakeExecutor(Path(log), delay=0.2), claim_timeout=120)
    Path(log + ".summary").write_text(json.dumps(summary.as_dict()))


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"kill-at": _kill_at, "hold": _hold, "grid": _grid}[mode](*args)
