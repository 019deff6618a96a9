"""NN-Adam (Metz et al. 2022): per-tensor Adam hyper-parameters steered by an LSTM.

Meta-parameters (10 leaves, 21,896 values)::

    lstm_init_state/{hidden, cell} (1, 64)
    per_layer_{beta1, beta2, epsilon, lr}   scalars in "scaled" space (0.1 log ...)
    rnn_params/rnn/linear (83, 256)         LSTM on 19 per-tensor features
    rnn_to_controls_params/rnn_to_controls  64 -> 4, zero-initialised weights

References:
  Metz, Freeman, Harrison, Maheswaranathan & Sohl-Dickstein, "Practical tradeoffs between
  memory, compute, and performance in learned optimizers", CoLLAs 2022, arXiv:2203.11860.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from celo_bench.optimizers._domain import NUM_STEPS, Keys, domain
from celo_bench.optimizers._registry import register
from celo_bench.optimizers.learned import _common as c

HIDDEN = 64
N_FEATURES = 19
OUTPUT_SCALE = 0.01


# (encode, decode) pairs: scaled space <-> hyper-parameter value.
def _enc_log(x):
    return 0.1 * jnp.log(x)


def _dec_lr(x):
    return jnp.clip(jnp.exp(10.0 * x), 1e-8, 1e3)


def _dec_eps(x):
    return jnp.clip(jnp.exp(10.0 * x), 1e-11, 1e4)


def _enc_beta(x):
    return 0.1 * jnp.log(1 - x)


def _dec_beta(x):
    return 1 - jnp.exp(jnp.clip(10 * x, -10, 0))


CODECS = {"lr": (_enc_log, _dec_lr), "beta1": (_enc_beta, _dec_beta),
          "beta2": (_enc_beta, _dec_beta), "epsilon": (_enc_log, _dec_eps)}
CONTROL_ORDER = ("lr", "beta1", "beta2", "epsilon")  # columns of rnn_to_controls


class NNAdamState(NamedTuple):
    m: Any
    v: Any
    hparams: dict  # name -> (n_tensors,) scaled values
    lstm: c.LSTMState


def init_meta_params(key: jax.Array, *, lr: float = 1e-4, beta1: float = 0.9,
                     beta2: float = 0.999, epsilon: float = 1e-8) -> dict:
    """Random LSTM, zero control head, scaled initial hyper-parameters (reference defaults)."""
    k_rnn, _ = jax.random.split(key)
    init = {"lr": lr, "beta1": beta1, "beta2": beta2, "epsilon": epsilon}
    theta = {
        "lstm_init_state": c.lstm_state_init(HIDDEN),
        "rnn_params": {"rnn/linear": c.linear_init(k_rnn, N_FEATURES + HIDDEN, 4 * HIDDEN)},
        "rnn_to_controls_params": {"rnn_to_controls": c.linear_init(key, HIDDEN, 4, zero_w=True)},
    }
    for name, value in init.items():
        theta[f"per_layer_{name}"] = CODECS[name][0](jnp.asarray(value, c.F32))
    return dict(sorted(theta.items()))


def tensor_features(p, g, m, v, hp: dict) -> jax.Array:
    """The 19 LSTM inputs of one tensor, in the reference's sorted-key order."""

    def cla(x):
        return c.clip_log_abs(x, mult=0.5)

    f = {}
    for name, x in (("m", m), ("p", p), ("g", g)):
        mean = jnp.mean(x)
        f[f"mean_{name}_mag"], f[f"mean_{name}_sign"] = cla(mean), jnp.sign(mean)
        f[f"var_{name}"] = cla(jnp.mean(jnp.square(x - mean)))
    mean_rms = jnp.mean(v)
    f["mean_rms"], f["mean_sign"] = cla(mean_rms), jnp.sign(mean_rms)
    f["var_rms"] = cla(jnp.mean(jnp.square(v - mean_rms)))
    f["mean_gabs_mag"] = cla(jnp.mean(jnp.abs(g)))
    f["is_scalar"] = jnp.asarray(1.0 if p.ndim == 0 else -1.0)
    f["is_bias"] = jnp.asarray(1.0 if p.ndim == 1 else -1.0)
    for name in CONTROL_ORDER:
        f[name] = jnp.clip(hp[name], -5, 5) * 0.2
    return jnp.stack([f[k] for k in sorted(f)]).astype(c.F32)


