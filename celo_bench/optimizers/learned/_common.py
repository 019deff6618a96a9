"""Building blocks shared by the learned optimizers (Celo, VeLO and Metz et al.'s designs).

Everything here is plain JAX on explicit parameter pytrees (no haiku): meta-parameters
are nested dicts whose key paths match the published ``theta.state`` files, so a
checkpoint loads by name and a meta-training loop can differentiate through them.

Layout choice (not the reference's, on purpose): accumulators keep the decay index as a
**leading** axis, ``(K,) + p.shape``, instead of the reference's trailing one. Per decay
the data is then contiguous, which is what CPU vector units want; the numbers are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

F32 = jnp.float32


# --------------------------------------------------------------------------- init helpers
def truncated_normal(key: jax.Array, shape: Sequence[int], stddev: float) -> jax.Array:
    """haiku's ``TruncatedNormal``: a standard normal cut at +-2, times `stddev` (no rescale)."""
    return jax.random.truncated_normal(key, -2.0, 2.0, tuple(shape), F32) * stddev


def linear_init(key: jax.Array, fan_in: int, fan_out: int, *, zero_w: bool = False) -> dict:
    """``hk.Linear`` parameters ``{"b", "w"}``: w ~ TruncNormal(1/sqrt(fan_in)), b = 0."""
    w = jnp.zeros((fan_in, fan_out), F32) if zero_w else truncated_normal(
        key, (fan_in, fan_out), 1.0 / np.sqrt(fan_in)
    )
    return {"b": jnp.zeros((fan_out,), F32), "w": w}


def linear(params: dict, x: jax.Array) -> jax.Array:
    """``hk.Linear``: ``x @ w + b`` (dot first, then the bias, as haiku adds them)."""
    return jnp.dot(x, params["w"]) + params["b"]


# --------------------------------------------------------------------------- LSTM
class LSTMState(NamedTuple):
    hidden: jax.Array
    cell: jax.Array


def lstm_state_init(hidden_size: int) -> dict:
    """The learned initial state ``lstm_init_state``: zeros of shape (1, H) (haiku's init)."""
    return {"hidden": jnp.zeros((1, hidden_size), F32), "cell": jnp.zeros((1, hidden_size), F32)}


def lstm_step(params: dict, x: jax.Array, state: LSTMState) -> tuple[jax.Array, LSTMState]:
    """One ``hk.LSTM`` step: gates (i, g, f, o) from ``[x, h] @ W + b``, forget bias +1."""
    gated = linear(params, jnp.concatenate([x, state.hidden], axis=-1))
    i, g, f, o = jnp.split(gated, 4, axis=-1)
    f = jax.nn.sigmoid(f + 1)
    c = f * state.cell + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h, LSTMState(h, c)


def mixed_lstm(rnn: dict, x: jax.Array, state: LSTMState) -> tuple[jax.Array, LSTMState]:
    """Celo/VeLO's mixing layers then the LSTM, over a ``(n_tensors, F)`` stack.

    Quirk kept on purpose: the first mixing layer ``rnn["linear"]`` is created by the
    reference but its output is overwritten (a VeLO bug); its weights exist in every
    checkpoint and are loaded, but they are never used here.
    """
    v = jnp.max(jax.nn.relu(linear(rnn["linear_1"], x)), axis=0, keepdims=True)
    x = linear(rnn["linear_2"], x) + v
    return lstm_step(rnn["rnn/linear"], x, state)


def mixed_lstm_init(key: jax.Array, n_in: int, hidden: int) -> dict:
    """Meta-parameters of :func:`mixed_lstm`.

    haiku names the LSTM's inner layer ``"rnn/linear"``: one dict key containing a slash,
    exactly as it is stored in the checkpoints.
    """
    k0, k1, k2, k3 = jax.random.split(key, 4)
    return {
        "linear": linear_init(k0, n_in, hidden),
        "linear_1": linear_init(k1, n_in, hidden),
        "linear_2": linear_init(k2, n_in, hidden),
        "rnn/linear": linear_init(k3, 2 * hidden, 4 * hidden),  # input: mixed x (H) + h (H)
    }


# --------------------------------------------------------------------------- normaliser etc.
def second_moment_normalize(x: jax.Array, axis) -> jax.Array:
    """``N(x) = x * rsqrt(1e-5 + mean(x^2))`` over the tensor axes `axis`."""
    return x * jax.lax.rsqrt(1e-5 + jnp.mean(jnp.square(x), axis=axis, keepdims=True))


def safe_rsqrt(x: jax.Array) -> jax.Array:
    """``srsqrt(x) = rsqrt(max(x, 1e-9))``."""
    return jax.lax.rsqrt(jnp.maximum(x, 1e-9))


def clip_log_abs(x: jax.Array, scale: float = 1.0, mult: float = 1.0) -> jax.Array:
    """``mult * clip(log(1e-8 + |scale x|), -5, 5)`` (VeLO/NNAdam use mult 0.5)."""
    return jnp.clip(jnp.log(1e-8 + jnp.abs(x * scale)), -5, 5) * mult


def factored_dims(shape: Sequence[int]) -> tuple[int, int] | None:
    """``(d1, d0)``: the second-largest and largest axes (numpy argsort ties), or None if ndim < 2."""
    if len(shape) < 2:
        return None
    order = np.argsort(shape)
    return int(order[-2]), int(order[-1])


