"""Training a learned optimizer as a task: learned_optimization's ``LOpt_*`` tasks.

The parameters are the meta-parameters ``theta`` of a learned optimizer (initialised by the
optimizer factory's ``init_meta_params(key)``, i.e. ``lopt.init(key)`` upstream). The loss
of ``theta`` is the mean normalised training loss of a short inner run (``tasks/fixed/
lopt.py::unrolled_loss``)::

    L(theta) = 1/K * sum_{k<K} clip(l_k, 0, 1.5 ln C),   l_k = inner loss at inner step k,

where the inner task (an image MLP classifier) is initialised from the loss's key and
trained for ``K`` steps by the learned optimizer ``opt(theta, num_steps=K)``, on ``K``
consecutive inner batches. One outer batch therefore holds ``K * inner_batch_size``
examples (the task's ``batch_size``), reshaped here to ``(K, inner_batch_size, ...)``.
Non-finite inner losses count as the clip maximum, like the reference normaliser.

The reference rematerialises each inner step (``jax.remat``). That changes no number, only
memory, which is tiny here (a 50-step unroll of a 2,410-parameter MLP), and it triples
the XLA compile time of the outer gradient on CPU (AdaFac-MLP-LOpt, 10-step unroll of a
linear inner model: 53 s with remat, 16 s without), so ``remat`` defaults to False.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from celo_bench.models.mlp import build_classifier
from celo_bench.task import Model


@dataclass(frozen=True)
class LearnedOptimizer:
    """The inner learned optimizer of a lopt task: what the task needs of it, nothing more.

    Built from a registered factory by :func:`celo_bench.assembly.learned_optimizer`, so the
    model families never import the optimizers.

    Attributes:
      name: the factory's name (for messages).
      init_meta_params: ``key -> theta``, the meta-parameter tree of a fresh optimizer.
      make: ``(theta, num_steps) -> optax.GradientTransformation``; ``theta`` may be traced.
    """

    name: str
    init_meta_params: Callable[[jax.Array], Any]
    make: Callable[[Any, int], optax.GradientTransformation]


def build_lopt_task(
    *,
    info: Mapping[str, Any],
    batch_size: int,
    optimizer: LearnedOptimizer,
    unroll_steps: int = 50,
    inner_batch_size: int = 128,
    hidden: Sequence[int] = (32,),
    activation: str = "relu",
    remat: bool = False,
) -> Model:
    """Meta-objective of learned optimizer `optimizer` on an inner image-MLP task.

    Args:
      info: facts of the inner dataset (``num_classes``, ``image_shape``).
      batch_size: examples per outer step; must equal ``unroll_steps * inner_batch_size``.
      optimizer: the learned optimizer whose meta-parameters are trained (the task spec names
        a registered factory, e.g. ``adafac_mlp_lopt``, with ``optimizer_options``;
        :mod:`celo_bench.assembly` turns that into this object).
      unroll_steps: inner training steps per loss evaluation (``K``).
      inner_batch_size: examples per inner step.
      hidden, activation: the inner MLP (the paper's ``ImageMLP_FashionMnist8_Relu32`` is
        one hidden layer of 32 ReLU units on 8x8 images).
      remat: rematerialise each inner step in the outer gradient (memory for compile time).
    """
    if batch_size != unroll_steps * inner_batch_size:
        raise TypeError(
            f"batch_size must be unroll_steps * inner_batch_size = "
            f"{unroll_steps} * {inner_batch_size} = {unroll_steps * inner_batch_size}, got {batch_size}"
        )
    inner = build_classifier(info=info, batch_size=inner_batch_size, hidden=hidden, activation=activation)
    maxval = 1.5 * math.log(int(info["num_classes"]))

    def init(key):
        return optimizer.init_meta_params(key), {}

    def loss(meta_params, state, key, batch):
        opt = optimizer.make(meta_params, unroll_steps)
        if not isinstance(opt, optax.GradientTransformationExtraArgs):
            opt = optax.with_extra_args_support(opt)
        k_init, k_steps = jax.random.split(key)
        params, model_state = inner.init(k_init)
        opt_state = opt.init(params)
        batches = jax.tree_util.tree_map(
            lambda a: a.reshape(unroll_steps, inner_batch_size, *a.shape[1:]), dict(batch)
        )

        def step(carry, xs):
            params, model_state, opt_state = carry
            b, k = xs
            (loss_k, model_state), g = jax.value_and_grad(inner.loss, has_aux=True)(params, model_state, k, b)
            updates, opt_state = opt.update(g, opt_state, params, loss=loss_k)
            return (optax.apply_updates(params, updates), model_state, opt_state), loss_k

        keys = jax.random.split(k_steps, unroll_steps)
        body = jax.checkpoint(step) if remat else step
        _, losses = jax.lax.scan(body, (params, model_state, opt_state), (batches, keys))
        losses = jnp.nan_to_num(jnp.clip(losses, 0.0, maxval), nan=maxval, posinf=maxval, neginf=maxval)
        return jnp.mean(losses), state

    return Model(init=init, loss=loss)