@domain(meta_params=Keys(("lstm_init_state", "rnn_params", "rnn_to_controls_params")),
        num_steps=NUM_STEPS)
def nn_adam(meta_params: dict, *, num_steps: int):
    r"""NN-Adam; ``update(grads, state, params)`` (the loss is not used).

    With per-tensor :math:`\eta, \beta_1, \beta_2, \epsilon` decoded from scaled state,
    no bias correction and the reference's modified Adam step:

    .. math::
      m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
      \Delta p = -\eta (1 + \epsilon) \frac{m}{\epsilon + \sqrt{v + 10^{-10}}}

    Then an LSTM over 19 per-tensor statistics adds ``0.01 * Linear(h)`` to the scaled
    hyper-parameters, which take effect at the next step (clamped by a decode/encode round
    trip in float32). `num_steps` is required by the reference but unused; it must still be a
    positive integer (:class:`~celo_bench.errors.HyperparameterError` otherwise).

    References:
      Metz et al., "Practical tradeoffs between memory, compute, and performance in learned
      optimizers" (NN-Adam), CoLLAs 2022, arXiv:2203.11860.
    """
    del num_steps
    theta = meta_params
    lstm_w = theta["rnn_params"]["rnn/linear"]
    head = theta["rnn_to_controls_params"]["rnn_to_controls"]
    lstm0 = theta["lstm_init_state"]

    def init_fn(params):
        n = len(jax.tree_util.tree_leaves(params))
        zeros = jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, c.F32), params)
        return NNAdamState(
            m=zeros, v=zeros,
            hparams={k: jnp.full((n,), theta[f"per_layer_{k}"], c.F32) for k in CONTROL_ORDER},
            lstm=c.LSTMState(*(jnp.tile(jnp.asarray(lstm0[k]), (n, 1)) for k in ("hidden", "cell"))),
        )

    def update_fn(grads, state, params=None, **_):
        if params is None:
            raise ValueError("nn_adam needs params")
        leaves, treedef = jax.tree_util.tree_flatten(params)
        g_l = [jnp.clip(g, -1000.0, 1000.0) for g in treedef.flatten_up_to(grads)]
        m_l, v_l = treedef.flatten_up_to(state.m), treedef.flatten_up_to(state.v)
        dec = {k: CODECS[k][1](state.hparams[k]) for k in CONTROL_ORDER}
        out_u, out_m, out_v, feats = [], [], [], []
        for i, (p, g, m, v) in enumerate(zip(leaves, g_l, m_l, v_l, strict=True)):
            b1, b2, lr, eps = dec["beta1"][i], dec["beta2"][i], dec["lr"][i], dec["epsilon"][i]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * (g * g)
            out_u.append(-((lr * (1.0 + eps)) * 1.0 / (eps + jnp.sqrt(v + 1e-10)) * m))
            feats.append(tensor_features(p, g, m, v, {k: state.hparams[k][i] for k in CONTROL_ORDER}))
            out_m.append(m)
            out_v.append(v)
        h, lstm = c.lstm_step(lstm_w, jnp.stack(feats), state.lstm)
        deltas = c.linear(head, h) * OUTPUT_SCALE  # (n, 4): lr, beta1, beta2, epsilon
        hparams = {}
        for j, k in enumerate(CONTROL_ORDER):
            enc, dec_fn = CODECS[k]
            # Clamp by a decode/encode round trip (lossy in float32, like the reference).
            hparams[k] = enc(dec_fn(state.hparams[k] + deltas[:, j]))
        new = NNAdamState(treedef.unflatten(out_m), treedef.unflatten(out_v), hparams, lstm)
        return treedef.unflatten(out_u), new

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


register("nn_adam", nn_adam, learned=True, init_meta_params=init_meta_params)
