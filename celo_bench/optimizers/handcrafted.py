"""The paper's 15 hand-crafted baselines as optax factories, with the reference code's defaults.

Each factory reproduces the optimizer that the Celo paper's code (``celo/factory.py``) builds
through learned_optimization's ``optax_opts`` classes (Moudgil et al., "Celo: Training Versatile
Learned Optimizers on a Compute Diet", arXiv:2501.12670). Defaults live in
``baselines/<name>.toml`` and reach the factories as keywords; the keyword defaults below are
the same numbers, so a factory called bare is still the reference optimizer. Every learning
rate is constant (the paper's factory uses no schedules).

Thirteen are plain optax. Two are not, and say why in their module:
``nadamw`` (:mod:`celo_bench.optimizers._nadamw`, the reference formula differs from
``optax.nadamw``) and ``sm3`` (:mod:`celo_bench.optimizers._sm3`, optax's SM3 fails on 0-d
parameters).

The learning rate may be a traced scalar (the engine vmaps over the grid); none of these
factories branches on its value in Python.

Every factory declares the valid range of each argument (:func:`~celo_bench.optimizers._domain.domain`)
and raises :class:`~celo_bench.errors.HyperparameterError` for a concrete value outside it
(a negative learning rate, ``b1`` outside ``[0, 1)``, a negative ``eps``, ...); traced values
are not checked.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from celo_bench.optimizers._domain import (
    DECAY,
    FINITE,
    FLAG,
    LEARNING_RATE,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    OPTIONAL_NUM_STEPS,
    POSITIVE,
    Interval,
    domain,
)
from celo_bench.optimizers._nadamw import reference_nadamw
from celo_bench.optimizers._registry import register
from celo_bench.optimizers._sm3 import sm3 as _sm3

PAPER_LR_GRID: tuple[float, ...] = (
    1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0,
)
"""VeLOdrome's half-decade learning-rate grid (``baselines/hparam_sets.py::_LRS``), 15 values."""


_ADAM_LIKE = dict(
    learning_rate=LEARNING_RATE, b1=DECAY, b2=DECAY, eps=NON_NEGATIVE, eps_root=NON_NEGATIVE,
    num_steps=OPTIONAL_NUM_STEPS,
)


@domain(**_ADAM_LIKE)
def adam(learning_rate, *, b1=0.9, b2=0.999, eps=1e-8, eps_root=1e-8, num_steps=None):
    r"""Adam with the reference's ``eps_root=1e-8`` (optax's default is 0).

    .. math::
      m_t = b_1 m_{t-1} + (1-b_1) g_t,\quad v_t = b_2 v_{t-1} + (1-b_2) g_t^2,\quad
      u_t = -\eta \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}

    Raises:
      HyperparameterError: ``learning_rate < 0``, ``b1``/``b2`` outside [0, 1), a negative
        ``eps``/``eps_root``, or ``num_steps < 1``.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, arXiv:1412.6980.
    """
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)


@domain(learning_rate=LEARNING_RATE, num_steps=OPTIONAL_NUM_STEPS)
def sgd(learning_rate, *, num_steps=None):
    r"""Plain SGD: :math:`u_t = -\eta g_t`.

    References:
      Robbins & Monro, "A Stochastic Approximation Method", Ann. Math. Statist. 22(3), 1951.
    """
    return optax.sgd(learning_rate)


@domain(learning_rate=LEARNING_RATE, momentum=DECAY, nesterov=FLAG, num_steps=OPTIONAL_NUM_STEPS)
def sgdm(learning_rate, *, momentum=0.9, nesterov=False, num_steps=None):
    r"""Heavy-ball momentum: :math:`m_t = g_t + \mu m_{t-1},\ u_t = -\eta m_t`.

    References:
      Polyak, "Some methods of speeding up the convergence of iteration methods", USSR
      Comput. Math. Math. Phys. 4(5), 1964; Sutskever et al., "On the importance of
      initialization and momentum in deep learning", ICML 2013 (the Nesterov form).
    """
    return optax.sgd(learning_rate, momentum=momentum, nesterov=bool(nesterov))


@domain(**_ADAM_LIKE, weight_decay=NON_NEGATIVE)
def adamw(
    learning_rate, *, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, weight_decay=1e-4, num_steps=None
):
    r"""AdamW, decoupled weight decay 1e-4 scaled by the learning rate, no mask.

    .. math::
      u_t = -\eta \left(\frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}
      + \lambda p_{t-1}\right)

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, arXiv:1711.05101.
    """
    return optax.adamw(
        learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=weight_decay
    )


@domain(learning_rate=LEARNING_RATE, decay=DECAY, eps=NON_NEGATIVE, momentum=DECAY,
        nesterov=FLAG, num_steps=OPTIONAL_NUM_STEPS)
