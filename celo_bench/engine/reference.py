"""A plain per-step training loop: the protocol written the way research code usually is.

One run at a time, host-side NumPy batches, a jitted step and a jitted evaluation
called from Python. It exists as an executable specification of the engine's seed
semantics (tests compare the engine to it) and as the baseline of ``bench engine``.

Seed semantics: ``PRNGKey(seed)`` splits into (init, data, step, eval) keys; the data
order is concatenated epoch permutations of the train split drawn from the data key;
the step key of step ``i`` is ``fold_in(step_key, i)``; an evaluation at step ``i`` is
``n / chunk`` chunks (``chunk = gcd(eval_batches, last_eval_batches)``), chunk ``c`` drawing
its batches of every split from one uniform draw keyed by ``fold_in(fold_in(eval_key, i), c)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from celo_bench.task import EVAL_SPLITS, Task


@dataclass
class ReferenceRun:
    train_loss: np.ndarray  # (T + 1,)
    eval_loss: np.ndarray  # (E, len(EVAL_SPLITS))
    seconds: float  # wall time of the loop, compile excluded (warm-up step done first)


def reference_run(task: Task, optimizer: optax.GradientTransformation, seed: int, num_steps: int) -> ReferenceRun:
    """Train one run with a Python loop over a jitted step (the reference protocol)."""
    spec, data = task.spec, task.dataset.splits
    T, B = num_steps, spec.batch_size
    opt = optax.with_extra_args_support(optimizer)
    k_init, k_data, k_step, k_eval = jax.random.split(jax.random.PRNGKey(seed), 4)
    params, state = task.init(k_init)
    opt_state = opt.init(params)
    n = len(next(iter(data["train"].values())))
    perms = [np.asarray(jax.random.permutation(k, n)) for k in jax.random.split(k_data, math.ceil((T + 1) * B / n))]
    order = np.concatenate(perms)[: (T + 1) * B].reshape(T + 1, B)

    @jax.jit
    def step(params, state, opt_state, batch, key):
        (loss, state), g = jax.value_and_grad(lambda p: task.loss(p, state, key, batch), has_aux=True)(params)
        upd, opt_state = opt.update(g, opt_state, params, loss=loss)
        return optax.apply_updates(params, upd), state, opt_state, loss

    @jax.jit
    def eval_loss(params, state, batches, keys):
        return jnp.mean(jax.vmap(lambda b, k: task.loss(params, state, k, b)[0])(batches, keys))

    chunk = math.gcd(spec.eval_batches, spec.last_eval_batches)

    def evaluate(i: int, nb: int) -> list[float]:
        per_chunk = []
        for c in range(nb // chunk):
            k_idx, k_loss = jax.random.split(jax.random.fold_in(jax.random.fold_in(k_eval, i), c))
            u = np.asarray(jax.random.uniform(k_idx, (len(EVAL_SPLITS), chunk, B)))
            keys = jax.random.split(k_loss, len(EVAL_SPLITS) * chunk).reshape(len(EVAL_SPLITS), chunk, -1)
            row = []
            for s, split in enumerate(EVAL_SPLITS):
                arrays = data[split]
                n = len(next(iter(arrays.values())))
                idx = np.minimum((u[s] * n).astype(np.int32), n - 1)
                row.append(float(eval_loss(params, state, {k: v[idx] for k, v in arrays.items()}, keys[s])))
            per_chunk.append(row)
        return list(np.mean(per_chunk, axis=0))

    # Warm up (compile) both functions on throw-away inputs so timing excludes compilation.
    first = {k: v[order[0]] for k, v in data["train"].items()}
    jax.block_until_ready(step(params, state, opt_state, first, k_step))
    for nb in {spec.eval_batches, spec.last_eval_batches}:
        evaluate(0, nb)

    t0 = time.perf_counter()
    train, evals = [], []
    for i in range(T + 1):
        if i % spec.eval_every == 0:
            evals.append(evaluate(i, spec.last_eval_batches if i == T else spec.eval_batches))
        batch = {k: v[order[i]] for k, v in data["train"].items()}
        params, state, opt_state, loss = step(params, state, opt_state, batch, jax.random.fold_in(k_step, i))
        train.append(loss)
    train_np = np.array([float(x) for x in train])
    return ReferenceRun(train_np, np.array(evals), time.perf_counter() - t0)
