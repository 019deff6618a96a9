"""Celo with a tuned step scale: an example learned submission.

The update rule is the benchmark's own Celo implementation
(:mod:`celo_bench.optimizers.learned.celo`), fed the checkpoint named in
``submission.toml``; this file adds one hyper-parameter. Defining ``init_meta_params``
lets validation match the checkpoint to Celo's tree key by key.
"""

from __future__ import annotations

import optax

from celo_bench.optimizers.learned.celo import celo
from celo_bench.optimizers.learned.celo import init_meta_params as init_meta_params


def make_optimizer(meta_params, *, step_scale, num_steps: int) -> optax.GradientTransformationExtraArgs:
    r"""Celo's update times a scalar: :math:`\Delta\theta = s \cdot \mathrm{Celo}_\phi(g, \ldots)`.

    Args:
      meta_params: Celo's meta-parameter tree :math:`\phi` (from the checkpoint).
      step_scale: :math:`s` (traced when the search space is vmapped); 1 is Celo.
      num_steps: the run's horizon, which drives Celo's learned scheduler.
    """
    return optax.chain(celo(meta_params, num_steps=num_steps), optax.scale(step_scale))
