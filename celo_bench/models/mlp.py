"""Image MLPs: classifiers (optionally with LayerNorm) and MLP autoencoders.

Weights use haiku's default init (:data:`~celo_bench.models._init.HAIKU_DEFAULT`: normal
with stddev 1/sqrt(fan_in) truncated at 2 stddev) and zero biases, like learned_optimization's
``hk.nets.MLP``; LayerNorm uses haiku's epsilon (1e-5) and sits between Linear and activation
(``_MLPImageTaskNorm``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from celo_bench.models._init import HAIKU_DEFAULT, HAIKU_LN_EPS
from celo_bench.models._losses import images_to_float, softmax_cross_entropy
from celo_bench.task import Model

ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh, "gelu": nn.gelu, "sigmoid": nn.sigmoid}


class MLP(nn.Module):
    hidden: Sequence[int]
    out: int
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = nn.Dense(width, kernel_init=HAIKU_DEFAULT)(x)
            if self.layer_norm:
                x = nn.LayerNorm(epsilon=HAIKU_LN_EPS)(x)
            x = act(x)
        return nn.Dense(self.out, kernel_init=HAIKU_DEFAULT)(x)


def _flat_images(batch) -> jax.Array:
    x = images_to_float(batch["image"])
    return x.reshape(x.shape[0], -1)


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise TypeError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")


def build_classifier(
    *,
    info: Mapping[str, Any],
    batch_size: int,
    hidden: Sequence[int],
    activation: str = "relu",
    layer_norm: bool = False,
) -> Model:
    """Flattened image -> hidden layers -> ``num_classes`` logits; mean cross-entropy."""
    _check_activation(activation)
    net = MLP(tuple(hidden), int(info["num_classes"]), activation, layer_norm)
    in_dim = int(jnp.prod(jnp.asarray(info["image_shape"])))

    def init(key):
        return net.init(key, jnp.zeros((1, in_dim)))["params"], {}

    def loss(params, state, key, batch):
        logits = net.apply({"params": params}, _flat_images(batch))
        return softmax_cross_entropy(logits, batch["label"]), state

    return Model(init=init, loss=loss)


def build_autoencoder(
    *, info: Mapping[str, Any], batch_size: int, hidden: Sequence[int], activation: str = "relu"
) -> Model:
    """MLP autoencoder: reconstruct the flattened image through sigmoid(output).

    Loss: squared error, mean over pixels per example, then mean over the batch.
    """
    _check_activation(activation)
    in_dim = int(jnp.prod(jnp.asarray(info["image_shape"])))
    net = MLP(tuple(hidden), in_dim, activation)

    def init(key):
        return net.init(key, jnp.zeros((1, in_dim)))["params"], {}

    def loss(params, state, key, batch):
        x = _flat_images(batch)
        recon = jax.nn.sigmoid(net.apply({"params": params}, x))
        return jnp.mean(jnp.mean((recon - x) ** 2, axis=-1)), state

    return Model(init=init, loss=loss)
