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

import math

import jax
import optax
import optax.contrib

from celo_bench.optimizers._domain import (
    DECAY,
    FLAG,
    LEARNING_RATE,
    NON_NEGATIVE,
    OPTIONAL_NUM_STEPS,
    POSITIVE,
    POSITIVE_INT,
    domain,
)
from celo_bench.optimizers._registry import register


@domain(learning_rate=LEARNING_RATE, b1=DECAY, b2=DECAY, weight_decay=NON_NEGATIVE,
        num_steps=OPTIONAL_NUM_STEPS)
def lion(learning_rate, *, b1=0.9, b2=0.99, weight_decay=0.0, num_steps=None):
    r"""Lion: the sign of an interpolated momentum.

    .. math::
      u_t = -\eta\left(\mathrm{sign}(b_1 m_{t-1} + (1-b_1) g_t) + \lambda p\right),\quad
      m_t = b_2 m_{t-1} + (1-b_2) g_t

    References:
      Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023,
      arXiv:2302.06675.
    """
    return optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)


_HEAD_SPLIT = ("query", "key", "value")
"""flax attention projections whose ``kernel`` is ``(in, heads, head_dim)`` (``DenseGeneral``)."""


def _dims(path, u) -> optax.contrib.MuonDimensionNumbers:
    """The matrix view of one leaf of rank >= 2: (input axes, output axes).

    flax stores a Dense kernel as (in, out) and a convolution kernel as HWIO
    ``(h, w, in, out)``: the last axis is the output channel and the others are inputs, so a
    conv kernel is seen as ``(h * w * in, out)``, the reference's ``(out, in * h * w)``
    transposed (Newton-Schulz commutes with the transpose and with the order of the
    flattened axes). An attention ``query``/``key``/``value`` kernel ``(in, heads, head_dim)``
    is seen as ``(in, heads * head_dim)``, the matrix of the equivalent dense layer.
    """
    names = [str(getattr(k, "key", k)) for k in path]
    if u.ndim == 3 and names[-2:-1] and names[-2] in _HEAD_SPLIT and names[-1] == "kernel":
        return optax.contrib.MuonDimensionNumbers(0, (1, 2))
    return optax.contrib.MuonDimensionNumbers(tuple(range(u.ndim - 1)), u.ndim - 1)


def _matrix_view(updates):
    """:func:`_dims` of every leaf (leaves Adam handles are masked out by the partition)."""
    return jax.tree_util.tree_map_with_path(_dims, updates)


