"""RNN-MLP-LOpt (Metz et al. 2020): a per-tensor LSTM conditioning a per-parameter MLP.

Meta-parameters (16 leaves, 35,799 values)::

    ffmod_params/mlp/~/linear_{0,1,2}    54 -> 32 -> 32 -> 18
    initial_from_lstm (18,), initial_from_mlp (16,)
    lstm_init_state/{hidden, cell} (1, 64)
    rnn_params/rnn/linear (116, 256)     LSTM on 52 per-tensor inputs
    rnn_to_ff_params/rnn_to_ff (64, 17), rnn_to_in_params/rnn_to_in (64, 18)

References:
  Metz, Maheswaranathan, Freeman, Poole & Sohl-Dickstein, "Tasks, stability, architecture,
  and compute: Training more effective learned optimizers, and using them to train
  themselves", arXiv:2009.11243, 2020.
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

DECAYS = (0.5, 0.9, 0.99, 0.999, 0.9999)
HIDDEN, FROM_MLP, FROM_LSTM, TO_FF = 64, 16, 18, 17
N_DENSE = 23  # g, p, log|p|, m (5), rms (5), m/sqrt(rms) (5), 1/sqrt(rms) (5)
SIN_TIMESCALES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
MLP_IN = N_DENSE + len(SIN_TIMESCALES) + 3 + TO_FF  # 54


class Normaliser(NamedTuple):
    mean: jax.Array
    var: jax.Array
    updates: jax.Array


class RNNMLPState(NamedTuple):
    m: Any
    rms: Any
    iteration: jax.Array
    lstm: c.LSTMState
    from_mlp: jax.Array  # (n_tensors, 16)
    from_lstm: jax.Array  # (18,)
    train_loss: Normaliser
    valid_loss: Normaliser
    clip_t: jax.Array
    clip_value: jax.Array


def init_meta_params(key: jax.Array) -> dict:
    """Random theta with the reference tree (haiku VarianceScaling for the initial messages)."""
    ks = jax.random.split(key, 8)
    mlp = {}
    for i, (a, b) in enumerate(((MLP_IN, 32), (32, 32), (32, FROM_MLP + 2))):
        mlp[f"mlp/~/linear_{i}"] = c.linear_init(ks[i], a, b)
    return {
        "ffmod_params": mlp,
        # hk VarianceScaling(1.0, fan_in): truncated normal, std sqrt(1/n) / 0.8796 (its correction).
        "initial_from_lstm": c.truncated_normal(ks[3], (FROM_LSTM,), 1 / np.sqrt(FROM_LSTM) / 0.87962566),
        "initial_from_mlp": c.truncated_normal(ks[4], (FROM_MLP,), 1 / np.sqrt(FROM_MLP) / 0.87962566),
        "lstm_init_state": c.lstm_state_init(HIDDEN),
        "rnn_params": {"rnn/linear": c.linear_init(ks[5], 52 + HIDDEN, 4 * HIDDEN)},
        "rnn_to_ff_params": {"rnn_to_ff": c.linear_init(ks[6], HIDDEN, TO_FF)},
        "rnn_to_in_params": {"rnn_to_in": c.linear_init(ks[7], HIDDEN, FROM_LSTM)},
    }


def _norm_next(s: Normaliser, x, decay: float) -> Normaliser:
    mean = decay * s.mean + (1.0 - decay) * x
    return Normaliser(mean, decay * s.var + (1.0 - decay) * jnp.square(mean - x), s.updates + 1)


def _weight(s: Normaliser, x, decay: float = 0.9):
    corr = 1.0 / (1 - decay ** s.updates.astype(c.F32) + 1e-8)
    return jnp.clip((x - s.mean * corr) * jax.lax.rsqrt(s.var * corr + 1e-8), -5, 5)


def tensor_features(ms, rms, g, v, from_mlp, from_lstm, train_feat, valid_feat) -> jax.Array:
    """The 52 per-tensor LSTM inputs in sorted-key order (means over all elements and decays)."""
    cla = c.clip_log_abs
    f = {"from_lstm": from_lstm, "from_mlp": from_mlp}
    for name, x in (("ms", ms), ("v", v)):
        mean = jnp.mean(x)
        f[f"mean_{name}_mag"], f[f"mean_{name}_sign"] = cla(mean), jnp.sign(mean)
        f[f"var_{name}"] = cla(jnp.mean(jnp.square(x - mean)))
    mean_rms = jnp.mean(rms)
    f["mean_rms"], f["mean_sign"] = cla(mean_rms), jnp.sign(mean_rms)
    f["var_rms"] = cla(jnp.mean(jnp.square(rms - mean_rms)))
    f["norm_weight"] = cla(jnp.linalg.norm(v))
    f["g_norm"] = cla(jnp.linalg.norm(g))
    f["is_scalar"] = jnp.asarray(1.0 if v.ndim == 0 else -1.0)
    shape = np.log(np.asarray(list(v.shape) + [1] * (4 - v.ndim), np.float32)) - 1.0
    for j in range(4):
        f[f"shape_{j}"] = jnp.asarray(shape[j], c.F32)
    f["train_loss_feat"], f["valid_loss_feat"] = train_feat, valid_feat
    return jnp.concatenate([jnp.atleast_1d(f[k]).astype(c.F32) for k in sorted(f)])


@domain(meta_params=Keys(("ffmod_params", "lstm_init_state", "rnn_params", "rnn_to_ff_params",
                         "rnn_to_in_params")), num_steps=NUM_STEPS)
def rnn_mlp_lopt(meta_params: dict, *, num_steps: int):
    r"""RNN-MLP-LOpt; ``update(grads, state, params, loss=loss)``.

    Gradients are clipped to ``10x`` a running RMS; momentum and RMS accumulate at five
    decays. A per-tensor LSTM reads 52 statistics (including normalised train loss and
    messages from the MLP and from the other tensors) and sends 17 values to a 54-32-32-18
    per-parameter MLP whose first two outputs give
    :math:`\Delta p = -d\, e^{10^{-3} a}\, 10^{-3}` (no parameter scaling) and whose other
    16 are averaged back to the LSTM. `num_steps` is accepted but unused (only the step
    count enters, as sine features); it must still be a positive integer
    (:class:`~celo_bench.errors.HyperparameterError` otherwise).

    References:
      Metz et al., "Tasks, stability, architecture, and compute: Training more effective
      learned optimizers, and using them to train themselves", arXiv:2009.11243, 2020.
    """
    del num_steps
    theta = meta_params
    mlp = [theta["ffmod_params"][f"mlp/~/linear_{i}"] for i in range(3)]
    lstm_w = theta["rnn_params"]["rnn/linear"]
    to_ff, to_in = theta["rnn_to_ff_params"]["rnn_to_ff"], theta["rnn_to_in_params"]["rnn_to_in"]
    lstm0 = theta["lstm_init_state"]

    def init_fn(params):
        n = len(jax.tree_util.tree_leaves(params))

        def zeros(p):
            return jnp.zeros((len(DECAYS),) + p.shape, c.F32)

        norm0 = Normaliser(jnp.asarray(0.0, c.F32), jnp.asarray(0.0, c.F32), jnp.asarray(0, jnp.int32))
        return RNNMLPState(
            m=jax.tree_util.tree_map(zeros, params), rms=jax.tree_util.tree_map(zeros, params),
            iteration=jnp.asarray(0, jnp.int32),
            lstm=c.LSTMState(*(jnp.tile(jnp.asarray(lstm0[k]), (n, 1)) for k in ("hidden", "cell"))),
            from_mlp=jnp.tile(jnp.asarray(theta["initial_from_mlp"]), (n, 1)),
            from_lstm=jnp.asarray(theta["initial_from_lstm"]),
            train_loss=norm0, valid_loss=norm0,
            clip_t=jnp.asarray(1.0, c.F32), clip_value=jnp.asarray(0.01, c.F32),
        )

    def mlp_step(p, g, m, v, ff_in, sin_feat, n_tensors):
        flat = p.reshape(-1)
        k = len(DECAYS)
        m2, v2 = m.reshape(k, -1), v.reshape(k, -1)
        rsq = jax.lax.rsqrt(v2 + 1e-6)
        dense = jnp.concatenate([g.reshape(1, -1), flat[None], jnp.log(jnp.abs(flat) + 1e-8)[None],
                                 m2, v2, m2 * rsq, rsq])  # (23, n), sorted-key order
        dense = c.second_moment_normalize(dense, axis=1)
        const = jnp.concatenate([sin_feat, jnp.stack([
            jnp.log(float(n_tensors)) - 1.0, jnp.log(jnp.linalg.norm(flat) + 1e-8),
            jnp.log(float(flat.shape[0]))]), ff_in])  # same for every element of the tensor
        w0 = mlp[0]["w"]
        # Materialised so XLA does not fuse the feature computation into the matmul.
        dense = jax.lax.optimization_barrier(dense)
        h = jax.nn.relu(jnp.dot(w0[:N_DENSE].T, dense) + (const @ w0[N_DENSE:] + mlp[0]["b"])[:, None])
        h = jax.nn.relu(jnp.dot(mlp[1]["w"].T, h) + mlp[1]["b"][:, None])
        o = jnp.dot(mlp[2]["w"].T, h) + mlp[2]["b"][:, None]  # (18, n)
        step = (o[0] * jnp.exp(o[1] * 1e-3) * 1e-3).reshape(p.shape)
        return step, jnp.mean(o[2:], axis=1)

    def update_fn(grads, state, params=None, *, loss=None, **_):
        if loss is None or params is None:
            raise ValueError("rnn_mlp_lopt needs params and update(..., loss=loss)")
        train_loss = _norm_next(state.train_loss, loss, 0.9)
        train_feat = _weight(train_loss, loss)
        # The validation normaliser only moves on validation updates, which never happen
        # at test time, so this feature is constant (quirk kept). The Celo fork's
        # corrected_mean uses +1e-7 in the bias-correction denominator.
        valid_mean = state.valid_loss.mean / (1 - 0.95 ** state.valid_loss.updates.astype(c.F32) + 1e-7)
        valid_feat = _weight(train_loss, valid_mean)

        leaves, treedef = jax.tree_util.tree_flatten(params)
        n = len(leaves)
        bound = state.clip_value / (1 - 0.99**state.clip_t) * 10.0
        g_l = [jnp.clip(g, -bound, bound) for g in treedef.flatten_up_to(grads)]
        avg_sq = sum(jnp.mean(jnp.square(g)) for g in g_l) / n
        clip_value = state.clip_value * 0.99 + jnp.sqrt(1e-8 + avg_sq) * (1.0 - 0.99)

        m_l, v_l = [], []
        for g, m, v in zip(g_l, treedef.flatten_up_to(state.m), treedef.flatten_up_to(state.rms), strict=True):
            d = c.as_decays(DECAYS, g.ndim)
            m_l.append(c.ema(m, g[None], d))
            v_l.append(c.ema(v, (g * g)[None], jnp.clip(d, 0, 1)))
        x = jnp.stack([
            tensor_features(m, v, g, p, state.from_mlp[i], state.from_lstm, train_feat, valid_feat)
            for i, (m, v, g, p) in enumerate(zip(m_l, v_l, g_l, leaves, strict=True))
        ])
        h, lstm = c.lstm_step(lstm_w, x, state.lstm)
        from_lstm = jnp.mean(c.linear(to_in, h), axis=0)
        ff_in = c.linear(to_ff, h)
        sin_feat = jnp.sin(state.iteration / (jnp.asarray(SIN_TIMESCALES, c.F32) * jnp.pi))
        updates, from_mlp = [], []
        for i, (p, g, m, v) in enumerate(zip(leaves, g_l, m_l, v_l, strict=True)):
            step, msg = mlp_step(p, g, m, v, ff_in[i], sin_feat, n)
            updates.append(-step)
            from_mlp.append(msg)
        new = RNNMLPState(
            treedef.unflatten(m_l), treedef.unflatten(v_l), state.iteration + 1, lstm,
            jnp.stack(from_mlp), from_lstm, train_loss, state.valid_loss,
            state.clip_t + 1, clip_value,
        )
        return treedef.unflatten(updates), new

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


register("rnn_mlp_lopt", rnn_mlp_lopt, learned=True, init_meta_params=init_meta_params)
