"""The engine against a plain per-step reference loop, and its vectorization invariants."""

from __future__ import annotations

import math
from dataclasses import replace

import jax
import numpy as np
import optax
import pytest

from celo_bench import execute
from celo_bench.assembly import build_task
from celo_bench.engine import Strategy, _train, prepare_starts, run_job
from celo_bench.engine.reference import reference_run
from celo_bench.plan import expand
from celo_bench.suite import load_registry
from celo_bench.task import EVAL_SPLITS

T = 30


@pytest.fixture(scope="module")
def task():
    spec = replace(load_registry().task("smoke_digits_mlp"), steps=T)
    return build_task(spec)


def adam(hp):
    return optax.adam(hp["learning_rate"])


def reference_loop(task, lr: float, seed: int):
    run = reference_run(task, optax.adam(lr), seed, T)
    return run.train_loss, run.eval_loss


def _job(task, lrs, seeds, strategy=Strategy(), **kw):
    return run_job(
        task, adam, {"learning_rate": np.array(lrs)}, np.array(seeds), num_steps=T, strategy=strategy, **kw
    )


def test_engine_matches_reference_loop(task):
    res = _job(task, [1e-2, 3e-3], [0, 1])
    assert res.train_loss.shape == (2, T + 1)
    assert list(res.eval_steps) == [0, 10, 20, 30]
    for r, (lr, seed) in enumerate([(1e-2, 0), (3e-3, 1)]):
        train, evals = reference_loop(task, lr, seed)
        np.testing.assert_allclose(res.train_loss[r], train, rtol=2e-5, atol=2e-6)
        for j, split in enumerate(EVAL_SPLITS):
            np.testing.assert_allclose(res.eval_loss[split][r], evals[:, j], rtol=2e-5, atol=2e-6)
    # training happened: the loss fell from about ln(10)
    assert res.eval_loss["train"][0, 0] == pytest.approx(math.log(10), abs=0.5)
    assert res.eval_loss["train"][0, -1] < res.eval_loss["train"][0, 0] - 0.3


@pytest.mark.parametrize(
    "strategy",
    [Strategy("scan", "sequential"), Strategy("loop", "vmap"), Strategy("loop", "sequential", block_size=5),
     Strategy("split", "vmap"), Strategy("split", "sequential")],
)
def test_strategies_agree_with_scan_vmap(task, strategy):
    lrs, seeds = [1e-2, 1e-3, 1e-2], [0, 0, 2]
    a = _job(task, lrs, seeds)
    b = _job(task, lrs, seeds, strategy=strategy)
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(a.eval_loss["test"], b.eval_loss["test"], rtol=2e-5, atol=2e-6)
    assert b.strategy == strategy.label


def test_vmapped_job_equals_runs_one_by_one(task):
    lrs, seeds = [3e-2, 1e-3, 3e-3], [0, 1, 2]
    together = _job(task, lrs, seeds)
    for r in range(3):
        alone = _job(task, [lrs[r]], [seeds[r]])
        np.testing.assert_allclose(together.train_loss[r], alone.train_loss[0], rtol=2e-5, atol=2e-6)


def test_seed_fixes_everything_and_differs_across_seeds(task):
    a = _job(task, [1e-2, 1e-2], [5, 6])
    b = _job(task, [1e-2], [5])
    np.testing.assert_allclose(a.train_loss[0], b.train_loss[0], rtol=2e-5, atol=2e-6)
    assert not np.allclose(a.train_loss[0], a.train_loss[1])


def test_chunking_splits_jobs_without_changing_numbers(task):
    lrs, seeds = [1e-2, 1e-3, 3e-3], [0, 1, 2]
    whole = _job(task, lrs, seeds)
    chunked = _job(task, lrs, seeds, memory_budget=1)  # forces one run per program
    assert chunked.programs == 3 * whole.programs  # one set of programs per chunk
    np.testing.assert_allclose(whole.train_loss, chunked.train_loss, rtol=2e-5, atol=2e-6)


def test_diverging_run_does_not_spoil_the_others(task):
    with_bad = _job(task, [1e-2, 1e30], [0, 0])
    alone = _job(task, [1e-2], [0])
    assert not np.all(np.isfinite(with_bad.train_loss[1]))
    np.testing.assert_allclose(with_bad.train_loss[0], alone.train_loss[0], rtol=2e-5, atol=2e-6)


def test_horizon_must_be_a_multiple_of_eval_every(task):
    with pytest.raises(ValueError, match="multiple of eval_every"):
        run_job(task, adam, {"learning_rate": np.array([1e-3])}, np.array([0]), num_steps=25, strategy=Strategy())


def test_bench_engine_json_reports_a_ratio_and_equal_curves():
    import json

    from typer.testing import CliRunner

    from celo_bench.cli import app

    out = CliRunner().invoke(app, ["bench", "engine", "--steps", "20", "--repeats", "1", "--format", "json"])
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["runs"] == 15 and res["steps"] == 20
    assert res["ratio"] > 0 and res["engine_seconds"] > 0 and res["loop_seconds"] > 0
    assert res["max_abs_diff"] < 1e-4  # both sides trained the same runs


