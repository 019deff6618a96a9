"""``bench grid``: run a suite's grid into a fresh store and measure where the time goes.

The grid runs through the public runner (:func:`celo_bench.runner.run`), exactly as
``celo-bench run`` does, into a temporary results folder (nothing stored is reused), and
by default with an empty JAX compilation cache, so the numbers are those of a first run
on a new machine. Measured:

- ``wall_seconds``: the whole call (planning, data checks, compiling and training);
- ``compile_share``: Σ compile s / Σ (compile + run) s over the grid's jobs, from the
  records' ``compile_seconds`` and ``run_seconds`` (the runs of one job share its
  timings, so each (task, optimizer) job counts once);
- ``runs_per_second``: runs executed per wall-clock second;
- ``by_kind``: the same sums and share per optimizer kind (hand-crafted, extra, learned...),
  from the records' ``optimizer_kind``. A program shared by the jobs of a task (evaluation,
  gradient, start) is charged to the job that compiled it first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import pandas as pd

from celo_bench import compile_cache
from celo_bench.errors import CeloBenchError
from celo_bench.execute import EngineSettings
from celo_bench.runner import RunConfig, run
from celo_bench.store import Store

CACHE_MODES = ("cold", "warm")


@dataclass(frozen=True)
class GridBench:
    """One grid measurement. Seconds are wall-clock; compile and run are sums over jobs."""

    suite: str
    jobs: int
    runs: int
    wall_seconds: float
    compile_seconds: float
    run_seconds: float
    diverged: int = 0
    failed: int = 0
    compile_cache: str = "cold"
    unavailable: dict[str, str] = field(default_factory=dict)
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def compile_share(self) -> float:
        """Σ compile / Σ (compile + run) over jobs, in [0, 1] (NaN when nothing was timed)."""
        total = self.compile_seconds + self.run_seconds
        return self.compile_seconds / total if total > 0 else float("nan")

    @property
    def runs_per_second(self) -> float:
        return self.runs / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite, "jobs": self.jobs, "runs": self.runs,
            "wall_seconds": round(self.wall_seconds, 3),
            "compile_seconds": round(self.compile_seconds, 3),
            "run_seconds": round(self.run_seconds, 3),
            "compile_share": round(self.compile_share, 4),
            "runs_per_second": round(self.runs_per_second, 3),
            "diverged": self.diverged, "failed": self.failed,
            "compile_cache": self.compile_cache, "unavailable": dict(self.unavailable),
            "by_kind": {k: dict(v) for k, v in self.by_kind.items()},
        }


def job_timings(records: pd.DataFrame) -> pd.DataFrame:
    """One row per job, ``(task, optimizer, compile_seconds, run_seconds)``, from run records.

    Every record of a job carries the job's timings, so the first record of each
    (task, optimizer) pair stands for the job; failed jobs have no timings and are dropped.
    """
    cols = ["task", "optimizer", "compile_seconds", "run_seconds"]
    extra = ["optimizer_kind"] if "optimizer_kind" in records.columns else []
    if records.empty:
        return pd.DataFrame(columns=cols + extra)
    timed = records.dropna(subset=["compile_seconds", "run_seconds"])
    return timed.groupby(["task", "optimizer"], as_index=False, sort=True)[cols[2:] + extra].first()


def share_by_kind(per_job: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{kind: {jobs, compile_seconds, run_seconds, compile_share}}`` from :func:`job_timings`.

    Kinds are the records' ``optimizer_kind`` (``handcrafted``, ``extra``, ``learned``,
    ``submission``), sorted; empty when the column is absent.
    """
    if per_job.empty or "optimizer_kind" not in per_job.columns:
        return {}
    out = {}
    for kind, g in per_job.groupby("optimizer_kind", sort=True):
        c, r = float(g["compile_seconds"].sum()), float(g["run_seconds"].sum())
        out[str(kind)] = {"jobs": int(len(g)), "compile_seconds": round(c, 3), "run_seconds": round(r, 3),
                          "compile_share": round(c / (c + r), 4) if c + r > 0 else float("nan")}
    return out


@contextmanager
def _compile_cache(mode: str, folder: Path) -> Iterator[str]:
    """Point JAX's persistent compilation cache at an empty `folder` (``cold``); yields the
    mode actually in effect. The cache can be moved only before this process compiled
    anything through the runner; after that (or with ``CELO_BENCH_COMPILE_CACHE=0``) the
    configured cache stays and the mode says so."""
    if mode not in CACHE_MODES:
        raise CeloBenchError(f"--cache must be one of {', '.join(CACHE_MODES)}, got '{mode}'")
    if os.environ.get("CELO_BENCH_COMPILE_CACHE", "1") in ("0", "false", "no"):
        yield "off"
        return
    if mode == "warm":
        yield "warm"
        return
    if compile_cache.enable.cache_info().currsize:
        yield "warm (this process had already set up the compilation cache)"
        return
    old = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
    try:
        yield "cold"
    finally:
        if old is None:
            os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
        else:
            os.environ["JAX_COMPILATION_CACHE_DIR"] = old
        if compile_cache.enable.cache_info().currsize:
            # the temporary folder is about to go: later compiles of this process skip the cache
            jax.config.update("jax_enable_compilation_cache", False)


def bench_grid(
    suite: str,
    *,
    tasks: Sequence[str] | None = None,
    optimizers: Sequence[str] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    results: Path | None = None,
    executor: str = "local",
    engine: EngineSettings | None = None,
    cache: str = "cold",
    on_job: Callable[..., None] | None = None,
) -> GridBench:
    """Run the grid of `suite` (optionally restricted) into a fresh store and time it.

    Args:
      suite, tasks, optimizers, seeds, steps, executor, engine: as for ``celo-bench run``.
      results: the store to fill; it must be new or empty (default: a temporary folder,
        deleted afterwards).
      cache: ``cold`` (an empty compilation cache, as on a new machine) or ``warm`` (the
        user's persistent cache).
      on_job: passed to :func:`celo_bench.runner.run` (progress).

    Raises:
        CeloBenchError: `results` already holds records, or any error of ``run`` (unknown
            suite, task or optimizer, missing data, bad settings).
    """
    tmp = Path(tempfile.mkdtemp(prefix="celo-bench-grid-"))
    try:
        store_dir = Path(results) if results is not None else tmp / "results"
        held = len(Store(store_dir).statuses())
        if held:
            raise CeloBenchError(
                f"{store_dir} already holds {held} records; bench grid times a fresh grid: pass a new "
                "or empty folder to --results, or leave it out (a temporary folder is used)"
            )
        config = RunConfig(suite=suite, tasks=tasks, optimizers=optimizers, seeds=seeds, steps=steps,
                           results=store_dir, executor=executor, engine=engine or EngineSettings())
        with _compile_cache(cache, tmp / "jax-cache") as mode:
            t0 = time.perf_counter()
            summary = run(config, on_job=on_job)
            wall = time.perf_counter() - t0
        per_job = job_timings(Store(store_dir).read(curves=False))
        return GridBench(
            suite=suite, jobs=summary.jobs, runs=summary.executed, wall_seconds=wall,
            compile_seconds=float(per_job["compile_seconds"].sum()),
            run_seconds=float(per_job["run_seconds"].sum()),
            diverged=summary.diverged, failed=summary.failed, compile_cache=mode,
            unavailable=dict(summary.unavailable), by_kind=share_by_kind(per_job),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
