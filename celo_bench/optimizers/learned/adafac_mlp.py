"""AdaFac-MLP-LOpt (Metz et al. 2022): a tiny per-parameter MLP on Adafactor-style features.

Meta-parameters (9 leaves, 197 values)::

    momentum_decays (3,), rms_decays (1,), adafactor_decays (3,)   learned decay offsets
    nn/~/{w0 (39, 4), b0 (4,), w1 (4, 4), b1 (4,), w2 (4, 2), b2 (2,)}

References:
  Metz, Freeman, Harrison, Maheswaranathan & Sohl-Dickstein, "Practical tradeoffs between
  memory, compute, and performance in learned optimizers", CoLLAs 2022, arXiv:2203.11860.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from celo_bench.optimizers._domain import NUM_STEPS, Keys, domain
from celo_bench.optimizers._registry import register
from celo_bench.optimizers.learned import _common as c
from celo_bench.optimizers.learned._ffmod import ff_step
from celo_bench.optimizers.learned.celo import as_vector

BASE_MOM, BASE_RMS, BASE_FAC = (0.9, 0.99, 0.999), (0.999,), (0.9, 0.99, 0.999)
STEP_TIMESCALES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
N_NORMALISED = 28


class AdafacState(NamedTuple):
    m: Any
    rms: Any
    fac: Any
    iteration: jax.Array


def learned_decay(base, offset: jax.Array) -> jax.Array:
    """``beta = 1 - (1 - beta0) exp(10 theta)``, computed as the reference does (float32)."""
    to_param = jnp.log(1 - jnp.asarray(base, c.F32)) / 10.0
    return 1 - jnp.exp((to_param + offset) * 10.0)


def init_meta_params(key: jax.Array) -> dict:
    """Random MLP weights (std 1/sqrt(fan_in), haiku) and zero decay offsets."""
    k0, k1, k2 = jax.random.split(key, 3)
    n_in = N_NORMALISED + len(STEP_TIMESCALES)
    nn = {
        "b0": jnp.zeros((4,), c.F32), "b1": jnp.zeros((4,), c.F32), "b2": jnp.zeros((2,), c.F32),
        "w0": c.truncated_normal(k0, (n_in, 4), 1 / np.sqrt(n_in)),
        "w1": c.truncated_normal(k1, (4, 4), 0.5),
        "w2": c.truncated_normal(k2, (4, 2), 0.5),
    }
    return {
        "adafactor_decays": jnp.zeros((3,), c.F32),
        "momentum_decays": jnp.zeros((3,), c.F32),
        "nn": {"~": nn},
        "rms_decays": jnp.zeros((1,), c.F32),
    }


# Rows of AdaFac's w0 per Celo feature group (Celo groups 1 and 8 do not exist here).
_ROWS = {0: (0, 1), 2: (1, 2), 3: (2, 5), 4: (5, 6), 5: (6, 9), 6: (9, 10), 7: (10, 13),
         9: (13, 16), 10: (16, 19), 11: (19, 22), 12: (22, 25), 13: (25, 28)}


def _as_celo_groups(nn: dict, t_feat: jax.Array) -> dict:
    """AdaFac's MLP in :func:`ff_step`'s layout: w0 split by feature group, the
    (un-normalised, per-tensor constant) step features folded into the first bias."""
    w0 = nn["w0"]
    mlp = {f"w0__{ii}": w0[a:b] for ii, (a, b) in _ROWS.items()}
    mlp["b0"] = t_feat @ w0[N_NORMALISED:] + nn["b0"]
    return {**mlp, "w1": nn["w1"], "b1": nn["b1"], "w2": nn["w2"], "b2": nn["b2"]}


def step_embed(iteration: jax.Array) -> jax.Array:
    """Eleven ``tanh(t / tau - 1)`` features of the step count (no horizon)."""
    return jnp.tanh(iteration / jnp.asarray(STEP_TIMESCALES, c.F32) - 1.0)


@domain(meta_params=Keys(("adafactor_decays", "momentum_decays", "nn", "rms_decays")),
        num_steps=NUM_STEPS)
def adafac_mlp_lopt(meta_params: dict, *, num_steps: int):
    r"""AdaFac-MLP-LOpt; ``update(grads, state, params)`` (the loss is not used).

    Features (28, normalised together per tensor by ``N``): ``g, p, m (3), v (1),
    m/sqrt(v), 1/sqrt(v), fac_g (3)`` and the Adafactor row/column statistics (15), then
    11 un-normalised step-count features. A 39-4-4-2 MLP gives direction ``d`` and
    magnitude ``a``: :math:`\Delta p = -d\, e^{10^{-3} a}\, 10^{-3}`. No gradient clipping,
    no parameter scaling; decays are learned as ``1 - (1 - beta0) exp(10 theta)``.
    `num_steps` is accepted (the reference requires it) but unused; it must still be a
    positive integer (:class:`~celo_bench.errors.HyperparameterError` otherwise).

    References:
      Metz et al., "Practical tradeoffs between memory, compute, and performance in learned
      optimizers" (AdaFac-MLP-LOpt), CoLLAs 2022, arXiv:2203.11860.
    """
    del num_steps
    nn = meta_params["nn"]["~"]
    mom_b = learned_decay(BASE_MOM, meta_params["momentum_decays"])
    rms_b = jnp.clip(learned_decay(BASE_RMS, meta_params["rms_decays"]), 0, 1)
    fac_b = learned_decay(BASE_FAC, meta_params["adafactor_decays"])

    def init_fn(params):
        def zeros(p, k):
            return jnp.zeros((k,) + as_vector(p).shape, c.F32)

        return AdafacState(
            m=jax.tree_util.tree_map(lambda p: zeros(p, 3), params),
            rms=jax.tree_util.tree_map(lambda p: zeros(p, 1), params),
            fac=jax.tree_util.tree_map(lambda p: c.factored_init(as_vector(p), 3), params),
            iteration=jnp.asarray(0, jnp.int32),
        )

    def one(p, g, m, v, f, t_feat):
        """Accumulators, then the MLP step (through the fast path shared with Celo)."""
        shape = p.shape
        p, g = as_vector(p), as_vector(g)
        nd = p.ndim
        m = c.ema(m, g[None], mom_b.reshape((-1,) + (1,) * nd))
        v = c.ema(v, (g * g)[None], rms_b.reshape((-1,) + (1,) * nd))
        f, rf, cf = c.factored_update(f, g, fac_b.reshape((-1,) + (1,) * nd))
        step = ff_step(_as_celo_groups(nn, t_feat), p, g, m, v, f, rf, cf, adafac=True)
        return (-step).reshape(shape), m, v, f

    def update_fn(grads, state, params=None, **_):
        if params is None:
            raise ValueError("adafac_mlp_lopt needs params")
        t_feat = step_embed(state.iteration)
        leaves, treedef = jax.tree_util.tree_flatten(params)
        outs = [one(*a, t_feat) for a in zip(leaves, *(treedef.flatten_up_to(x) for x in (
            grads, state.m, state.rms, state.fac)), strict=True)]
        u, m, v, f = (treedef.unflatten(list(x)) for x in zip(*outs, strict=True))
        return u, AdafacState(m, v, f, state.iteration + 1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


register("adafac_mlp_lopt", adafac_mlp_lopt, learned=True, init_meta_params=init_meta_params)