def test_a_chunk_out_of_device_memory_is_retried_with_fewer_runs(task, monkeypatch):
    from celo_bench.engine import _train

    lrs, seeds = [1e-2, 1e-3], [0, 1]
    whole = _job(task, lrs, seeds)
    real, sizes = _train._run_blocks, []

    def tight(prog, data, hparams, starts, *args, **kw):
        sizes.append(starts.order.shape[0])
        if starts.order.shape[0] > 1:  # only one run fits
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.2GiB")
        return real(prog, data, hparams, starts, *args, **kw)

    monkeypatch.setattr(_train, "_run_blocks", tight)
    retried = _job(task, lrs, seeds)
    assert sizes[0] == 2 and set(sizes[1:]) == {1} and len(sizes) == 3
    np.testing.assert_allclose(whole.train_loss, retried.train_loss, rtol=2e-5, atol=2e-6)


def test_a_run_that_never_fits_is_an_error_not_a_result(task, monkeypatch):
    from celo_bench.engine import _train
    from celo_bench.engine.memory import DeviceOutOfMemoryError

    def never(*args, **kw):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory")

    monkeypatch.setattr(_train, "_run_blocks", never)
    with pytest.raises(DeviceOutOfMemoryError, match="one run does not fit"):
        _job(task, [1e-3], [0])