def rmsprop(learning_rate, *, decay=0.9, eps=1e-8, momentum=0.0, nesterov=False, num_steps=None):
    r"""RMSProp with eps inside the root; ``momentum=0`` is the reference's no-op trace.

    .. math::
      v_t = \rho v_{t-1} + (1-\rho) g_t^2,\quad u_t = -\eta \frac{g_t}{\sqrt{v_t + \epsilon}}

    References:
      Tieleman & Hinton, "Lecture 6.5 - RMSProp: Divide the gradient by a running average of
      its recent magnitude", COURSERA: Neural Networks for Machine Learning, 2012 (no paper).
    """
    return optax.rmsprop(
        learning_rate, decay=decay, eps=eps, momentum=momentum, nesterov=bool(nesterov)
    )


@domain(learning_rate=LEARNING_RATE, min_norm=POSITIVE, num_steps=OPTIONAL_NUM_STEPS)
def fromage(learning_rate, *, min_norm=1e-6, num_steps=None):
    r"""Fromage, per tensor; ``min_norm`` (> 0) guards both norms.

    .. math::
      p_t = \frac{1}{\sqrt{1+\eta^2}}\left(p_{t-1} - \eta \frac{\|p_{t-1}\|}{\|g_t\|} g_t\right)

    References:
      Bernstein, Vahdat, Yue & Liu, "On the distance between two neural networks and the
      stability of learning", NeurIPS 2020, arXiv:2002.03432.
    """
    return optax.fromage(learning_rate, min_norm=min_norm)


@domain(learning_rate=LEARNING_RATE, momentum=DECAY, b2=Interval(0.0, 1.0), eps=NON_NEGATIVE,
        num_steps=OPTIONAL_NUM_STEPS)
def sm3(learning_rate, *, momentum=0.9, b2=1.0, eps=1e-8, num_steps=None):
    r"""SM3 with momentum 0.9 and ``b2 = 1`` (sum accumulators; ``b2`` in [0, 1]).

    For a matrix, :math:`a_{ij} = g_{ij}^2 + \min(r_i, c_j)` with row/column covers
    :math:`r_i = \max_j a_{ij}`, :math:`c_j = \max_i a_{ij}` of the previous step;
    :math:`m_t = \beta m_{t-1} + (1-\beta)\, g / \sqrt{a + \epsilon}`, :math:`u_t = -\eta m_t`.
    Scalar parameters are treated as shape ``(1,)``, as the reference's wrapper does.

    References:
      Anil, Gupta, Koren & Singer, "Memory-Efficient Adaptive Optimization", NeurIPS 2019,
      arXiv:1901.11150.
    """
    return _sm3(learning_rate, momentum=momentum, b2=float(b2), eps=eps)


@domain(learning_rate=LEARNING_RATE, weight_decay=NON_NEGATIVE, trust_coefficient=NON_NEGATIVE,
        eps=NON_NEGATIVE, momentum=DECAY, nesterov=FLAG, num_steps=OPTIONAL_NUM_STEPS)
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
    r"""LARS: per-tensor trust ratio, then heavy-ball momentum.

    .. math::
      \tilde g = g + \lambda p,\quad
      m_t = \mu m_{t-1} + \eta\, \tau \frac{\|p\|}{\|\tilde g\| + \epsilon} \tilde g,\quad
      u_t = -m_t

    (the ratio is 1 when either norm is 0).

    References:
      You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks",
      arXiv:1708.03888, 2017.
    """
    return optax.lars(
        learning_rate,
        weight_decay=weight_decay,
        trust_coefficient=trust_coefficient,
        eps=eps,
        momentum=momentum,
        nesterov=bool(nesterov),
    )


@domain(**_ADAM_LIKE, weight_decay=NON_NEGATIVE)
def lamb(learning_rate, *, b1=0.9, b2=0.999, eps=1e-6, eps_root=0.0, weight_decay=0.0, num_steps=None):
    r"""LAMB: Adam direction rescaled per tensor by :math:`\|p\| / \|r\|`.

    .. math::
      r_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon} + \lambda p,\quad
      u_t = -\eta \frac{\|p\|}{\|r_t\|} r_t

    References:
      You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
      ICLR 2020, arXiv:1904.00962.
    """
    return optax.lamb(
        learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=weight_decay
    )


@domain(**_ADAM_LIKE)
def adabelief(learning_rate, *, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, num_steps=None):
    r"""AdaBelief: second moment of :math:`g - m` instead of :math:`g`.

    .. math::
      s_t = b_2 s_{t-1} + (1-b_2)(g_t - m_t)^2 + \epsilon_{root},\quad
      u_t = -\eta \frac{\hat m_t}{\sqrt{\hat s_t} + \epsilon}

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
      Gradients", NeurIPS 2020, arXiv:2010.07468.
    """
    return optax.adabelief(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)


def _offset_decay_rate(step: jax.Array, exponent: jax.Array) -> jax.Array:
    r""":math:`\beta = 1 - (\max(s, 0) + 1)^{-c}` for the shifted step :math:`s = t - \text{offset}`.

    optax's schedule takes a fractional power of :math:`s + 1 \le 0` while the step is below
    the offset (NaN from the first update). Clamping at 0 gives those steps the first step's
    decay (0: the accumulator is :math:`g^2 + \epsilon`), the ``decay_offset = 0`` update.
    """
    t = (jnp.maximum(step, 0) + 1).astype(jnp.float32)
    return 1.0 - t ** (-exponent)


