"""The per-parameter MLP of Celo and VeLO: 30 features -> 4 -> 4 -> 3.

Shared by :mod:`celo` and :mod:`velo`. This is where a Celo step spends its time, so it is
written for XLA on CPU while keeping the reference's numbers (golden tests pass unchanged):

* **No normalised feature copy.** The first layer is linear, so normalising feature column
  ``c`` by ``s_c = rsqrt(1e-5 + mean(x_c^2))`` equals scaling row ``c`` of ``W0`` by ``s_c``;
  only the 30 scalars are computed. For the Adafactor products (``g*r*c``, ``m*r*c``) the
  mean squares come from two matrix-vector products with the small factor vectors.
* **Broadcast features stay small.** Groups 9-12 are broadcasts of the row/column
  statistics; their first-layer contribution is computed on the small vectors.
* **Two phases, one barrier.** Stacking the features for a matmul makes XLA fuse the
  stack into the dot as a naive loop (measured 60 ms for a 393k-element tensor), and
  letting it fuse the normaliser reductions into the MLP loop costs another ~20 ms.
  ``optimization_barrier`` separates (1) the reductions from (2) the MLP, which is then
  emitted as a single vectorised elementwise loop reading each source array once.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from celo_bench.optimizers.learned._common import F32, Factored, factored_dims, truncated_normal

N_GROUPS = 14
"""Feature groups w0__0 .. w0__13 (blocks of the first layer, one per feature kind)."""


def group_widths(k_mom: int = 3, k_rms: int = 1, k_fac: int = 3) -> list[int]:
    """Widths of the 14 groups; the default gives the 30 columns of Celo/VeLO."""
    return [1, 1, 1, k_mom, k_rms, k_mom, k_rms, k_fac, k_rms] + [k_fac] * 4 + [k_mom]


def ffmod_stack_init(key: jax.Array, param_inits: int, hidden: int = 4) -> dict:
    """``ff_mod_stack/~``: `param_inits` MLPs stacked on a leading axis (haiku init).

    Every first-layer block uses std ``1/sqrt(30)`` (the total fan-in), later layers
    ``1/sqrt(hidden)``; biases are zero.
    """
    widths = group_widths()
    n_in = sum(widths)
    keys = jax.random.split(key, N_GROUPS + 2)
    p = {}
    for ii, w in enumerate(widths):
        p[f"w0__{ii}"] = truncated_normal(keys[ii], (param_inits, w, hidden), 1 / np.sqrt(n_in))
    p["w1"] = truncated_normal(keys[-2], (param_inits, hidden, hidden), 1 / np.sqrt(hidden))
    p["w2"] = truncated_normal(keys[-1], (param_inits, hidden, 3), 1 / np.sqrt(hidden))
    p["b0"] = jnp.zeros((param_inits, hidden), F32)
    p["b1"] = jnp.zeros((param_inits, hidden), F32)
    p["b2"] = jnp.zeros((param_inits, 3), F32)
    return {"~": dict(sorted(p.items()))}


def _mean_sq_scaled(x2: jax.Array, a: jax.Array, b: jax.Array, d0: int, d1: int) -> jax.Array:
    """``mean(x2 * a * b)`` over the tensor axes, per leading index, as two plain reductions.

    `a` (the row factor) is constant along tensor axis `d0`, `b` (the column factor) along
    `d1`. The first reduction runs over whichever of the two is the minor (last) axis:
    XLA's CPU reductions over a middle axis are ~100x slower.
    """
    nd = x2.ndim - 1
    if nd == 2:  # matrices: two matrix-vector products (BLAS), no broadcast is materialised
        lhs = "ij" if x2.shape[0] == 1 else "kij"  # g^2 is shared by all decays: no copies
        x = x2[0] if x2.shape[0] == 1 else x2
        if d0 == 1:  # a: (K, n_rows, 1) varies along rows, b: (K, 1, n_cols) along columns
            return jnp.einsum(f"{lhs},ki,kj->k", x, a[:, :, 0], b[:, 0, :]) / x2[0].size
        return jnp.einsum(f"{lhs},kj,ki->k", x, a[:, 0, :], b[:, :, 0]) / x2[0].size
    if d0 == nd - 1:  # reduce over d0 first: b varies along it, a does not
        first, rest, ax = b, a, d0
    else:
        first, rest, ax = a, b, d1
    partial = jnp.sum(x2 * first, axis=1 + ax, keepdims=True)
    return jnp.sum(partial * rest, axis=tuple(range(1, nd + 1))) / np.prod(x2.shape[1:])


@functools.partial(jax.jit, static_argnames=("exp_mult", "step_mult", "adafac"))
def ff_step(
    mlp: dict,
    p: jax.Array,
    g: jax.Array,
    m: jax.Array,
    rms: jax.Array,
    fac: Factored,
    row_factor: jax.Array,
    col_factor: jax.Array | None,
    *,
    exp_mult: float = 1e-3,
    step_mult: float = 1e-3,
    adafac: bool = False,
) -> jax.Array:
    """The step ``d * (param_scale * exp(exp_mult * a)) * step_mult`` of one tensor.

    With ``adafac=True`` this is AdaFac-MLP-LOpt's MLP instead: no ``clip(g)`` and
    ``g/sqrt(v)`` groups (1 and 8), ``m (v + 1e-6)^-1/2`` for non-factored tensors, and no
    parameter scaling; its step features are folded into ``b0`` by the caller.

    Args:
      mlp: one (un-stacked) MLP: ``w0__0..13 (c, 4)``, ``w1 (4, 4)``, ``w2 (4, 3)``, biases.
      p: the parameter before the update (ndim >= 1; callers reshape scalars to (1,)).
      g: the clipped gradient; m ``(3,)+shape``; rms ``(1,)+shape`` (already updated).
      fac: the updated factored accumulator; `row_factor`, `col_factor` from
        :func:`~celo_bench.optimizers.learned._common.factored_update`.

    Returns the step with ``p``'s shape, before any learned step multiplier.

    Implementation (measured on CPU with jax 0.10; see the module docstring): XLA turns
    "stack the features, then matmul" into a naive loop (~60 ms for a 393k-element tensor)
    and, left alone, merges the normaliser reductions into the MLP loop (another ~20 ms).
    So the work is split in two phases separated by ``optimization_barrier``: (1) the 30
    mean squares, as plain reductions of the source arrays or contractions with the small
    adafactor factor vectors, folded into the first-layer weights; (2) the whole MLP as
    one vectorised elementwise loop that reads each source array once.
    """
    nd = p.ndim
    axes = tuple(range(1, nd + 1))
    factored = col_factor is not None
    g1 = g[None]
    rho = jax.lax.rsqrt(rms + 1e-6)

    # ---- phase 1: the normalisers (mean of squares of every feature column).
    # Squares are materialised once (barrier) so reductions and contractions read plain arrays.
    rho2, g2, m2 = jax.lax.optimization_barrier((jnp.square(rho), jnp.square(g1), jnp.square(m)))
    if factored:  # row/col features are broadcasts of small arrays
        row, col = fac.row, fac.col
        rsq_row, rsq_col = jax.lax.rsqrt(row + 1e-8), jax.lax.rsqrt(col + 1e-8)
        rf2, cf2 = jnp.square(row_factor), jnp.square(col_factor)
        d1, d0 = factored_dims(p.shape)
        ms_fac_g = _mean_sq_scaled(g2, rf2, cf2, d0, d1)
        ms_fac_mom = _mean_sq_scaled(m2, rf2, cf2, d0, d1)
        inv_sqrt_v = None
    else:
        row = col = fac.diag
        rsq_row = rsq_col = jax.lax.rsqrt(fac.diag + 1e-8)
        # Quirk: the factored-momentum feature has no epsilon here (m * v^-1/2); it relies
        # on the 1e-30 inside v.
        inv_sqrt_v = (fac.diag + 1e-6) ** -0.5 if adafac else fac.diag ** -0.5
        ms_fac_g = jnp.mean(g2 * jnp.square(row_factor), axis=axes)
        ms_fac_mom = jnp.mean(m2 * jnp.square(inv_sqrt_v), axis=axes)
    small = [row, col, rsq_row, rsq_col]
    mean_sq = [
        jnp.mean(g2, axis=axes), jnp.mean(jnp.square(jnp.clip(g1, -0.1, 0.1)), axis=axes),
        jnp.mean(jnp.square(p))[None], jnp.mean(m2, axis=axes), jnp.mean(jnp.square(rms), axis=axes),
        jnp.mean(m2 * rho2, axis=axes), jnp.mean(rho2, axis=axes), ms_fac_g,
        jnp.mean(g2 * rho2, axis=axes),
    ] + [jnp.mean(jnp.square(x), axis=axes) for x in small] + [ms_fac_mom]
    # Normalisation folded into the weights: N(x) @ W == x @ (s[:, None] * W).
    skip = (1, 8) if adafac else ()
    w0 = [None if ii in skip else jax.lax.rsqrt(1e-5 + ms)[:, None] * mlp[f"w0__{ii}"]
          for ii, ms in enumerate(mean_sq)]
    # RMS of the tensor, pre-update (Celo/VeLO only).
    param_scale = jnp.asarray(1.0, F32) if adafac else jnp.sqrt(jnp.mean(jnp.square(p)) + 1e-9)
    hidden = mlp["b0"].shape[0]
    h_small = [mlp["b0"][j] for j in range(hidden)]
    if factored:  # the broadcast groups' first-layer contribution, on the small arrays
        def unit(j, ii, x):
            return sum(x[k] * w0[ii][k, j] for k in range(x.shape[0]))

        h_small = [(mlp["b0"][j] + unit(j, 9, row) + unit(j, 11, rsq_row),
                    unit(j, 10, col) + unit(j, 12, rsq_col)) for j in range(hidden)]
        small = []
    (w0, h_small, param_scale, p, g1, m, rms, rho, small, row_factor, col_factor, inv_sqrt_v) = (
        jax.lax.optimization_barrier(
            (w0, h_small, param_scale, p, g1, m, rms, rho, small, row_factor, col_factor, inv_sqrt_v)
        )
    )

    # ---- phase 2: the MLP, written per hidden unit so it is one elementwise loop.
    if factored:
        fac_g, fac_mom = g1 * row_factor * col_factor, m * row_factor * col_factor
    else:
        fac_g, fac_mom = g1 * row_factor, m * inv_sqrt_v
    groups = [g1, jnp.clip(g1, -0.1, 0.1), p[None], m, rms, m * rho, rho, fac_g, g1 * rho,
              *small, fac_mom]
    dense = [ii for ii in range(N_GROUPS) if not (factored and 9 <= ii <= 12)]
    groups = [x for ii, x in zip(dense, groups, strict=True) if ii not in skip]
    dense = [ii for ii in dense if ii not in skip]
    h = [sum(parts) if factored else parts for parts in h_small]
    for ii, x in zip(dense, groups, strict=True):
        for k in range(x.shape[0]):
            h = [h[j] + x[k] * w0[ii][k, j] for j in range(hidden)]
    h = [jax.nn.relu(hj) for hj in h]
    w1, b1, w2, b2 = mlp["w1"], mlp["b1"], mlp["w2"], mlp["b2"]
    h2 = [jax.nn.relu(sum(h[i] * w1[i, j] for i in range(hidden)) + b1[j]) for j in range(hidden)]
    # Output 2 of the MLP is unused by the reference; it is not computed.
    direction, magnitude = (sum(h2[i] * w2[i, j] for i in range(hidden)) + b2[j] for j in range(2))
    if adafac:
        return direction * jnp.exp(magnitude * exp_mult) * step_mult
    return direction * (param_scale * jnp.exp(magnitude * exp_mult)) * step_mult
