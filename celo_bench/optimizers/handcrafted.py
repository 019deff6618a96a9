"""The paper's 15 hand-crafted baselines as optax factories, with the reference code's defaults.

Each factory reproduces the optimizer that ``celo/factory.py`` builds through
learned_optimization's ``optax_opts`` classes (``learned-optimizers.md`` §10). Defaults live in
``baselines/<name>.toml`` and reach the factories as keywords; the keyword defaults below are
the same numbers, so a factory called bare is still the reference optimizer. Every learning
rate is constant (the paper's factory uses no schedules).

Thirteen are plain optax. Two are not, and say why in their module:
``nadamw`` (:mod:`celo_bench.optimizers._nadamw`, the reference formula differs from
``optax.nadamw``) and ``sm3`` (:mod:`celo_bench.optimizers._sm3`, optax's SM3 fails on 0-d
parameters).

The learning rate may be a traced scalar (the engine vmaps over the grid); none of these
factories branches on its value in Python.
"""

from __future__ import annotations

import optax

from celo_bench.optimizers._nadamw import reference_nadamw
from celo_bench.optimizers._registry import register
from celo_bench.optimizers._sm3 import sm3 as _sm3

PAPER_LR_GRID: tuple[float, ...] = (
    1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0,
)
"""VeLOdrome's half-decade learning-rate grid (``baselines/hparam_sets.py::_LRS``), 15 values."""


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


def sgdm(learning_rate, *, momentum=0.9, nesterov=False, num_steps=None):
    r"""Heavy-ball momentum: :math:`m_t = g_t + \mu m_{t-1},\ u_t = -\eta m_t`."""
    return optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov)


def adamw(
    learning_rate, *, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, weight_decay=1e-4, num_steps=None
):
    r"""AdamW, decoupled weight decay 1e-4 scaled by the learning rate, no mask.

    .. math::
      u_t = -\eta \left(\frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}
      + \lambda p_{t-1}\right)
    """
    return optax.adamw(
        learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=weight_decay
    )


def rmsprop(learning_rate, *, decay=0.9, eps=1e-8, momentum=0.0, nesterov=False, num_steps=None):
    r"""RMSProp with eps inside the root; ``momentum=0`` is the reference's no-op trace.

    .. math::
      v_t = \rho v_{t-1} + (1-\rho) g_t^2,\quad u_t = -\eta \frac{g_t}{\sqrt{v_t + \epsilon}}
    """
    return optax.rmsprop(learning_rate, decay=decay, eps=eps, momentum=momentum, nesterov=nesterov)


def fromage(learning_rate, *, min_norm=1e-6, num_steps=None):
    r"""Fromage (Bernstein et al. 2020), per tensor.

    .. math::
      p_t = \frac{1}{\sqrt{1+\eta^2}}\left(p_{t-1} - \eta \frac{\|p_{t-1}\|}{\|g_t\|} g_t\right)
    """
    return optax.fromage(learning_rate, min_norm=min_norm)


def sm3(learning_rate, *, momentum=0.9, b2=1.0, eps=1e-8, num_steps=None):
    r"""SM3 (Anil et al. 2019) with momentum 0.9 and ``b2 = 1`` (sum accumulators).

    For a matrix, :math:`a_{ij} = g_{ij}^2 + \min(r_i, c_j)` with row/column covers
    :math:`r_i = \max_j a_{ij}`, :math:`c_j = \max_i a_{ij}` of the previous step;
    :math:`m_t = \beta m_{t-1} + (1-\beta)\, g / \sqrt{a + \epsilon}`, :math:`u_t = -\eta m_t`.
    Scalar parameters are treated as shape ``(1,)``, as the reference's wrapper does.
    """
    return _sm3(learning_rate, momentum=momentum, b2=float(b2), eps=eps)


def lars(
    learning_rate,
    *,
    weight_decay=0.0,
    trust_coefficient=1e-3,
    eps=0.0,
    momentum=0.9,
    nesterov=False,
    num_steps=None,
):
    r"""LARS (You et al. 2017): per-tensor trust ratio, then heavy-ball momentum.

    .. math::
      \tilde g = g + \lambda p,\quad
      m_t = \mu m_{t-1} + \eta\, \tau \frac{\|p\|}{\|\tilde g\| + \epsilon} \tilde g,\quad
      u_t = -m_t

    (the ratio is 1 when either norm is 0).
    """
    return optax.lars(
        learning_rate,
        weight_decay=weight_decay,
        trust_coefficient=trust_coefficient,
        eps=eps,
        momentum=momentum,
        nesterov=nesterov,
    )


def lamb(learning_rate, *, b1=0.9, b2=0.999, eps=1e-6, eps_root=0.0, weight_decay=0.0, num_steps=None):
    r"""LAMB (You et al. 2019): Adam direction rescaled per tensor by :math:`\|p\| / \|r\|`.

    .. math::
      r_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon} + \lambda p,\quad
      u_t = -\eta \frac{\|p\|}{\|r_t\|} r_t
    """
    return optax.lamb(
        learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=weight_decay
    )


