"""Teacher-forced LSTM LMs: learned_optimization's ``RNNLM_*_LSTM*_Embed*`` tasks.

Architecture (``tasks/fixed/rnn_lm.py::TeacherForcedRNNLM`` with ``hk.LSTM``):

- ``Embed(vocab, embed)`` (init truncated normal, stddev 1);
- an LSTM of ``hidden`` units unrolled over the inputs from a **learnable initial state**
  (two zero-initialised parameters, hidden and cell, of shape (1, hidden), tiled over the
  batch);
- ``Linear(vocab)`` on every output; token cross-entropy averaged over positions whose
  input token is not padding (id 0).

The LSTM cell is haiku's: one ``Linear(4 * hidden)`` on ``concat([x, h])`` (default haiku
init, fan_in = embed + hidden, zero bias), gates split as (i, g, f, o), and a forget-gate
bias of +1 added in the update::

    c' = sigmoid(f + 1) * c + sigmoid(i) * tanh(g),   h' = sigmoid(o) * tanh(c')

It is written out here (not ``flax.linen.LSTMCell``) because flax's cell uses separate
input/hidden kernels with orthogonal recurrent init and no +1 forget bias, which would be a
different task. Parameters, with ``V`` vocab, ``E`` embed, ``H`` hidden::

    V*E  +  (E + H) * 4H + 4H  +  2H  +  H*V + V
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from celo_bench.models._init import HAIKU_DEFAULT, HAIKU_EMBED
from celo_bench.models._losses import lm_cross_entropy, lm_obs_target
from celo_bench.task import Model


class LSTMLM(nn.Module):
    vocab_size: int
    embed: int
    hidden: int

    @nn.compact
    def __call__(self, obs):
        b = obs.shape[0]
        x = nn.Embed(self.vocab_size, self.embed, embedding_init=HAIKU_EMBED)(obs)
        h0 = self.param("initial_state_hidden", nn.initializers.zeros, (1, self.hidden))
        c0 = self.param("initial_state_cell", nn.initializers.zeros, (1, self.hidden))
        # hk.LSTM's single Linear(4H) on concat([x, h]), as explicit parameters so the
        # recurrence can be a plain lax.scan.
        w = self.param("lstm_kernel", HAIKU_DEFAULT, (self.embed + self.hidden, 4 * self.hidden))
        bias = self.param("lstm_bias", nn.initializers.zeros, (4 * self.hidden,))

        def step(carry, xt):
            h, c = carry
            z = jnp.concatenate([xt, h], axis=-1) @ w + bias
            i, g, f, o = jnp.split(z, 4, axis=-1)
            c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        carry = (jnp.tile(h0, (b, 1)), jnp.tile(c0, (b, 1)))
        _, out = jax.lax.scan(step, carry, jnp.swapaxes(x, 0, 1))
        out = jnp.swapaxes(out, 0, 1)  # (B, T, H)
        return nn.Dense(self.vocab_size, kernel_init=HAIKU_DEFAULT, name="logits")(out)


def build_lstm_lm(
    *,
    info: Mapping[str, Any],
    batch_size: int,
    hidden: int = 256,
    embed: int = 128,
) -> Model:
    """LSTM LM over ``tokens`` (B, seq_len + 1): inputs ``t[:, :-1]``, targets ``t[:, 1:]``.

    Args:
      info: dataset facts (``vocab_size``, ``seq_len``).
      hidden: LSTM units; embed: embedding width.
    """
    net = LSTMLM(int(info["vocab_size"]), int(embed), int(hidden))
    seq_len = int(info.get("seq_len", 32))

    def init(key):
        return net.init(key, jnp.ones((1, seq_len), jnp.int32))["params"], {}

    def loss(params, state, key, batch):
        obs, target = lm_obs_target(batch)
        logits = net.apply({"params": params}, obs)
        return lm_cross_entropy(logits, obs, target), state

    return Model(init=init, loss=loss)
