"""Hand-crafted baselines as optax factories, with the reference code's defaults.

Defaults live in ``baselines/<name>.toml``; factories here only translate names. Every
learning rate is constant (the paper's factory uses no schedules).
"""

from __future__ import annotations

import optax

from celo_bench.optimizers._registry import register


def adam(learning_rate, *, b1=0.9, b2=0.999, eps=1e-8, eps_root=1e-8, num_steps=None):
    r"""Adam with the reference's ``eps_root=1e-8`` (optax's default is 0).

    .. math::
      m_t = b_1 m_{t-1} + (1-b_1) g_t,\quad v_t = b_2 v_{t-1} + (1-b_2) g_t^2,\quad
      u_t = -\eta \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}
    """
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)


def sgd(learning_rate, *, num_steps=None):
    r"""Plain SGD: :math:`u_t = -\eta g_t`."""
    return optax.sgd(learning_rate)


FACTORIES = {"adam": adam, "sgd": sgd}
for _name, _fn in FACTORIES.items():
    register(_name, _fn)