def test_evaluation_in_groups_equals_one_batched_pass(task, monkeypatch):
    """Large-vocabulary models evaluate a chunk's batches in groups (``lax.map``); same losses."""
    from celo_bench.engine import _train

    whole = _job(task, [1e-2, 3e-3], [0, 1])
    monkeypatch.setattr(_train, "eval_group", lambda n, *a, **k: 2)  # 15 batches: groups of 2, a remainder
    _train._SHARED.clear()
    grouped = _job(task, [1e-2, 3e-3], [0, 1])
    _train._SHARED.clear()
    np.testing.assert_array_equal(grouped.train_loss, whole.train_loss)
    for split in EVAL_SPLITS:
        np.testing.assert_allclose(grouped.eval_loss[split], whole.eval_loss[split], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("make", [adam, lambda hp: optax.lamb(hp["learning_rate"])])
def test_split_steps_are_bit_identical_to_the_scan(task, make):
    """The CPU default (gradient and update as two programs) changes no number of these optimizers."""
    lrs, seeds = [1e-2, 1e-3, 3e-2], [0, 1, 2]
    hp = {"learning_rate": np.array(lrs)}
    a = run_job(task, make, hp, np.array(seeds), num_steps=T, strategy=Strategy("scan", "vmap"))
    b = run_job(task, make, hp, np.array(seeds), num_steps=T, strategy=Strategy("split", "vmap"))
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    for split in EVAL_SPLITS:
        np.testing.assert_array_equal(a.eval_loss[split], b.eval_loss[split])


def test_split_jobs_of_a_task_share_one_gradient_program(task):
    """The second optimizer of a task compiles its update and init, not the task's backward pass."""
    from celo_bench.engine import _train

    _train._SHARED.clear()
    hp, seeds = {"learning_rate": np.array([1e-2, 1e-3])}, np.array([0, 1])
    first = run_job(task, adam, hp, seeds, num_steps=T, strategy=Strategy("split", "vmap"))
    grads = [k for k in _train._SHARED if k[0] == "grad"]
    second = run_job(task, lambda h: optax.sgd(h["learning_rate"]), hp, seeds, num_steps=T,
                     strategy=Strategy("split", "vmap"))
    assert len(grads) == 1 and [k for k in _train._SHARED if k[0] == "grad"] == grads
    assert first.programs == second.programs == 4  # init, update, gradient (also the final loss), evaluation
    assert not [k for k in _train._SHARED if k[0] == "last"]
    assert np.all(np.isfinite(second.train_loss)) and not np.allclose(first.train_loss, second.train_loss)


def test_equal_chunks_compile_the_job_once(task, monkeypatch):
    """Four one-run chunks: the job's init and update compile for the first chunk only."""
    from celo_bench.engine import _train

    calls = []
    real = _train._timed_compile

    def counting(fn, *args, **kw):
        calls.append(fn)
        return real(fn, *args, **kw)

    for cache in (_train._SHARED, _train._START_CACHE):
        cache.clear()
    monkeypatch.setattr(_train, "_timed_compile", counting)
    res = _job(task, [1e-2, 1e-3, 3e-3, 1e-2], [0, 1, 2, 3], strategy=Strategy("split", "vmap"), memory_budget=1)
    assert res.programs == 4 * 4
    assert len(calls) == 1 + 4  # the start program, then init, gradient, update, evaluation


def test_learned_optimizers_that_differ_in_weights_only_share_their_programs(task, monkeypatch):
    """Published Celo and the cpu-diet Celo are one program with two inputs: the second job
    compiles nothing, and its curves are those of a job that compiled its own programs."""
    import jax

    from celo_bench import optimizers
    from celo_bench.engine import _train
    from celo_bench.optimizers.learned.celo import init_meta_params

    spec = load_registry().optimizer("celo")
    one, two = (optimizers.builder(spec, num_steps=T, meta_params=init_meta_params(jax.random.PRNGKey(k)))
                for k in (0, 1))
    spelled_out = optimizers.builder(replace(spec, defaults={"train_phase": 2}), num_steps=T,
                                     meta_params=two.meta_params)
    assert one.program_key == two.program_key == spelled_out.program_key  # the default spelled out
    calls = []
    real = _train._timed_compile

    def counting(fn, *args, **kw):
        calls.append(fn)
        return real(fn, *args, **kw)

    seeds = np.array([0, 1])
    _train._SHARED.clear()
    monkeypatch.setattr(_train, "_timed_compile", counting)
    a = run_job(task, one, {}, seeds, num_steps=T, strategy=Strategy("split", "vmap"))
    n = len(calls)
    b = run_job(task, spelled_out, {}, seeds, num_steps=T, strategy=Strategy("split", "vmap"))
    assert len(calls) == n and b.compile_seconds == 0.0
    _train._SHARED.clear()
    alone = run_job(task, two, {}, seeds, num_steps=T, strategy=Strategy("split", "vmap"))
    assert len(calls) > n
    np.testing.assert_array_equal(b.train_loss, alone.train_loss)
    assert not np.allclose(a.train_loss, b.train_loss)  # the weights are inputs, not constants


@pytest.mark.parametrize("task_name", ["quick_fmnist_mlp", "quick_pydoc_lstm"])
def test_start_program_at_its_lower_xla_level_is_bit_identical(task_name):
    """The start program (task init, data order, keys) compiles at ``START_OPT_LEVEL`` to save
    compile time; its parameters, orders and keys equal those of XLA's default level bit for bit
    (measured on every quick and paper task when it was chosen)."""
    import jax
    import jax.numpy as jnp

    from celo_bench.engine import _train

    spec = load_registry().task(task_name)
    prog = _train._Program(build_task(spec), None, spec.steps)
    seeds = jnp.asarray([0, 1, 2], dtype=jnp.uint32)
    outs = []
    for level in (None, _train.START_OPT_LEVEL):
        compiled, _ = _train._timed_compile(jax.vmap(prog.start), seeds, opt_level=level)
        outs.append(jax.tree_util.tree_leaves(compiled(seeds)))
    assert _train.START_OPT_LEVEL is not None and len(outs[0]) == len(outs[1]) > 3
    for default, lowered in zip(*outs, strict=True):
        np.testing.assert_array_equal(np.asarray(lowered), np.asarray(default))


def test_shared_programs_another_job_is_compiling_are_requested_last():
    """Two jobs starting on one task: the second compiles what the first is not compiling
    (its gradient while the first compiles the evaluation) instead of queueing for both."""
    import threading

    from celo_bench.engine import _train

    order = []
    started, release = threading.Event(), threading.Event()

    def other_job_builds_a():
        started.set()
        release.wait(5)
        order.append("A by the other job")
        return "a", 1.0

    def build_b():
        order.append("B")
        release.set()
        return "b", 2.0

    keys = (("test-shared-A",), ("test-shared-B",))
    try:
        other = threading.Thread(target=_train._shared, args=(keys[0], other_job_builds_a))
        other.start()
        assert started.wait(5)
        out = _train._shared_many([(keys[0], lambda: ("a again", 3.0)), (keys[1], build_b)])
        other.join()
        assert order == ["B", "A by the other job"]
        assert out == [("a", 0.0), ("b", 2.0)]  # results in request order; A compiled once
    finally:
        for key in keys:
            _train._SHARED.pop(key, None)


def test_prepared_starts_are_what_a_job_computes_and_jobs_reuse_them(task):
    """``prepare_starts`` (submit runs it while validating) draws exactly the initial parameters, data
    orders and keys a job would, with no optimizer; the job then finds them and trains the same."""
    seeds = np.array([0, 1, 2])
    _train._START_CACHE.clear()
    own = _job(task, [1e-3] * 3, seeds)  # computes its starts itself
    computed = dict(_train._START_CACHE)
    _train._START_CACHE.clear()
    prepare_starts(task, T, seeds)
    prepared = dict(_train._START_CACHE)
    assert computed.keys() == prepared.keys() and len(prepared) == 1
    for key in computed:
        for a, b in zip(jax.tree_util.tree_leaves(computed[key]), jax.tree_util.tree_leaves(prepared[key]),
                        strict=True):
            np.testing.assert_array_equal(a, b)
    again = _job(task, [1e-3] * 3, seeds)
    np.testing.assert_array_equal(own.train_loss, again.train_loss)


def test_prepare_tasks_prepares_each_task_once_and_stops_when_asked():
    """What ``submit`` runs beside the submission's checks: one start per task, nothing once told to stop."""
    reg = load_registry()
    jobs = expand(reg, reg.suite("smoke"), optimizers=["adam", "sgd"], steps=10, seeds=1)
    _train._START_CACHE.clear()
    execute.prepare_tasks(jobs, stop=lambda: True)
    assert not _train._START_CACHE
    execute.prepare_tasks(jobs)
    assert len(_train._START_CACHE) == len({j.task.name for j in jobs}) == 2
