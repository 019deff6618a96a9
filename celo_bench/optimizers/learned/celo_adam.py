"""Celo-Adam (the paper's ablation): Adam whose global learning rate is Celo's learned scheduler.

Meta-parameters (12 leaves, 36,865 values)::

    lstm_init_state/{hidden, cell}                                     (1, 64)
    rnn_params/{linear, linear_1, linear_2, rnn/linear, step_size}     (no rnn_to_controls)

References:
  Moudgil, Knyazev, Lajoie & Belilovsky, "Celo: Training Versatile Learned Optimizers
  on a Compute Diet", TMLR 2025, arXiv:2501.12670 (code: github.com/amoudgl/celo). Celo-Adam is
  the paper's ablation of Celo's update rule.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from celo_bench.optimizers._domain import DECAY, NON_NEGATIVE, NUM_STEPS, Keys, domain
from celo_bench.optimizers._registry import register
from celo_bench.optimizers.learned import _common as c
from celo_bench.optimizers.learned.celo import init_scheduler_params, scheduler_step

STEP_MULT = 1e-3


class CeloAdamState(NamedTuple):
    adam: optax.ScaleByAdamState
    iteration: jax.Array
    lstm: c.LSTMState
    loss_buffer: c.LossBuffer


def init_meta_params(key: jax.Array) -> dict:
    """A random Celo-Adam theta with the published tree."""
    lstm_init, rnn = init_scheduler_params(key, controls=False)
    return {"lstm_init_state": lstm_init, "rnn_params": rnn}


@domain(meta_params=Keys(("lstm_init_state", "rnn_params")), num_steps=NUM_STEPS, b1=DECAY, b2=DECAY,
        eps=NON_NEGATIVE, eps_root=NON_NEGATIVE)
def celo_adam(meta_params: dict, *, num_steps: int, b1: float = 0.9, b2: float = 0.999,
              eps: float = 1e-8, eps_root: float = 1e-10):
    r"""Adam with a learned global learning rate :math:`\eta_t = 10^{-3} \cdot 0.1\, e^{s_t}`.

    .. math::
      g = \mathrm{clip}(g, \pm 1000),\quad
      \Delta p = -\eta_t \frac{\hat m_t}{\epsilon + \sqrt{\hat v_t + \epsilon_{root}}}

    with bias-corrected moments (``optax.scale_by_adam``; float32 decays as in the reference)
    and :math:`s_t` from the Celo scheduler (LSTM on ``t/T`` and loss-trend features).
    The reference also carries an unused factored accumulator; it is not kept here.

    References:
      Moudgil, Knyazev, Lajoie & Belilovsky, "Celo: Training Versatile Learned Optimizers on a
      Compute Diet", TMLR 2025, arXiv:2501.12670 (its Celo-Adam ablation).
    """
    rnn = meta_params["rnn_params"]
    lstm0 = meta_params["lstm_init_state"]
    adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root)

    def init_fn(params):
        return CeloAdamState(
            adam=adam.init(params),
            iteration=jnp.asarray(0, jnp.int32),
            lstm=c.LSTMState(jnp.asarray(lstm0["hidden"]), jnp.asarray(lstm0["cell"])),
            loss_buffer=c.loss_buffer_init(num_steps),
        )

    def update_fn(grads, state, params=None, *, loss=None, **_):
        if loss is None:
            raise ValueError("celo_adam needs update(..., loss=loss)")
        buf = c.loss_buffer_update(state.loss_buffer, loss)
        s, lstm = scheduler_step(rnn, state.lstm, state.iteration, num_steps, buf)
        lr = 0.1 * jnp.exp(s) * STEP_MULT
        grads = jax.tree_util.tree_map(lambda g: jnp.clip(g, -1000.0, 1000.0), grads)
        direction, adam_state = adam.update(grads, state.adam)
        updates = jax.tree_util.tree_map(lambda u: -lr * u, direction)
        return updates, CeloAdamState(adam_state, state.iteration + 1, lstm, buf)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


register("celo_adam", celo_adam, learned=True, init_meta_params=init_meta_params)
