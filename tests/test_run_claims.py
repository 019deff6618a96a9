"""Claims are per run (issue 28, part 5): two grids of different shapes that share runs, run on
one store at the same moment, never train a run twice, and each job keeps its shape.

Run as a script, this file is the worker the test starts (twice).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from celo_bench.execute import Claims
from celo_bench.store import Store

HERE = Path(__file__).resolve()
GRID = {"suite": "smoke", "tasks": ["smoke_digits_mlp"], "steps": 10}


def _worker(root: str, seeds: str, gate: str, me: str, out: str) -> None:
    """Plan the smoke grid with `seeds` seeds; once both workers have planned (a barrier on
    files in `gate`), run it; write the summary and the jobs executed to `out`."""
    from celo_bench.runner import RunConfig, run

    executed: list[list[str]] = []

    def on_plan(todo) -> None:
        (Path(gate) / me).touch()
        while len(list(Path(gate).iterdir())) < 2:
            time.sleep(0.01)

    summary = run(RunConfig(**GRID, seeds=int(seeds), results=Path(root)), on_plan=on_plan,
                  on_job=lambda job, records: executed.append([r.key for r in job.runs]))
    Path(out).write_text(json.dumps({"summary": summary.as_dict(), "jobs": executed}))


def test_overlapping_grids_train_each_run_once(tmp_path):
    root, gate = tmp_path / "store", tmp_path / "gate"
    gate.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, str(HERE), root, str(seeds), str(gate), str(seeds),
                               str(tmp_path / f"out{seeds}.json")], env=env, stderr=subprocess.PIPE)
             for seeds in (1, 2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-3000:]
    outs = {s: json.loads((tmp_path / f"out{s}.json").read_text()) for s in (1, 2)}
    keys = set(Store(root).statuses())
    assert len(keys) == 12  # 1 task x (3 + 3) learning rates x 2 seeds
    trained = [k for o in outs.values() for job in o["jobs"] for k in job]
    assert sorted(trained) == sorted(keys)  # each distinct run trained once, by one of the two
    assert sum(o["summary"]["executed"] for o in outs.values()) == len(keys)
    # each saw the whole of its own plan done: trained by itself or by the other
    for seeds, o in outs.items():
        assert o["summary"]["executed"] + o["summary"]["by_others"] == 6 * seeds
    # a job trained whole (6 runs), or reduced only to what the other had not stored
    records = Store(root).read(curves=False).set_index("key")
    for o in outs.values():
        for job in o["jobs"]:
            assert len(job) in (3, 6) and len(set(records.loc[job, "job_runs"])) == 1


def test_a_job_is_claimed_whole_or_not_at_all(tmp_path):
    """A run claimed by another holder blocks the whole job that contains it (no partial claim
    stays behind), while a job of other runs is claimed at once."""
    from dataclasses import dataclass, replace

    @dataclass(frozen=True)
    class Run:
        key: str
        task: str = "t"
        optimizer: str = "o"

    @dataclass(frozen=True)
    class Job:
        runs: tuple

        def with_runs(self, runs):
            return replace(self, runs=tuple(runs))

    def key(i: int) -> str:
        return hashlib.sha256(str(i).encode()).hexdigest()[:24]

    small, big, other = Job((Run(key(0)),)), Job((Run(key(0)), Run(key(1)))), Job((Run(key(2)),))
    st = Store(tmp_path)
    first, second = Claims(st, [small]), Claims(st, [big, other])
    assert first.try_claim(small)
    assert not second.try_claim(big) and not second.wait_claim(big, 0.2)
    assert second.held == 0 and not any(p.name.startswith(key(1)) and _locked(p) for p in
                                        (tmp_path / ".claims").iterdir())
    assert second.try_claim(other)
    first.release(small)
    assert second.try_claim(big) and second.held == 2
    second.release_all()


def _locked(path: Path) -> bool:
    from filelock import FileLock, Timeout

    lock = FileLock(path, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


if __name__ == "__main__":
    _worker(*sys.argv[1:])
