"""The Ray executor: the smoke grid on a local 2-CPU cluster equals the local executor's,
a worker killed mid-job is retried without losing or duplicating a record, and a missing
ray gives the install hint.

One cluster serves the whole module (Ray takes seconds to start). The driver and the Ray
workers share a persistent JAX compilation cache in a temporary folder, so each program
is compiled once per module instead of once per process; a cached executable is the same
program, so the comparison is unaffected (the numbers still depend on the shipped
hyper-parameters, seeds and settings, which are the program's inputs).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from celo_bench.errors import CeloBenchError
from celo_bench.execute import EngineSettings, execute_job, make_executor, run_jobs
from celo_bench.runner import RunConfig, plan_grid, run
from celo_bench.store import CURVE_COLUMNS, Store

try:
    import ray
except ImportError:  # the optional extra is absent: the cluster tests skip
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed: pip install -e '.[ray]'")
SCALARS = ("status", "learning_rate", "seed", "num_steps", "hparams", "diverged_step", "job_runs")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local 2-CPU Ray cluster whose workers share the driver's compilation cache."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    # reuse a cache CI may already keep for the whole session; else a private one
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(tmp_path_factory.mktemp("jax-cache"))
    old_env, old_dir = os.environ.get("JAX_COMPILATION_CACHE_DIR"), jax.config.jax_compilation_cache_dir
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache  # the workers inherit the driver's environment
    jax.config.update("jax_compilation_cache_dir", cache)
    compilation_cache.reset_cache()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="error")
    try:
        yield
    finally:
        ray.shutdown()
        if old_env is None:
            os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
        else:
            os.environ["JAX_COMPILATION_CACHE_DIR"] = old_env
        jax.config.update("jax_compilation_cache_dir", old_dir)
        compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def grids(cluster, tmp_path_factory):
    """The smoke grid through Ray, then through the local executor (frames keyed by run)."""
    ray_dir, local_dir = tmp_path_factory.mktemp("ray"), tmp_path_factory.mktemp("local")
    t0 = time.perf_counter()
    ray_summary = run(RunConfig(suite="smoke", executor="ray", results=ray_dir))
    t1 = time.perf_counter()
    run(RunConfig(suite="smoke", executor="local", results=local_dir))
    print(f"smoke grid: ray {t1 - t0:.1f}s, local {time.perf_counter() - t1:.1f}s")
    return ray_dir, ray_summary, Store(local_dir).read().set_index("key")


def assert_same_records(got, want) -> None:
    """Same scalars exactly, same curves to float32 tolerance (NaN where NaN)."""
    for key, row in got.iterrows():
        ref = want.loc[key]
        for col in SCALARS:
            assert row[col] == ref[col] or (row[col] != row[col] and ref[col] != ref[col]), (key, col)
        for col in CURVE_COLUMNS:
            np.testing.assert_allclose(row[col], ref[col], rtol=1e-5, atol=1e-6, err_msg=f"{key} {col}")


@pytest.mark.ray
@needs_ray
def test_smoke_grid_on_ray_equals_local(grids):
    ray_dir, summary, local = grids
    got = Store(ray_dir).read().set_index("key")
    planned = {r.key for job in plan_grid(RunConfig(suite="smoke"))[0] for r in job.runs}
    assert summary.jobs == 4 and summary.executed == len(planned) == 24 and summary.failed == 0
    assert set(got.index) == set(local.index) == planned and got.index.is_unique
    assert_same_records(got, local)
    assert {p["executor"] for p in got["provenance"].map(__import__("json").loads)} == {"ray"}


@pytest.mark.ray
@needs_ray
def test_resume_ships_only_missing_runs(grids):
    """Resume is the planner's: with one job's records gone, only those runs travel again."""
    ray_dir, _, local = grids
    gone = Store(ray_dir).root / "smoke_digits_mlp" / "sgd"
    n_gone = len(list(gone.glob("*.parquet")))
    for p in gone.glob("*.parquet"):
        p.unlink()
    shipped: list[str] = []
    summary = run(
        RunConfig(suite="smoke", executor="ray", results=ray_dir),
        on_job=lambda job, records: shipped.append(job.name),
    )
    assert shipped == ["smoke_digits_mlp x sgd"]
    assert (summary.executed, summary.skipped) == (n_gone, 24 - n_gone) and n_gone == 6
    assert_same_records(Store(ray_dir).read().set_index("key"), local)


def killing_job_fn(marks: Path, victim: str):
    """A job function whose first attempt at `victim` SIGKILLs its worker mid-training.

    Built as a closure so Ray ships it by value (the test module is not importable on the
    workers). Every attempt leaves a file in `marks`, so the test can count them.
    """

    def job_fn(job, settings):
        (marks / f"{job.name.replace(' ', '_')}.{uuid.uuid4().hex}").touch()
        if job.name == victim:
            try:  # atomic: exactly one attempt wins the right to die
                os.close(os.open(marks / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                threading.Thread(target=execute_job, args=(job, settings), daemon=True).start()
                time.sleep(1.0)  # the job is building its task / compiling by now
                os.kill(os.getpid(), signal.SIGKILL)
        return execute_job(job, settings)

    return job_fn


@pytest.mark.ray
@needs_ray
def test_killed_worker_job_is_retried(grids, tmp_path):
    _, _, local = grids
    from celo_bench.execute._ray import RayExecutor, RayResources

    marks = tmp_path / "marks"
    marks.mkdir()
    config = RunConfig(suite="smoke", tasks=["smoke_digits_mlp"], results=tmp_path / "store")
    _, todo, skipped = plan_grid(config)
    victim = "smoke_digits_mlp x adam"
    executor = RayExecutor(
        EngineSettings(), resources=RayResources(max_retries=2), job_fn=killing_job_fn(marks, victim)
    )
    yielded: list[str] = []
    summary = run_jobs(
        todo, Store(config.results), executor, skipped=skipped,
        on_job=lambda job, records: yielded.extend(r["key"] for r in records),
    )
    attempts = sorted(p.name.split(".")[0] for p in marks.iterdir() if p.name != "killed")
    assert (marks / "killed").exists()
    assert attempts.count(victim.replace(" ", "_")) == 2  # killed once, then retried
    assert attempts.count("smoke_digits_mlp_x_sgd") == 1
    planned = [r.key for job in todo for r in job.runs]
    assert sorted(yielded) == sorted(planned) and len(set(yielded)) == len(yielded) == 12
    assert (summary.executed, summary.failed, summary.jobs) == (12, 0, 2)
    got = Store(config.results).read().set_index("key")
    assert set(got.index) == set(planned) and (got["status"] == "ok").all()
    assert_same_records(got, local)


@pytest.mark.ray
@needs_ray
def test_lost_job_becomes_failed_records(cluster, tmp_path):
    """With retries exhausted the grid still goes on: the job's runs are stored as failed."""
    from celo_bench.execute._ray import RayExecutor, RayResources

    def always_die(job, settings):
        os.kill(os.getpid(), signal.SIGKILL)

    def raise_error(job, settings):
        raise ValueError("not a system failure")

    config = RunConfig(suite="smoke", tasks=["smoke_digits_ae"], results=tmp_path)
    _, todo, _ = plan_grid(config)
    for job_fn, want in ((always_die, "ray: WorkerCrashedError after 0 retries"),
                         (raise_error, "ray: ValueError: not a system failure")):
        executor = RayExecutor(EngineSettings(), resources=RayResources(max_retries=0), job_fn=job_fn)
        summary = run_jobs(todo[:1], Store(tmp_path / job_fn.__name__), executor)
        assert (summary.executed, summary.failed) == (6, 6)
        frame = Store(tmp_path / job_fn.__name__).read(curves=False)
        assert (frame["status"] == "failed").all() and frame["message"].str.startswith(want).all()