def adabelief(learning_rate, *, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, num_steps=None):
    r"""AdaBelief (Zhuang et al. 2020): second moment of :math:`g - m` instead of :math:`g`.

    .. math::
      s_t = b_2 s_{t-1} + (1-b_2)(g_t - m_t)^2 + \epsilon_{root},\quad
      u_t = -\eta \frac{\hat m_t}{\sqrt{\hat s_t} + \epsilon}
    """
    return optax.adabelief(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)


def adafactor(
    learning_rate,
    *,
    min_dim_size_to_factor=128,
    decay_rate=0.8,
    decay_offset=0,
    multiply_by_parameter_scale=True,
    clipping_threshold=1.0,
    eps=1e-30,
    factored=True,
    num_steps=None,
):
    r"""Adafactor (Shazeer & Stern 2018) with an EXPLICIT learning rate and no momentum.

    The learning rate is always passed: optax's default ``None`` would switch to Adafactor's
    relative step-size schedule, which the reference does not use.

    .. math::
      \beta_t = 1 - t^{-0.8},\quad V_t = \beta_t V_{t-1} + (1-\beta_t)(g^2 + \epsilon)
      \ \text{(factored as } R C / 1^\top R \text{ when both dims} \ge 128),

    .. math::
      U = g / \sqrt{V},\quad \hat U = U / \max(1, \mathrm{RMS}(U)/d),\quad
      u_t = -\eta\, \max(\mathrm{RMS}(p), 10^{-3})\, \hat U
    """
    return optax.adafactor(
        learning_rate=learning_rate,
        min_dim_size_to_factor=min_dim_size_to_factor,
        decay_rate=decay_rate,
        decay_offset=decay_offset,
        multiply_by_parameter_scale=multiply_by_parameter_scale,
        clipping_threshold=clipping_threshold,
        momentum=None,
        eps=eps,
        factored=factored,
    )


def adagrad(learning_rate, *, initial_accumulator_value=0.1, eps=1e-7, num_steps=None):
    r"""AdaGrad: :math:`a_t = a_{t-1} + g_t^2` (from 0.1), :math:`u_t = -\eta g_t/\sqrt{a_t + \epsilon}`."""
    return optax.adagrad(learning_rate, initial_accumulator_value=initial_accumulator_value, eps=eps)


def yogi(learning_rate, *, b1=0.9, b2=0.999, eps=1e-3, num_steps=None):
    r"""Yogi (Zaheer et al. 2018); optax (hence the reference) starts m and v at 1e-6.

    .. math::
      v_t = v_{t-1} - (1-b_2)\,\mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2,\quad
      u_t = -\eta \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
    """
    return optax.yogi(learning_rate, b1=b1, b2=b2, eps=eps)


def radam(learning_rate, *, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, threshold=5.0, num_steps=None):
    r"""RAdam (Liu et al. 2020): un-adapted momentum until the variance is tractable.

    .. math::
      \rho_t = \rho_\infty - \frac{2 t b_2^t}{1-b_2^t},\quad
      u_t = -\eta \begin{cases} r_t \hat m_t / (\sqrt{\hat v_t} + \epsilon) & \rho_t \ge 5\\
      \hat m_t & \text{otherwise}\end{cases}
    """
    return optax.radam(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root, threshold=threshold)


def nadamw(
    learning_rate,
    *,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    l2_weight_decay=0.0,
    nesterov=True,
    bias_correction=True,
    num_steps=None,
):
    r"""The reference NAdamW (hand-written; ``optax.nadamw`` differs, see ``_nadamw``).

    .. math::
      \eta_t = \eta \frac{\sqrt{1-b_2^t}}{1-b_1^t},\quad
      u_t = -\eta_t \frac{b_1 m_t + (1-b_1) g_t}{\sqrt{v_t} + \epsilon} - \eta_t \lambda p
    """
    return reference_nadamw(
        learning_rate,
        b1=b1,
        b2=b2,
        eps=eps,
        weight_decay=weight_decay,
        l2_weight_decay=l2_weight_decay,
        nesterov=bool(nesterov),
        bias_correction=bool(bias_correction),
    )


FACTORIES = {
    "adam": adam,
    "sgd": sgd,
    "sgdm": sgdm,
    "adamw": adamw,
    "rmsprop": rmsprop,
    "fromage": fromage,
    "sm3": sm3,
    "lars": lars,
    "lamb": lamb,
    "adabelief": adabelief,
    "adafactor": adafactor,
    "adagrad": adagrad,
    "yogi": yogi,
    "radam": radam,
    "nadamw": nadamw,
}
for _name, _fn in FACTORIES.items():
    register(_name, _fn)
