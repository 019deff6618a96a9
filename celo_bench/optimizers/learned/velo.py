"""VeLO / HyperV2 (Metz et al. 2022): a per-tensor LSTM that writes each tensor's MLP.

Two configurations are registered:

* ``velo_s``: LSTM 64, 32 MLPs in the stack, ``ff_mult = 1`` (meta-trained in the Celo paper);
* ``velo_4000``: LSTM 512, 256 MLPs, ``ff_mult = 100`` (Google's released VeLO).

Meta-parameters: ``ff_mod_stack/~/...`` (leading axis = param_inits), ``lstm_init_state``,
``rnn_params/{linear, linear_1, linear_2 (30, H), rnn/linear, rnn_to_controls, step_size}``.

References:
  Metz et al., "VeLO: Training Versatile Learned Optimizers by Scaling Up", arXiv:2211.09760,
  2022; VeLO-S: Moudgil et al., "Celo: Training Versatile Learned Optimizers on a Compute
  Diet", TMLR 2025, arXiv:2501.12670.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from celo_bench.optimizers._domain import FLAG, NUM_STEPS, POSITIVE, Keys, domain
from celo_bench.optimizers._registry import register
from celo_bench.optimizers.learned import _common as c
from celo_bench.optimizers.learned._ffmod import ff_step, ffmod_stack_init
from celo_bench.optimizers.learned._grouping import map_leaves
from celo_bench.optimizers.learned.celo import FAC_DECAYS, MOM_DECAYS, RMS_DECAYS, as_vector

N_TENSOR_FEATURES = 30  # fraction (9), loss (9), mean_rms (1), rank (5), var_m (3), var_rms (3)


class VeLOState(NamedTuple):
    m: Any
    rms: Any
    fac: Any
    iteration: jax.Array
    lstm: c.LSTMState  # (n_tensors, H)
    loss_buffer: c.LossBuffer


def init_meta_params(key: jax.Array, *, hidden: int, param_inits: int) -> dict:
    """A random HyperV2 theta with the reference tree (haiku initialisers)."""
    k_ff, k_rnn, k_ctrl, k_step = jax.random.split(key, 4)
    rnn = c.mixed_lstm_init(k_rnn, N_TENSOR_FEATURES, hidden)
    rnn["rnn_to_controls"] = c.linear_init(k_ctrl, hidden, param_inits)
    rnn["step_size"] = c.linear_init(k_step, hidden, 1)
    return {
        "ff_mod_stack": ffmod_stack_init(k_ff, param_inits),
        "lstm_init_state": c.lstm_state_init(hidden),
        "rnn_params": dict(sorted(rnn.items())),
    }


def tensor_features(p, m, rms, frac_embed, loss_feat) -> jax.Array:
    """The 30 per-tensor LSTM inputs, from the current ``p`` and the *previous* m and rms.

    Quirk kept: ``var_rms`` is centred on ``mean_m`` (3 values) instead of ``mean_rms``,
    so it broadcasts and yields 3 numbers; rms is rescaled by ``s``, not ``s^2``.
    """
    rank = int(np.sum(np.asarray(p.shape) > 1))
    p = as_vector(p)
    axes = tuple(range(1, p.ndim + 1))
    s = jax.lax.rsqrt(jnp.maximum(1e-9, jnp.mean(p**2)))
    m, rms = m * s, rms * s
    mean_m = jnp.mean(m, axis=axes, keepdims=True)
    var_m = jnp.mean(jnp.square(m - mean_m), axis=axes)
    mean_rms = jnp.mean(rms, axis=axes)
    var_rms = jnp.mean(jnp.square(rms - mean_m), axis=axes)

    def cla(x):
        return c.clip_log_abs(x, scale=10.0, mult=0.5)

    return jnp.concatenate([
        frac_embed, loss_feat, cla(mean_rms), jax.nn.one_hot(rank, 5, dtype=c.F32), cla(var_m), cla(var_rms),
    ])


_VELO_DOMAIN = dict(meta_params=Keys(("ff_mod_stack", "lstm_init_state", "rnn_params")),
                    num_steps=NUM_STEPS, use_bugged_loss_features=FLAG,
                    use_bugged_next_lstm_state=FLAG)


@domain(**_VELO_DOMAIN, ff_mult=POSITIVE)
def velo(meta_params: dict, *, num_steps: int, ff_mult: float = 1.0,
         use_bugged_loss_features: bool = False, use_bugged_next_lstm_state: bool = False):
    r"""HyperV2 as an optax transformation; ``update(grads, state, params, loss=loss)``.

    Per tensor, an LSTM over 30 features (progress, loss trend, momentum/RMS statistics,
    rank) emits controls :math:`c \in \mathbb{R}^K` and a raw step multiplier
    :math:`\lambda` (no exp: it can be negative). The tensor's MLP weights are
    :math:`\theta = \text{ff\_mult} \cdot \mathrm{mean}_k(c_k \theta_k)` over the stack,
    and the step is Celo's: :math:`\Delta p = -\lambda\, d\, e^{10^{-3} a} 10^{-3}\, \mathrm{rms}(p)`
    with the same 30 per-parameter features.

    Args:
      meta_params: the theta pytree.
      num_steps: horizon ``T``; enters through ``t/T`` and the loss-buffer half-lives.
      ff_mult: 1 for VeLO-S, 100 for Google's VeLO (its hard-coded interpolation factor).
      use_bugged_loss_features: HyperV2's default bug (loss buffer sized for T=10);
        off in every Celo factory config.
      use_bugged_next_lstm_state: never advance the LSTM state (old checkpoints); off.

    Raises:
      HyperparameterError: `num_steps` is not a positive integer, `ff_mult` is not > 0, a
        flag is not a bool, or `meta_params` lacks HyperV2's top-level keys.

    References:
      Metz et al., "VeLO: Training Versatile Learned Optimizers by Scaling Up",
      arXiv:2211.09760, 2022; VeLO-S is meta-trained in Moudgil et al., "Celo: Training
      Versatile Learned Optimizers on a Compute Diet", TMLR 2025, arXiv:2501.12670.
    """
    rnn = meta_params["rnn_params"]
    stack = meta_params["ff_mod_stack"]["~"]
    lstm0 = meta_params["lstm_init_state"]
    buffer_t = 10 if use_bugged_loss_features else num_steps

    def init_fn(params):
        n = len(jax.tree_util.tree_leaves(params))

        def zeros(p, k):
            return jnp.zeros((k,) + as_vector(p).shape, c.F32)

        return VeLOState(
            m=jax.tree_util.tree_map(lambda p: zeros(p, len(MOM_DECAYS)), params),
            rms=jax.tree_util.tree_map(lambda p: zeros(p, len(RMS_DECAYS)), params),
            fac=jax.tree_util.tree_map(lambda p: c.factored_init(as_vector(p), len(FAC_DECAYS)), params),
            iteration=jnp.asarray(0, jnp.int32),
            lstm=c.LSTMState(*(jnp.tile(jnp.asarray(lstm0[k]), (n, 1)) for k in ("hidden", "cell"))),
            loss_buffer=c.loss_buffer_init(buffer_t),
        )

    def update_fn(grads, state, params=None, *, loss=None, **_):
        if loss is None or params is None:
            raise ValueError("velo needs params and update(..., loss=loss)")
        buf = c.loss_buffer_update(state.loss_buffer, loss)
        frac = c.fraction_embed(state.iteration, num_steps)
        loss_feat = c.loss_buffer_features(buf)
        leaves, treedef = jax.tree_util.tree_flatten(params)
        g_l = [jnp.clip(g, -1000.0, 1000.0) for g in treedef.flatten_up_to(grads)]
        m_l, v_l = treedef.flatten_up_to(state.m), treedef.flatten_up_to(state.rms)
        f_l = treedef.flatten_up_to(state.fac)
        x = jnp.stack(map_leaves(lambda p, m, v: tensor_features(p, m, v, frac, loss_feat),
                                 list(zip(leaves, m_l, v_l, strict=True))))
        h, lstm = c.mixed_lstm(rnn, x, state.lstm)
        controls = c.linear(rnn["rnn_to_controls"], h)  # (n, K), used raw (no softmax)
        lr_mult = c.linear(rnn["step_size"], h)[:, 0]  # raw: no exp, may be negative
        if use_bugged_next_lstm_state:
            lstm = state.lstm

        def one(p, g, m, v, f, ctrl, lr_mult_i):
            shape = p.shape
            p, g = as_vector(p), as_vector(g)
            m = c.ema(m, g[None], c.as_decays(MOM_DECAYS, p.ndim))
            v = c.ema(v, (g * g)[None], jnp.clip(c.as_decays(RMS_DECAYS, p.ndim), 0, 1))
            f, rf, cf = c.factored_update(f, g, c.as_decays(FAC_DECAYS, p.ndim))
            mlp = jax.tree_util.tree_map(
                lambda t: ff_mult * jnp.mean(t * ctrl.reshape((-1,) + (1,) * (t.ndim - 1)), axis=0), stack
            )
            step = lr_mult_i * ff_step(mlp, p, g, m, v, f, rf, cf)
            return (-step).reshape(shape), m, v, f

        per_leaf = [(p, g, m, v, f, controls[i], lr_mult[i])
                    for i, (p, g, m, v, f) in enumerate(zip(leaves, g_l, m_l, v_l, f_l, strict=True))]
        out_u, out_m, out_v, out_f = (list(x) for x in zip(*map_leaves(one, per_leaf), strict=True))
        new_state = VeLOState(treedef.unflatten(out_m), treedef.unflatten(out_v),
                              treedef.unflatten(out_f), state.iteration + 1, lstm, buf)
        return treedef.unflatten(out_u), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _config(name: str, hidden: int, param_inits: int, ff_mult: float) -> None:
    @domain(**_VELO_DOMAIN)
    def factory(meta_params, *, num_steps, use_bugged_loss_features=False,
                use_bugged_next_lstm_state=False):
        return velo(meta_params, num_steps=num_steps, ff_mult=ff_mult,
                    use_bugged_loss_features=use_bugged_loss_features,
                    use_bugged_next_lstm_state=use_bugged_next_lstm_state)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"{name}: HyperV2 with LSTM {hidden}, {param_inits} MLPs, ff_mult {ff_mult}.\n\n" + (
        velo.__doc__ or ""
    )
    init = functools.partial(init_meta_params, hidden=hidden, param_inits=param_inits)
    register(name, factory, learned=True, init_meta_params=init)


_config("velo_s", 64, 32, 1.0)
_config("velo_4000", 512, 256, 100.0)
