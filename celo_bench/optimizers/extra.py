"""Optimizers beyond the paper (``baselines/extra/``), all from optax / optax.contrib.

They sit on the leaderboard beside the paper's 15 but are listed separately (spec kind
``extra``). Like the paper's baselines they get a constant learning rate, tuned on a grid,
and no weight decay unless the method needs it, so that they compare optimizers, not
regularisers.

Shampoo is not here: no maintained JAX implementation installs from PyPI for jax 0.10.
``optax-shampoo`` 0.0.6 (2022, the scalable_shampoo code learned_optimization wraps) needs
``chex`` and fails at ``init`` on jax 0.10 (it calls the removed ``jax.tree_map``); optax
has no Shampoo in core or contrib (0.2.8). See ``baselines/extra/README.md``.
"""

from __future__ import annotations

import optax
import optax.contrib

from celo_bench.optimizers._registry import register


def lion(learning_rate, *, b1=0.9, b2=0.99, weight_decay=0.0, num_steps=None):
    r"""Lion (Chen et al. 2023): the sign of an interpolated momentum.

    .. math::
      u_t = -\eta\left(\mathrm{sign}(b_1 m_{t-1} + (1-b_1) g_t) + \lambda p\right),\quad
      m_t = b_2 m_{t-1} + (1-b_2) g_t
    """
    return optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)


def muon(
    learning_rate,
    *,
    beta=0.95,
    ns_steps=5,
    eps=1e-8,
    nesterov=True,
    adam_b1=0.9,
    adam_b2=0.999,
    num_steps=None,
):
    r"""Muon (Jordan et al. 2024) on 2-D weights, Adam on everything else.

    For every 2-D leaf: Nesterov momentum :math:`m` orthogonalised by ``ns_steps`` Newton-Schulz
    iterations, :math:`u = -\eta \cdot \mathrm{shape\ scale} \cdot \mathrm{NS}(m)`. Leaves of any
    other rank (biases, norm scales, scalars, 4-D conv kernels) fall back to Adam with the same
    learning rate (optax.contrib's default partition).
    """
    return optax.contrib.muon(
        learning_rate,
        beta=beta,
        ns_steps=int(ns_steps),
        eps=eps,
        nesterov=bool(nesterov),
        adam_b1=adam_b1,
        adam_b2=adam_b2,
    )


def schedule_free_adamw(
    learning_rate, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, weight_lr_power=2.0,
    num_steps=None,
):
    r"""Schedule-free AdamW (Defazio et al. 2024), no warm-up.

    Keeps :math:`z` (the base AdamW iterate) and :math:`x` (its weighted average); the
    parameters it hands back are :math:`y = b_1 x + (1-b_1) z`, where gradients are taken.
    The engine evaluates and records the loss at these training iterates :math:`y`, not at
    :math:`x` (what ``optax.contrib.schedule_free_eval_params`` returns), so its curves are
    those of the training iterate, like every other optimizer's.
    """
    return optax.contrib.schedule_free_adamw(
        learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
        weight_lr_power=weight_lr_power,
    )


def prodigy(learning_rate, *, b1=0.9, b2=0.999, eps=1e-8, estim_lr0=1e-6, weight_decay=0.0,
            num_steps=None):
    r"""Prodigy (Mishchenko & Defazio 2024): Adam whose step size :math:`d_t` is estimated.

    The tuned ``learning_rate`` multiplies the estimate (1.0 is the method's default):
    :math:`u_t = -\eta\, d_t\, \hat m_t / (\sqrt{\hat v_t} + d_t \epsilon)`, with :math:`d_0` =
    ``estim_lr0`` and :math:`d_t` non-decreasing.
    """
    return optax.contrib.prodigy(
        learning_rate, betas=(b1, b2), eps=eps, estim_lr0=estim_lr0, weight_decay=weight_decay
    )


def adopt(learning_rate, *, b1=0.9, b2=0.9999, eps=1e-6, use_clipping=True, num_steps=None):
    r"""ADOPT (Taniguchi et al. 2024): normalise by the *previous* second moment.

    .. math::
      m_t = b_1 m_{t-1} + (1-b_1)\,\mathrm{clip}\!\left(\frac{g_t}{\max(\sqrt{v_{t-1}},
      \epsilon)}\right),\quad v_t = b_2 v_{t-1} + (1-b_2) g_t^2,\quad u_t = -\eta m_t

    The first step only sets :math:`v_0 = g_0^2` (a zero update); clipping is optax's default
    :math:`t^{1/4}`.
    """
    return optax.contrib.adopt(learning_rate, b1=b1, b2=b2, eps=eps, use_clipping=bool(use_clipping))


FACTORIES = {
    "lion": lion,
    "muon": muon,
    "schedule_free_adamw": schedule_free_adamw,
    "prodigy": prodigy,
    "adopt": adopt,
}
for _name, _fn in FACTORIES.items():
    register(_name, _fn)
