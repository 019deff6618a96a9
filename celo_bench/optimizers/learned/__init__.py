"""Learned optimizers: one module per architecture, each citing its paper.

Importing this package registers every factory with
:func:`celo_bench.optimizers._registry.register` (``learned=True``), together with an
``init_meta_params(key)`` that builds a randomly initialised meta-parameter tree with
exactly the published checkpoint's keys and shapes. Factories take the meta-parameters
as an explicit pytree argument, ``factory(meta_params, *, num_steps, **hparams)``, so a
meta-training loop can differentiate through or perturb them.

Modules: :mod:`celo` (celo), :mod:`celo_adam`, :mod:`velo` (velo_s, velo_4000),
:mod:`rnn_mlp` (rnn_mlp_lopt), :mod:`adafac_mlp` (adafac_mlp_lopt), :mod:`nn_adam`;
shared blocks in :mod:`_common` (accumulators, loss buffer, LSTM) and :mod:`_ffmod`
(Celo/VeLO's per-parameter MLP).
"""

from celo_bench.optimizers.learned import (  # noqa: F401  (registers factories)
    adafac_mlp,
    celo,
    celo_adam,
    nn_adam,
    rnn_mlp,
    velo,
)

LEARNED = ("celo", "celo_adam", "velo_s", "velo_4000", "rnn_mlp_lopt", "adafac_mlp_lopt", "nn_adam")
"""Registered learned factory names."""

__all__ = ["LEARNED", "adafac_mlp", "celo", "celo_adam", "nn_adam", "rnn_mlp", "velo"]
