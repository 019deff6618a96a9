"""Template submission: SGD with Nesterov momentum (replace with your optimizer).

Contract (checked by ``celo-bench validate``):

- define ``make_optimizer``; it is called once per run as
  ``make_optimizer(**defaults, **point, num_steps=T)`` (learned submissions get the
  checkpoint's tree first: ``make_optimizer(meta_params, ...)``), where ``T`` is the
  run's horizon (use it for schedules; ignore it otherwise). The benchmark registers it as a
  factory and trains with the :class:`celo_bench.task.OptimizerBuilder` that
  ``celo_bench.optimizers.builder`` makes of it, as for every built-in optimizer;
- return an ``optax.GradientTransformation``; the benchmark calls
  ``update(grads, state, params, loss=loss)``, so accept extra keyword arguments
  (``optax.GradientTransformationExtraArgs`` or ``**extra_args``);
- updates must have the params' tree, shapes and dtypes, be finite, deterministic,
  and survive ``jax.jit`` and ``jax.vmap``: hyper-parameters arrive as traced arrays
  (the benchmark trains every point of the search space in one vmapped program), so
  use ``jnp.where``/optax schedules instead of Python ``if`` on their values;
- keep all code in this file (its sha256 identifies your runs); import only jax,
  optax, numpy, flax and celo_bench.
"""

from __future__ import annotations

import optax


def make_optimizer(*, learning_rate, momentum: float = 0.9, num_steps: int) -> optax.GradientTransformation:
    r"""Nesterov SGD: :math:`m \leftarrow \mu m + g`, :math:`\Delta\theta = -\eta (g + \mu m)`.

    Args:
      learning_rate: :math:`\eta` (a traced scalar when the search space is vmapped).
      momentum: :math:`\mu`, fixed in ``[defaults]``.
      num_steps: the run's horizon (unused here).
    """
    del num_steps
    return optax.sgd(learning_rate, momentum=momentum, nesterov=True)
