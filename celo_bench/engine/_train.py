"""The vectorized trainer: every run of one (task, optimizer) job in one compiled program.

Per run the loop follows the reference evaluation protocol (learned_optimization's
``single_task_training_curves``): for ``i = 0..T`` inclusive, evaluate every
``eval_every`` steps *before* the update of step ``i`` (``last_eval_batches`` at
``i == T``), then take a training step (``T + 1`` steps in the reference); the
minibatch loss is recorded at every step (the last update itself is unobservable and
skipped).

The seed fixes parameter init, per-step keys, evaluation batches **and the data order**:
each run draws its own epoch permutations of the training split from its seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from celo_bench.engine._strategy import Strategy
from celo_bench.task import EVAL_SPLITS, Task

OptimizerBuilder = Callable[[Mapping[str, jax.Array]], optax.GradientTransformationExtraArgs]
"""Maps (possibly traced) hyper-parameters to an optimizer; called inside the program."""

DEFAULT_MEMORY_BUDGET = 4 * 2**30


class RunState(NamedTuple):
    params: Any
    model_state: Any
    opt_state: Any


class RunConsts(NamedTuple):
    hparams: Any
    order: jax.Array  # (T + 1, batch) int32 indices into the train split
    step_key: jax.Array
    eval_key: jax.Array


@dataclass
class JobResult:
    """Curves of every run of a job, in input order.

    Shapes: ``train_loss (R, T + 1)``; ``eval_steps (E,)`` with ``E = T / eval_every + 1``;
    ``eval_loss[split] (R, E)``.
    """

    train_loss: np.ndarray
    eval_steps: np.ndarray
    eval_loss: dict[str, np.ndarray]
    compile_seconds: float
    run_seconds: float
    strategy: str
    programs: int


def _as_extra_args(opt: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    if isinstance(opt, optax.GradientTransformationExtraArgs):
        return opt
    return optax.with_extra_args_support(opt)


def _data_order(key: jax.Array, n: int, batch: int, steps: int) -> jax.Array:
    """Indices for ``steps`` batches: concatenated epoch permutations drawn from `key`."""
    epochs = math.ceil(steps * batch / n)
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, epochs))
    return perms.reshape(-1)[: steps * batch].reshape(steps, batch).astype(jnp.int32)


class _Program:
    """Pure single-run functions of one job; strategies compose them with jit/vmap/scan."""

    def __init__(self, task: Task, make_optimizer: OptimizerBuilder, num_steps: int):
        spec = task.spec
        self.task, self.make_optimizer, self.T = task, make_optimizer, num_steps
        self.batch, self.every = spec.batch_size, spec.eval_every
        self.eval_batches, self.last_eval_batches = spec.eval_batches, spec.last_eval_batches
        self.n_train = task.dataset.size("train")

    def optimizer(self, hparams: Any) -> optax.GradientTransformationExtraArgs:
        return _as_extra_args(self.make_optimizer(hparams))

    def init(self, data: Any, hparams: Any, seed: jax.Array) -> tuple[RunState, RunConsts]:
        k_init, k_data, k_step, k_eval = jax.random.split(jax.random.PRNGKey(seed), 4)
        params, model_state = self.task.init(k_init)
        opt_state = self.optimizer(hparams).init(params)
        order = _data_order(k_data, self.n_train, self.batch, self.T + 1)
        return RunState(params, model_state, opt_state), RunConsts(hparams, order, k_step, k_eval)

    def train_step(self, data: Any, consts: RunConsts, state: RunState, i: jax.Array):
        batch = jax.tree_util.tree_map(lambda a: a[consts.order[i]], data["train"])
        key = jax.random.fold_in(consts.step_key, i)

        def loss_fn(p):
            return self.task.loss(p, state.model_state, key, batch)

        (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = self.optimizer(consts.hparams).update(
            grads, state.opt_state, state.params, loss=loss
        )
        params = optax.apply_updates(state.params, updates)
        return RunState(params, model_state, opt_state), loss

    def evaluate(self, data: Any, consts: RunConsts, state: RunState, i: jax.Array, n_batches: int):
        """Mean loss over `n_batches` random batches of each eval split, at step `i`.

        The batches of all splits are gathered first and evaluated in one batched
        forward pass (one large program beats three small ones on CPU).
        """
        batches, keys = [], []
        for s, split in enumerate(EVAL_SPLITS):
            arrays = data[split]
            n = next(iter(arrays.values())).shape[0]
            key = jax.random.fold_in(jax.random.fold_in(consts.eval_key, i), s)
            idx = jax.random.randint(key, (n_batches, self.batch), 0, n)
            batches.append(jax.tree_util.tree_map(lambda a, idx=idx: a[idx], arrays))
            keys.append(jax.random.split(key, n_batches))
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *batches)

        def one(batch, k):
            return self.task.loss(state.params, state.model_state, k, batch)[0]

        losses = jax.vmap(one)(stacked, jnp.concatenate(keys))
        return jnp.mean(losses.reshape(len(EVAL_SPLITS), n_batches), axis=1)

    def block(self, data, consts, state, b, unroll: bool = False):
        """Evaluate at step ``b * eval_every``, then train ``eval_every`` steps."""
        start = b * self.every
        ev = self.evaluate(data, consts, state, start, self.eval_batches)

        def body(st, i):
            return self.train_step(data, consts, st, i)

        state, losses = jax.lax.scan(body, state, start + jnp.arange(self.every), unroll=unroll)
        return state, (ev, losses)

    def finish(self, data, consts, state):
        """Final evaluation at ``i == T`` and the minibatch loss of step ``T``.

        The reference loop also applies an update at ``i == T``; its result is never
        observed, so only the loss it records is computed (no backward pass to compile).
        """
        ev = self.evaluate(data, consts, state, self.T, self.last_eval_batches)
        batch = jax.tree_util.tree_map(lambda a: a[consts.order[self.T]], data["train"])
        key = jax.random.fold_in(consts.step_key, self.T)
        loss, _ = self.task.loss(state.params, state.model_state, key, batch)
        return ev, loss

    def full_run(self, data, hparams, seed):
        state, consts = self.init(data, hparams, seed)
        n_blocks = self.T // self.every

        def body(st, b):
            return self.block(data, consts, st, b)

        state, (evs, losses) = jax.lax.scan(body, state, jnp.arange(n_blocks))
        ev_last, loss_last = self.finish(data, consts, state)
        train = jnp.concatenate([losses.reshape(-1), loss_last[None]])
        evals = jnp.concatenate([evs, ev_last[None]], axis=0)  # (E, splits)
        return train, evals


def _timed_compile(fn, *args):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def _run_scan(prog: _Program, data, hparams, seeds, vmap: bool):
    fn = jax.vmap(prog.full_run, in_axes=(None, 0, 0)) if vmap else prog.full_run
    if vmap:
        compiled, c = _timed_compile(fn, data, hparams, seeds)
        t0 = time.perf_counter()
        train, evals = jax.block_until_ready(compiled(data, hparams, seeds))
        return np.asarray(train), np.asarray(evals), c, time.perf_counter() - t0, 1
    one = jax.tree_util.tree_map(lambda a: a[0], (hparams, seeds))
    compiled, c = _timed_compile(fn, data, *one)
    t0 = time.perf_counter()
    outs = []
    for r in range(seeds.shape[0]):
        args = jax.tree_util.tree_map(lambda a, r=r: a[r], (hparams, seeds))
        outs.append(jax.block_until_ready(compiled(data, *args)))
    train = np.stack([np.asarray(o[0]) for o in outs])
    evals = np.stack([np.asarray(o[1]) for o in outs])
    return train, evals, c, time.perf_counter() - t0, 1


def _run_loop(prog: _Program, data, hparams, seeds, vmap: bool, block_size: int):
    """Python loop over jitted blocks of steps (fast for convolutions on CPU)."""
    block_size = math.gcd(block_size, prog.every)  # blocks never straddle an evaluation
    wrap = (lambda f, axes: jax.vmap(f, in_axes=axes)) if vmap else (lambda f, axes: f)

    def evaluate(data, consts, state, i):
        return prog.evaluate(data, consts, state, i, prog.eval_batches)

    def steps(data, consts, state, start):
        def body(st, i):
            return prog.train_step(data, consts, st, i)

        return jax.lax.scan(body, state, start + jnp.arange(block_size), unroll=True)

    f_init = wrap(prog.init, (None, 0, 0))
    f_eval = wrap(evaluate, (None, 0, 0, None))
    f_steps = wrap(steps, (None, 0, 0, None))
    f_finish = wrap(prog.finish, (None, 0, 0))

    def run_one(hp, sd, compiled=None):
        t_compile = 0.0
        if compiled is None:
            ci, a = _timed_compile(f_init, data, hp, sd)
            state0, consts0 = ci(data, hp, sd)
            i0 = jnp.asarray(0)
            ce, b = _timed_compile(f_eval, data, consts0, state0, i0)
            cs, c = _timed_compile(f_steps, data, consts0, state0, i0)
            cf, d = _timed_compile(f_finish, data, consts0, state0)
            compiled, t_compile = (ci, ce, cs, cf), a + b + c + d
        ci, ce, cs, cf = compiled
        t0 = time.perf_counter()
        state, consts = ci(data, hp, sd)
        evs, losses = [], []
        for start in range(0, prog.T, block_size):
            if start % prog.every == 0:
                evs.append(ce(data, consts, state, jnp.asarray(start)))
            state, loss = cs(data, consts, state, jnp.asarray(start))
            losses.append(loss)
        ev_last, loss_last = cf(data, consts, state)
        jax.block_until_ready(loss_last)
        ax = -1
        train = np.concatenate([np.asarray(x) for x in losses] + [np.asarray(loss_last)[..., None]], axis=ax)
        evals = np.stack([np.asarray(e) for e in evs] + [np.asarray(ev_last)], axis=-2)
        return train, evals, t_compile, time.perf_counter() - t0, compiled

    if vmap:
        train, evals, c, r, _ = run_one(hparams, seeds)
        return train, evals, c, r, 4
    compiled, trains, evalss, c_total, r_total = None, [], [], 0.0, 0.0
    for r in range(seeds.shape[0]):
        hp, sd = jax.tree_util.tree_map(lambda a, r=r: a[r], (hparams, seeds))
        train, evals, c, t, compiled = run_one(hp, sd, compiled)
        trains.append(train)
        evalss.append(evals)
        c_total, r_total = c_total + c, r_total + t
    return np.stack(trains), np.stack(evalss), c_total, r_total, 4


def _bytes_per_run(task: Task, num_steps: int) -> int:
    """Rough device memory of one run: params, optimizer state, grads, activations, data order."""
    params, _ = jax.eval_shape(task.init, jax.random.PRNGKey(0))
    p_bytes = sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(params))
    example_bytes = sum(
        np.prod(a.shape[1:]) * 4 for a in task.dataset.splits["train"].values()
    )
    spec = task.spec
    activations = 16 * example_bytes * spec.batch_size * max(spec.eval_batches, spec.last_eval_batches)
    return int(12 * p_bytes + activations + 4 * (num_steps + 1) * spec.batch_size)


def run_job(
    task: Task,
    make_optimizer: OptimizerBuilder,
    hparams: Mapping[str, np.ndarray],
    seeds: np.ndarray,
    *,
    num_steps: int,
    strategy: Strategy,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    max_runs_per_program: int | None = None,
) -> JobResult:
    """Train ``R = len(seeds)`` runs of `task`; run ``r`` uses ``hparams[k][r]`` and ``seeds[r]``.

    Args:
      task: the task (model, data, eval cadence).
      make_optimizer: builds the optimizer from a dict of (traced) hyper-parameters.
      hparams: hyper-parameter name -> array of shape ``(R,)``.
      seeds: integer array of shape ``(R,)``.
      num_steps: horizon ``T`` (multiple of the task's ``eval_every``).
      strategy: how to compile (see :mod:`celo_bench.engine._strategy`).
      memory_budget: bytes; jobs whose runs exceed it are split into chunks.
      max_runs_per_program: optional hard cap on runs per compiled program.

    Returns:
      A :class:`JobResult` with curves in input order.
    """
    if num_steps % task.spec.eval_every:
        raise ValueError(f"num_steps={num_steps} is not a multiple of eval_every={task.spec.eval_every}")
    seeds = np.asarray(seeds, dtype=np.uint32)
    R = seeds.shape[0]
    hp = {k: np.asarray(v, dtype=np.float32).reshape(R) for k, v in hparams.items()}
    prog = _Program(task, make_optimizer, num_steps)
    data = jax.device_put({s: dict(task.dataset.splits[s]) for s in ("train", *EVAL_SPLITS[1:])})
    chunk = max(1, memory_budget // max(1, _bytes_per_run(task, num_steps)))
    if max_runs_per_program:
        chunk = min(chunk, max_runs_per_program)
    vmap = strategy.runs == "vmap"
    trains, evalss, compile_s, run_s, programs = [], [], 0.0, 0.0, 0
    for lo in range(0, R, chunk):
        sl = slice(lo, lo + chunk)
        hp_c = {k: jnp.asarray(v[sl]) for k, v in hp.items()}
        sd_c = jnp.asarray(seeds[sl])
        if strategy.steps == "scan":
            train, evals, c, r, n = _run_scan(prog, data, hp_c, sd_c, vmap)
        else:
            train, evals, c, r, n = _run_loop(prog, data, hp_c, sd_c, vmap, strategy.block_size)
        trains.append(train)
        evalss.append(evals)
        compile_s, run_s, programs = compile_s + c, run_s + r, programs + n
    train = np.concatenate(trains).astype(np.float32)
    evals = np.concatenate(evalss).astype(np.float32)  # (R, E, splits)
    eval_steps = np.arange(0, num_steps + 1, task.spec.eval_every)
    return JobResult(
        train_loss=train,
        eval_steps=eval_steps,
        eval_loss={s: evals[:, :, j] for j, s in enumerate(EVAL_SPLITS)},
        compile_seconds=compile_s,
        run_seconds=run_s,
        strategy=strategy.label,
        programs=programs,
    )