@pytest.mark.ray
@needs_ray
def test_infeasible_resources_are_reported(cluster):
    """A job no node can hold would queue forever: an error on a private cluster, else a warning."""
    from celo_bench.execute._ray import RayExecutor, RayResources

    executor = RayExecutor(EngineSettings(), resources=RayResources(num_gpus=1))
    with pytest.raises(CeloBenchError, match="GPU"):
        executor._check_feasible(private=True)
    with pytest.warns(UserWarning, match="autoscaler"):
        executor._check_feasible(private=False)
    RayExecutor(EngineSettings())._check_feasible(private=True)  # 1 CPU fits: silent


def test_resources_from_env_and_options():
    from_env = pytest.importorskip("celo_bench.execute._ray").RayResources.from_env
    res = from_env({"CELO_BENCH_RAY_CPUS_PER_JOB": "4", "CELO_BENCH_RAY_GPUS_PER_JOB": "0.5",
                    "CELO_BENCH_RAY_MEMORY_GB_PER_JOB": "2"})
    assert res.options() == {"num_cpus": 4.0, "num_gpus": 0.5, "memory": 2 * 2**30,
                             "max_retries": 3, "retry_exceptions": False}
    assert "memory" not in from_env({}).options() and from_env({}).num_cpus == 1
    executor = pytest.importorskip("celo_bench.execute._ray").RayExecutor(
        resources={"num_gpus": 1, "num_cpus": None, "max_retries": 0}
    )
    assert (executor.resources.num_gpus, executor.resources.num_cpus) == (1, 1)
    assert executor.resources.options()["max_retries"] == 0
    with pytest.raises(CeloBenchError, match="GPUS_PER_JOB"):
        from_env({"CELO_BENCH_RAY_GPUS_PER_JOB": "one"})
    with pytest.raises(CeloBenchError, match="whole"):
        from_env({"CELO_BENCH_RAY_GPUS_PER_JOB": "1.5"})


def test_missing_ray_gives_install_hint(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.delitem(sys.modules, "celo_bench.execute._ray", raising=False)
    with pytest.raises(CeloBenchError, match=r"pip install 'celo-bench\[ray\]'"):
        make_executor("ray", EngineSettings())

    from celo_bench.cli import main

    argv = ["celo-bench", "run", "--suite", "smoke", "--executor", "ray", "--results",
            str(tmp_path), "--no-report", "--format", "json"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "pip install 'celo-bench[ray]'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing ran, nothing was written