def as_decays(decays: Sequence[float] | jax.Array, ndim: int) -> jax.Array:
    """Float32 decays shaped ``(K, 1, ..., 1)`` to broadcast over a leading decay axis.

    Note: ``1 - beta`` must be computed in float32 from the rounded beta,
    which is what happens when callers write ``1 - as_decays(...)``.
    """
    d = jnp.asarray(decays, F32)
    return d.reshape(d.shape + (1,) * ndim)


# --------------------------------------------------------------------------- accumulators
def ema(acc: jax.Array, x: jax.Array, beta: jax.Array) -> jax.Array:
    """``acc <- beta acc + (1 - beta) x`` with ``x`` broadcast over the decay axis."""
    return beta * acc + (1 - beta) * x


class Factored(NamedTuple):
    """Adafactor-style accumulator of one leaf, kept with singleton axes (keepdims layout).

    Factored case: ``row`` is ``(K,) + shape`` with axis d0 reduced to 1 (the reference's
    ``v_row``), ``col`` the same with d1 reduced (``v_col``); ``diag`` is ``(K, 0)``.
    Non-factored case: ``diag`` is ``(K,) + shape`` and ``row``/``col`` are ``(K, 0)``.
    """

    row: jax.Array
    col: jax.Array
    diag: jax.Array


def factored_init(p: jax.Array, k: int) -> Factored:
    dims = factored_dims(p.shape)
    empty = jnp.zeros((k, 0), F32)
    if dims is None:
        return Factored(empty, empty, jnp.zeros((k,) + p.shape, F32))
    d1, d0 = dims
    row = [1 if a == d0 else n for a, n in enumerate(p.shape)]
    col = [1 if a == d1 else n for a, n in enumerate(p.shape)]
    return Factored(jnp.zeros((k, *row), F32), jnp.zeros((k, *col), F32), empty)


def factored_update(acc: Factored, g: jax.Array, beta: jax.Array):
    """One step of ``factored_rolling``, eps 1e-30, beta clipped to [0, 1].

    Returns ``(new_acc, row_factor, col_factor)``; for the non-factored case the
    "factors" are ``(srsqrt(v + 1e-9), None)``. ``fac_g = g * row_factor * col_factor``.
    """
    beta = jnp.clip(beta, 0.0, 1.0)
    gsq = g * g + 1e-30
    dims = factored_dims(g.shape)
    if dims is None:
        diag = ema(acc.diag, gsq, beta)
        return acc._replace(diag=diag), safe_rsqrt(diag + 1e-9), None
    d1, d0 = dims
    row = ema(acc.row, jnp.mean(gsq, axis=d0, keepdims=True), beta)
    col = ema(acc.col, jnp.mean(gsq, axis=d1, keepdims=True), beta)
    # +1 because of the leading decay axis.
    row_factor = safe_rsqrt(row / (jnp.mean(row, axis=1 + d1, keepdims=True) + 1e-9))
    col_factor = safe_rsqrt(col)
    return Factored(row, col, acc.diag), row_factor, col_factor


# --------------------------------------------------------------------------- global features
TANH_TIMESCALES = (0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1)


def fraction_embed(iteration: jax.Array, num_steps: int) -> jax.Array:
    """Nine ``tanh(10 (t/T - tau))`` features of training progress (called fraction_left)."""
    frac = iteration / jnp.asarray(num_steps, F32)
    return jnp.tanh((frac - jnp.asarray(TANH_TIMESCALES, F32)) * 10)


class LossBuffer(NamedTuple):
    """``BufferLossAccumulators`` state; ``decays`` depend only on T."""

    means: jax.Array
    running_min: jax.Array
    iteration: jax.Array
    decays: jax.Array


def loss_buffer_init(num_steps: int) -> LossBuffer:
    halflife = jnp.logspace(1, jnp.log10(num_steps), 10)
    return LossBuffer(
        means=jnp.zeros((10,), F32),
        running_min=999999999999.0 * jnp.ones((10,), F32),
        iteration=jnp.asarray(0, jnp.int32),
        decays=jnp.exp(-1.0 / halflife).astype(F32),
    )


def loss_buffer_update(buf: LossBuffer, loss: jax.Array) -> LossBuffer:
    """Bias correction uses exponent ``it + 1`` here (and ``it`` in the features: a quirk)."""
    d = buf.decays
    approx_max = jnp.max(buf.means / (1 - d ** (buf.iteration + 1)))
    approx_max = jnp.where(buf.iteration == 0, loss, approx_max)
    loss = jnp.minimum(jnp.abs(approx_max) * 2, loss)  # clips from above only
    means = buf.means * d + loss * (1.0 - d)
    cor = means / (1 - d ** (buf.iteration + 1))
    return LossBuffer(means, jnp.minimum(buf.running_min, cor), buf.iteration + 1, d)


def loss_buffer_features(buf: LossBuffer) -> jax.Array:
    """Nine clipped progress-of-loss features; forced to 0 while ``it <= 2``."""
    cor = buf.means / (1 - buf.decays ** buf.iteration)
    rmin = buf.running_min[:-1]
    # "approx max" is the next-longer timescale's mean, not a true max (reference quirk).
    feat = jnp.clip((cor[:-1] - rmin) / jnp.maximum(1e-8, cor[1:] - rmin) - 1.0, -1, 1)
    return jnp.where(buf.iteration <= 2, feat * 0, feat)