@domain(learning_rate=LEARNING_RATE, min_dim_size_to_factor=NON_NEGATIVE_INT,
        decay_rate=NON_NEGATIVE, decay_offset=NON_NEGATIVE_INT,
        multiply_by_parameter_scale=FLAG, clipping_threshold=Interval(0.0, low_open=True, none_ok=True),
        eps=POSITIVE, factored=FLAG, num_steps=OPTIONAL_NUM_STEPS)
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
    r"""Adafactor with an EXPLICIT learning rate and no momentum.

    The learning rate is always passed: optax's default ``None`` would switch to Adafactor's
    relative step-size schedule, which the reference does not use. With :math:`t` the
    1-based step and :math:`s = \max(t - \text{decay\_offset}, 1)`:

    .. math::
      \beta_t = 1 - s^{-0.8},\quad V_t = \beta_t V_{t-1} + (1-\beta_t)(g^2 + \epsilon)
      \ \text{(factored as } R C / 1^\top R \text{ when both dims} \ge 128),

    .. math::
      U = g / \sqrt{V},\quad \hat U = U / \max(1, \mathrm{RMS}(U)/d),\quad
      u_t = -\eta\, \max(\mathrm{RMS}(p), 10^{-3})\, \hat U

    This is ``optax.adafactor(momentum=None)`` assembled from the same optax transforms,
    except for the clamp in :math:`s`: optax 0.2.8 computes :math:`(t - \text{offset})^{-0.8}`
    of a non-positive number while :math:`t \le` ``decay_offset`` and returns NaN from the
    first update; here those steps get the first step's decay (:math:`\beta = 0`).

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
      ICML 2018, arXiv:1804.04235.
    """
    chain = [
        optax.scale_by_factored_rms(
            factored=bool(factored),
            decay_rate=decay_rate,
            step_offset=decay_offset,
            min_dim_size_to_factor=int(min_dim_size_to_factor),
            epsilon=eps,
            decay_rate_fn=_offset_decay_rate,
        )
    ]
    if clipping_threshold is not None:
        chain.append(optax.clip_by_block_rms(clipping_threshold))
    chain.append(optax.scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        chain.append(optax.scale_by_param_block_rms())
    chain.append(optax.scale(-1.0))
    return optax.chain(*chain)


@domain(learning_rate=LEARNING_RATE, initial_accumulator_value=NON_NEGATIVE, eps=NON_NEGATIVE,
        num_steps=OPTIONAL_NUM_STEPS)
def adagrad(learning_rate, *, initial_accumulator_value=0.1, eps=1e-7, num_steps=None):
    r"""AdaGrad: :math:`a_t = a_{t-1} + g_t^2` (from 0.1), :math:`u_t = -\eta g_t/\sqrt{a_t + \epsilon}`.

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic
      Optimization", JMLR 12, 2011.
    """
    return optax.adagrad(learning_rate, initial_accumulator_value=initial_accumulator_value, eps=eps)


@domain(learning_rate=LEARNING_RATE, b1=DECAY, b2=DECAY, eps=NON_NEGATIVE, num_steps=OPTIONAL_NUM_STEPS)
def yogi(learning_rate, *, b1=0.9, b2=0.999, eps=1e-3, num_steps=None):
    r"""Yogi; optax (hence the reference) starts m and v at 1e-6.

    .. math::
      v_t = v_{t-1} - (1-b_2)\,\mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2,\quad
      u_t = -\eta \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    References:
      Zaheer, Reddi, Sachan, Kale & Kumar, "Adaptive Methods for Nonconvex Optimization",
      NeurIPS 2018.
    """
    return optax.yogi(learning_rate, b1=b1, b2=b2, eps=eps)


@domain(**_ADAM_LIKE, threshold=FINITE)
def radam(learning_rate, *, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, threshold=5.0, num_steps=None):
    r"""RAdam: un-adapted momentum until the variance is tractable.

    .. math::
      \rho_t = \rho_\infty - \frac{2 t b_2^t}{1-b_2^t},\quad
      u_t = -\eta \begin{cases} r_t \hat m_t / (\sqrt{\hat v_t} + \epsilon) & \rho_t \ge 5\\
      \hat m_t & \text{otherwise}\end{cases}

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020,
      arXiv:1908.03265.
    """
    return optax.radam(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root, threshold=threshold)


@domain(learning_rate=LEARNING_RATE, b1=DECAY, b2=DECAY, eps=NON_NEGATIVE,
        weight_decay=NON_NEGATIVE, l2_weight_decay=NON_NEGATIVE, nesterov=FLAG,
        bias_correction=FLAG, num_steps=OPTIONAL_NUM_STEPS)
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

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop; decoupled
      decay: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", arXiv:1711.05101.
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


HANDCRAFTED_FACTORIES = {
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
"""Factory name -> factory of the hand-crafted baselines of the paper; each is registered below."""
for _name, _fn in HANDCRAFTED_FACTORIES.items():
    register(_name, _fn)