def _shape_scale(updates):
    """Multiply each matrix-view update by the reference's ``sqrt(max(1, fan_out / fan_in))``."""
    def one(path, u):
        dims = _dims(path, u)
        out_axes = (dims.output_axis,) if isinstance(dims.output_axis, int) else dims.output_axis
        fan_out = math.prod(u.shape[a] for a in out_axes)
        return u * math.sqrt(max(1.0, fan_out / (u.size // fan_out)))

    return jax.tree_util.tree_map_with_path(one, updates)


def _muon_label(p) -> str:
    return "muon" if p.ndim >= 2 else "adam"


@domain(learning_rate=LEARNING_RATE, beta=DECAY, ns_steps=POSITIVE_INT, eps=POSITIVE,
        nesterov=FLAG, adam_b1=DECAY, adam_b2=DECAY, num_steps=OPTIONAL_NUM_STEPS)
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
    r"""Muon on every parameter of rank >= 2, Adam on scalars and vectors; one learning rate.

    **Leaves of rank >= 2** (dense and convolution kernels), as in the Muon reference: momentum
    :math:`m_t = \beta m_{t-1} + g_t` with the Nesterov direction
    :math:`d_t = g_t + \beta m_t` (``nesterov=False``: :math:`d_t = m_t`), viewed as the matrix
    :math:`D` (all leading axes) x (last axis) -- a flax HWIO conv kernel ``(h, w, i, o)``
    becomes ``(h w i, o)``, the reference's ``(o, i h w)`` transposed; a flax attention
    ``query``/``key``/``value`` kernel ``(in, heads, head_dim)`` becomes
    ``(in, heads head_dim)`` -- and orthogonalised by
    ``ns_steps`` Newton-Schulz iterations :math:`X \leftarrow aX + (bA + cA^2)X`,
    :math:`A = XX^\top`, :math:`(a, b, c) = (3.4445, -4.7750, 2.0315)`, started from
    :math:`X = D / (\|D\|_F + \epsilon)` (on the wide orientation of :math:`D`):

    .. math::
      u_t = -\eta\, \sqrt{\max(1, \text{fan\_out}/\text{fan\_in})}\; \mathrm{NS}(D_t)

    with fan_in x fan_out the matrix view's shape. The reference's momentum is
    :math:`(1-\beta)` times this one; Newton-Schulz normalises the scale away, so the
    directions are the same. No weight decay.

    **Leaves of rank 0 and 1** (biases, norm scales, scalars): plain Adam (no Nesterov, no
    weight decay) with ``b1 = adam_b1``, ``b2 = adam_b2``, ``eps`` added to
    :math:`\sqrt{\hat v}` and the same learning rate,
    :math:`u_t = -\eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)` (``optax.adam``) -- the
    reference's auxiliary Adam. Unlike the reference's recipe, which keeps embeddings and
    the first and last layers on Adam, every leaf of rank >= 2 here gets Muon (embedding
    tables and first/last kernels included): a factory sees a tree of arrays and cannot
    tell those layers from hidden ones.

    Built from optax: ``optax.trace`` for the momentum and ``optax.contrib.scale_by_muon``
    (with ``beta = 0``: Newton-Schulz only) with a matrix view for every rank, inside
    ``optax.partition``. ``optax.contrib.muon`` itself orthogonalises only 2-D leaves and
    gives the others Nesterov AdamW.

    References:
      Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024,
      https://kellerjordan.github.io/posts/muon/ (no arXiv paper); code:
      github.com/KellerJordan/Muon.
    """
    matrices = optax.chain(
        optax.trace(decay=beta, nesterov=bool(nesterov)),
        optax.contrib.scale_by_muon(
            ns_steps=int(ns_steps), beta=0.0, eps=eps, nesterov=False,
            weight_dimension_numbers=_matrix_view,
        ),
        optax.stateless(lambda updates, params=None: _shape_scale(updates)),
        optax.scale_by_learning_rate(learning_rate),
    )
    vectors = optax.adam(learning_rate, b1=adam_b1, b2=adam_b2, eps=eps)
    return optax.partition(
        {"muon": matrices, "adam": vectors},
        lambda params: jax.tree.map(_muon_label, params),
    )


@domain(learning_rate=LEARNING_RATE, b1=DECAY, b2=DECAY, eps=NON_NEGATIVE,
        weight_decay=NON_NEGATIVE, weight_lr_power=NON_NEGATIVE, num_steps=OPTIONAL_NUM_STEPS)
def schedule_free_adamw(
    learning_rate, *, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, weight_lr_power=2.0,
    num_steps=None,
):
    r"""Schedule-free AdamW, no warm-up.

    Keeps :math:`z` (the base AdamW iterate) and :math:`x` (its weighted average); the
    parameters it hands back are :math:`y = b_1 x + (1-b_1) z`, where gradients are taken.
    The engine evaluates and records the loss at these training iterates :math:`y`, not at
    :math:`x` (what ``optax.contrib.schedule_free_eval_params`` returns), so its curves are
    those of the training iterate, like every other optimizer's.

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024, arXiv:2405.15682.
    """
    return optax.contrib.schedule_free_adamw(
        learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
        weight_lr_power=weight_lr_power,
    )


@domain(learning_rate=LEARNING_RATE, b1=DECAY, b2=DECAY, eps=NON_NEGATIVE, estim_lr0=POSITIVE,
        weight_decay=NON_NEGATIVE, num_steps=OPTIONAL_NUM_STEPS)
def prodigy(learning_rate, *, b1=0.9, b2=0.999, eps=1e-8, estim_lr0=1e-6, weight_decay=0.0,
            num_steps=None):
    r"""Prodigy: Adam whose step size :math:`d_t` is estimated.

    The tuned ``learning_rate`` multiplies the estimate (1.0 is the method's default):
    :math:`u_t = -\eta\, d_t\, \hat m_t / (\sqrt{\hat v_t} + d_t \epsilon)`, with :math:`d_0` =
    ``estim_lr0`` and :math:`d_t` non-decreasing.

    References:
      Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner",
      ICML 2024, arXiv:2306.06101.
    """
    return optax.contrib.prodigy(
        learning_rate, betas=(b1, b2), eps=eps, estim_lr0=estim_lr0, weight_decay=weight_decay
    )


@domain(learning_rate=LEARNING_RATE, b1=DECAY, b2=DECAY, eps=POSITIVE, use_clipping=FLAG,
        num_steps=OPTIONAL_NUM_STEPS)
def adopt(learning_rate, *, b1=0.9, b2=0.9999, eps=1e-6, use_clipping=True, num_steps=None):
    r"""ADOPT: normalise by the *previous* second moment.

    .. math::
      m_t = b_1 m_{t-1} + (1-b_1)\,\mathrm{clip}\!\left(\frac{g_t}{\max(\sqrt{v_{t-1}},
      \epsilon)}\right),\quad v_t = b_2 v_{t-1} + (1-b_2) g_t^2,\quad u_t = -\eta m_t

    The first step only sets :math:`v_0 = g_0^2` (a zero update); clipping is optax's default
    :math:`t^{1/4}`. ``eps`` must be > 0: it is the only guard of the division.

    References:
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta_2 with the Optimal
      Rate", NeurIPS 2024, arXiv:2411.02853.
    """
    return optax.contrib.adopt(learning_rate, b1=b1, b2=b2, eps=eps, use_clipping=bool(use_clipping))


EXTRA_FACTORIES = {
    "lion": lion,
    "muon": muon,
    "schedule_free_adamw": schedule_free_adamw,
    "prodigy": prodigy,
    "adopt": adopt,
}
"""Factory name -> factory of the extra (post-paper) optimizers; each is registered below."""
for _name, _fn in EXTRA_FACTORIES.items():
    register(_name, _fn)
