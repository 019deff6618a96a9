"""Decoder-only transformer LMs: learned_optimization's ``TransformerLM_LM1B_*`` tasks.

The reference (``tasks/transformer.py``, a fork of haiku's example transformer) is small
and unusual, and the details matter for the optimisation problem, so they are kept:

- token embedding ``Embed(vocab, d_model)`` (init truncated normal, stddev 1) and **no
  position embedding** (order only enters through the causal mask);
- per layer, pre-LayerNorm: ``h += dropout(Attn(LN(h)))``, ``h += dropout(MLP(LN(h)))``;
  attention has ``heads`` heads of **key size 32 regardless of d_model** (q, k, v:
  ``Dense(heads*32)``, output ``Dense(d_model)``), logits scaled by 1/sqrt(32), masked by
  causal x padding (keys whose input token is 0) with -1e30; MLP ``d -> 4d -> gelu -> d``;
- every attention and MLP kernel uses ``VarianceScaling(2 / layers)`` (fan_in, truncated
  normal), biases zero; final LayerNorm and ``Dense(vocab)`` with haiku's default init;
- loss: token cross-entropy averaged over positions whose input token is not padding.

Dropout (``dropout > 0``) uses the per-step key the engine passes to the loss, in
training and in evaluation alike (the reference calls the model with ``is_training=True``).

Parameters, with ``V`` = vocab, ``d`` = d_model, ``a = heads * 32``, ``L`` = layers::

    2*V*d + V  +  L * (4*d + 3*(d*a + a) + a*d + d + 8*d*d + 5*d)  +  2*d
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from celo_bench.models._init import HAIKU_DEFAULT, HAIKU_EMBED, HAIKU_LN_EPS, haiku_variance_scaling
from celo_bench.models._losses import lm_cross_entropy, lm_obs_target
from celo_bench.task import Model

KEY_SIZE = 32
"""Per-head key/value size, fixed in the reference independently of d_model."""


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention with haiku's projection layout (hand-written: key size is
    fixed at 32 per head, which flax's attention cannot express with qkv = heads * 32 != d)."""

    heads: int
    init_scale: float

    @nn.compact
    def __call__(self, x, pad_mask):
        b, t, d = x.shape
        w_init = haiku_variance_scaling(self.init_scale)

        def project(name):
            y = nn.Dense(self.heads * KEY_SIZE, kernel_init=w_init, name=name)(x)
            return y.reshape(b, t, self.heads, KEY_SIZE)

        q, k, v = project("query"), project("key"), project("value")
        logits = jnp.einsum("bthd,bThd->bhtT", q, k) / np.sqrt(KEY_SIZE).astype(np.float32)
        causal = jnp.tril(jnp.ones((t, t), dtype=bool))
        mask = causal[None, None] & pad_mask[:, None, None, :]
        weights = jax.nn.softmax(jnp.where(mask, logits, -1e30))
        out = jnp.einsum("bhtT,bThd->bthd", weights, v).reshape(b, t, self.heads * KEY_SIZE)
        return nn.Dense(d, kernel_init=w_init, name="out")(out)


class TransformerLM(nn.Module):
    vocab_size: int
    d_model: int
    heads: int
    layers: int
    dropout: float

    @nn.compact
    def __call__(self, obs, key):
        pad_mask = obs != 0
        h = nn.Embed(self.vocab_size, self.d_model, embedding_init=HAIKU_EMBED)(obs)
        init_scale = 2.0 / self.layers
        keys = jax.random.split(key, 2 * self.layers) if self.dropout > 0 else None

        def drop(x, i):
            if self.dropout <= 0:
                return x
            return nn.Dropout(self.dropout, deterministic=False)(x, rng=keys[i])

        for i in range(self.layers):
            a = nn.LayerNorm(epsilon=HAIKU_LN_EPS, name=f"h{i}_ln_1")(h)
            a = CausalSelfAttention(self.heads, init_scale, name=f"h{i}_attn")(a, pad_mask)
            h = h + drop(a, 2 * i)
            m = nn.LayerNorm(epsilon=HAIKU_LN_EPS, name=f"h{i}_ln_2")(h)
            w_init = haiku_variance_scaling(init_scale)
            m = nn.Dense(4 * self.d_model, kernel_init=w_init, name=f"h{i}_mlp_1")(m)
            m = nn.Dense(self.d_model, kernel_init=w_init, name=f"h{i}_mlp_2")(jax.nn.gelu(m))
            h = h + drop(m, 2 * i + 1)
        h = nn.LayerNorm(epsilon=HAIKU_LN_EPS, name="h_f")(h)
        return nn.Dense(self.vocab_size, kernel_init=HAIKU_DEFAULT, name="logits")(h)


def build_transformer_lm(
    *,
    info: Mapping[str, Any],
    batch_size: int,
    d_model: int,
    heads: int,
    layers: int,
    dropout: float = 0.0,
) -> Model:
    """Decoder LM over ``tokens`` (B, seq_len + 1): inputs ``t[:, :-1]``, targets ``t[:, 1:]``.

    Args:
      info: dataset facts (``vocab_size``, ``seq_len``).
      d_model: embedding width; heads: attention heads (key size 32 each); layers: blocks.
      dropout: rate after attention and MLP (inverted dropout, key from the loss call).
    """
    if not 0.0 <= dropout < 1.0:
        raise TypeError(f"dropout must be in [0, 1), got {dropout}")
    net = TransformerLM(int(info["vocab_size"]), int(d_model), int(heads), int(layers), float(dropout))
    seq_len = int(info.get("seq_len", 8))

    def init(key):
        obs = jnp.ones((1, seq_len), jnp.int32)
        return net.init(key, obs, jax.random.PRNGKey(0))["params"], {}

    def loss(params, state, key, batch):
        obs, target = lm_obs_target(batch)
        logits = net.apply({"params": params}, obs, key)
        return lm_cross_entropy(logits, obs, target), state

    return Model(init=init, loss=loss)
