"""Held-out meta-validation: how well given meta-parameters train fresh, unseen inner tasks.

Used by the outer learning-rate sweep to pick the best checkpoint. The meta-validation
loss of meta-parameters ``theta`` is

    mean over the family's members, ``val_instances`` fixed task instances per member and
    the evaluation points ``0, val_every, 2 val_every, ..., val_horizon`` of the
    normalised loss on the **held-out** ``outer_valid`` split,

while each instance is trained for ``val_horizon`` steps (``num_steps = val_horizon``) on
minibatches of its ``train`` split. It differs from the training meta-objective in three
ways that make it a fair held-out score: the examples are held out, the instances come
from a fixed key no training run uses (so every checkpoint is scored on the same draws),
and there is no augmentation (the target tasks are the un-reparametrised ones). It is the
mean over the whole run, like the meta-objective, so it rewards fast and final progress.

All instances run in one ``vmap`` inside one ``lax.scan`` (one compiled program).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from celo_bench.metatrain.tasks import TaskFamily

VALIDATION_SEED = 2**31 - 7
"""Key of the meta-validation instances; disjoint from every run's ``fold_in`` stream."""


def meta_validation_loss(
    family: TaskFamily,
    make_opt,
    theta: Any,
    *,
    horizon: int,
    instances: int,
    every: int,
) -> dict[str, float]:
    """Score `theta` (see module docstring); returns ``meta_validation_loss`` and details.

    Args:
      family: an **unaugmented** image family with ``eval_loss`` and ``eval_data``.
      make_opt: ``(theta, num_steps) -> optimizer`` as in :mod:`celo_bench.metatrain.pes`.
      horizon, instances, every: ``val_horizon``, ``val_instances``, ``val_every``.
    """
    if family.eval_loss is None:
        raise ValueError(f"family {family.name} has no held-out evaluation")
    every = max(1, min(every, horizon))
    chunks = horizon // every
    n_members = len(family.members)
    members = jnp.repeat(jnp.arange(n_members, dtype=jnp.int32), instances)
    keys = jax.random.split(jax.random.PRNGKey(VALIDATION_SEED), n_members * instances)
    num_steps = jnp.asarray(horizon, jnp.int32)

    def one(theta, key, member, data, eval_data):
        k_cfg, k_init, k_run = jax.random.split(key, 3)
        cfg = family.sample_cfg(k_cfg, member)
        params = family.init(k_init, cfg)
        opt = make_opt(theta, num_steps)
        opt_state = opt.init(params)

        def train_step(carry, i):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(family.loss)(params, cfg, data, jax.random.fold_in(k_run, i))
            updates, opt_state = opt.update(grads, opt_state, params, loss=loss)
            return (optax.apply_updates(params, updates), opt_state), family.normalize(loss)

        def chunk(carry, c):
            held = family.normalize(family.eval_loss(carry[0], cfg, eval_data))
            carry, train = jax.lax.scan(train_step, carry, c * every + jnp.arange(every))
            return carry, (held, jnp.mean(train))

        (params, _), (held, train) = jax.lax.scan(chunk, (params, opt_state), jnp.arange(chunks))
        final = family.normalize(family.eval_loss(params, cfg, eval_data))
        return jnp.concatenate([held, final[None]]), train

    run = jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None, None)))
    held, train = run(theta, keys, members, family.data, family.eval_data)
    held, train = np.asarray(held), np.asarray(train)
    return {
        "meta_validation_loss": float(held.mean()),
        "final_held_out_loss": float(held[:, -1].mean()),
        "mean_train_loss": float(train.mean()),
        "horizon": horizon,
        "instances": int(held.shape[0]),
    }


__all__ = ["VALIDATION_SEED", "meta_validation_loss"]
