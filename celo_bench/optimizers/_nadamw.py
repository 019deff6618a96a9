"""The reference NAdamW (learned_optimization ``optimizers/nadamw.py``) as an optax transform.

Hand-written on purpose: ``optax.nadamw`` is a different algorithm in three details that
change the numbers, so it cannot reproduce the paper's
NAdamW baseline:

* the reference adds ``eps`` to ``sqrt(v)`` (not to the bias-corrected ``sqrt(v_hat)``) and
  folds both bias corrections into one step size ``lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)``;
* optax corrects the momentum and gradient parts of the Nesterov numerator with different
  powers of ``b1``;
* the reference's decoupled weight decay is scaled by ``lr_t``, optax's by ``lr``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class NAdamWState(NamedTuple):
    """``count`` = updates applied so far; ``mu``/``nu`` = EMAs of g and g**2 (no bias correction)."""

    count: jax.Array
    mu: Any
    nu: Any


def reference_nadamw(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    l2_weight_decay: Any = 0.0,
    nesterov: bool = True,
    bias_correction: bool = True,
) -> optax.GradientTransformation:
    r"""NAdamW exactly as the reference computes it (constant learning rate).

    With :math:`t` the 1-based step:

    .. math::
      g' = g - \lambda_{l2} p,\quad m_t = b_1 m_{t-1} + (1-b_1) g',\quad
      v_t = b_2 v_{t-1} + (1-b_2) g'^2,\quad
      \eta_t = \eta \frac{\sqrt{1-b_2^t}}{1-b_1^t}

    .. math::
      u_t = -\eta_t \frac{b_1 m_t + (1-b_1) g'}{\sqrt{v_t} + \epsilon} - \eta_t \lambda_{wd} p

    The ``- l2 * p`` sign is the reference's (it is the opposite of an L2 penalty); it is kept
    for parity and is inert at the paper's default ``l2_weight_decay = 0``.

    Args:
      learning_rate: step size (may be a traced scalar).
      b1, b2: EMA decays of the gradient and the squared gradient.
      eps: added to ``sqrt(v)``.
      weight_decay: decoupled (AdamW-style) decay, scaled by ``lr_t``.
      l2_weight_decay: decay folded into the gradient (with the reference's sign).
      nesterov: use the Nesterov numerator ``b1 m + (1-b1) g`` (else ``m``).
      bias_correction: use ``lr_t`` (else ``lr``).

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop; decoupled
      decay: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", arXiv:1711.05101.
    """

    def init_fn(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return NAdamWState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("reference_nadamw needs params (for weight decay)")
        t = (state.count + 1).astype(jnp.float32)
        lr_t = learning_rate * (jnp.sqrt(1.0 - b2**t) / (1.0 - b1**t) if bias_correction else 1.0)

        def one(g, p, m, v):
            g = g - p * l2_weight_decay
            m = b1 * m + (1.0 - b1) * g
            v = b2 * v + (1.0 - b2) * jnp.square(g)
            num = b1 * m + (1.0 - b1) * g if nesterov else m
            step = lr_t * num / (jnp.sqrt(v) + eps) + lr_t * weight_decay * p
            return (-step).astype(p.dtype), m.astype(p.dtype), v.astype(p.dtype)

        out = jax.tree_util.tree_map(one, updates, params, state.mu, state.nu)
        treedef = jax.tree_util.tree_structure(updates)
        leaves = treedef.flatten_up_to(out)
        new_u, new_m, new_v = (treedef.unflatten([leaf[i] for leaf in leaves]) for i in range(3))
        return new_u, NAdamWState(optax.safe_increment(state.count), new_m, new_v)

    return optax.GradientTransformation(init_fn, update_fn)
