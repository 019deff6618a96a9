"""Vision Transformers: learned_optimization's ``VIT_*`` tasks (``tasks/fixed/vit.py``).

learned_optimization builds these with ``vision_transformer.vit_jax.models_vit
.VisionTransformer`` (a flax model); this module rebuilds that architecture:

1. patch embedding: a ``P x P`` convolution with stride ``P`` (VALID) to ``hidden``
   channels (flax default init: lecun normal, zero bias), flattened to ``N = (H/P)(W/P)``
   tokens (4 for 32x32 images and P = 16);
2. a learned class token (init 0) prepended, learned position embeddings
   (``(1, N + 1, hidden)``, init normal(0.02)) added;
3. ``layers`` pre-LayerNorm encoder blocks: ``x + MHA(LN(x))`` (xavier-uniform q/k/v/out
   kernels, zero biases), then ``x + MLP(LN(x))`` (Dense(mlp) -> gelu -> Dense(hidden),
   xavier-uniform kernels, biases normal(1e-6));
4. a final LayerNorm, the class token's output (``classifier = "token"``) and a zero-
   initialised ``Dense(num_classes)`` head, so the initial loss is exactly ln(C).

Both paper configs have no dropout (rates 0), so none is applied. LayerNorm epsilon is
flax's default 1e-6, as in ``models_vit``. Parameters, with ``d`` = hidden, ``m`` = mlp,
``L`` = layers, ``N`` tokens, ``K`` classes::

    P*P*C*d + d  +  d  +  (N+1)*d  +  L * (4*(d*d + d) + 2*d*m + m + d + 4*d)  +  2*d  +  d*K + K
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax.nn import initializers

from celo_bench.models._losses import images_to_float, softmax_cross_entropy
from celo_bench.task import Model

CONFIGS: dict[str, dict[str, int]] = {
    # learned_optimization's wide16_config / tall16_config (ViT-S/16 variants).
    "wide16": {"patch": 16, "hidden": 384, "mlp": 1536, "heads": 6, "layers": 6},
    "tall16": {"patch": 16, "hidden": 128, "mlp": 512, "heads": 4, "layers": 10},
}


class EncoderBlock(nn.Module):
    mlp: int
    heads: int

    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm()(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.heads, kernel_init=initializers.xavier_uniform()
        )(y, y)
        x = x + y
        y = nn.LayerNorm()(x)
        dense = {"kernel_init": initializers.xavier_uniform(), "bias_init": initializers.normal(1e-6)}
        y = nn.Dense(self.mlp, **dense)(y)
        y = nn.gelu(y)
        y = nn.Dense(x.shape[-1], **dense)(y)
        return x + y


class VisionTransformer(nn.Module):
    num_classes: int
    patch: int
    hidden: int
    mlp: int
    heads: int
    layers: int

    @nn.compact
    def __call__(self, images):
        p = self.patch
        n, height, width, chans = images.shape
        h, w, c = height // p, width // p, self.hidden
        # The reference's P x P stride-P VALID convolution, written as patches @ kernel: the
        # same function and parameters, but its gradient stays fast inside lax.scan on CPU
        # (XLA's CPU convolution gradients do not; see celo_bench.models.conv).
        kernel = self.param("embedding_kernel", initializers.lecun_normal(), (p, p, chans, c))
        bias = self.param("embedding_bias", initializers.zeros, (c,))
        patches = images.reshape(n, h, p, w, p, chans).transpose(0, 1, 3, 2, 4, 5)
        x = patches.reshape(n, h * w, p * p * chans) @ kernel.reshape(p * p * chans, c) + bias
        cls = self.param("cls", initializers.zeros, (1, 1, c))
        x = jnp.concatenate([jnp.tile(cls, (n, 1, 1)), x], axis=1)
        pos = self.param("pos_embedding", initializers.normal(0.02), (1, x.shape[1], c))
        x = x + pos
        for i in range(self.layers):
            x = EncoderBlock(self.mlp, self.heads, name=f"encoderblock_{i}")(x)
        x = nn.LayerNorm(name="encoder_norm")(x)
        return nn.Dense(self.num_classes, kernel_init=initializers.zeros, name="head")(x[:, 0])


def build_vit(
    *,
    info: Mapping[str, Any],
    batch_size: int,
    config: str | None = None,
    patch: int | None = None,
    hidden: int | None = None,
    mlp: int | None = None,
    heads: int | None = None,
    layers: int | None = None,
) -> Model:
    """A ViT classifier; ``config`` names a paper config, explicit sizes override it.

    Args:
      info: dataset facts (``num_classes``, ``image_shape``); H and W must be multiples of
        the patch size.
      config: ``wide16`` or ``tall16`` (see :data:`CONFIGS`), or None to give every size.
    """
    if config is not None and config not in CONFIGS:
        raise TypeError(f"config must be one of {sorted(CONFIGS)}, got {config!r}")
    sizes = dict(CONFIGS[config]) if config else {}
    given = {"patch": patch, "hidden": hidden, "mlp": mlp, "heads": heads, "layers": layers}
    sizes.update({k: int(v) for k, v in given.items() if v is not None})
    missing = sorted(set(given) - set(sizes))
    if missing:
        raise TypeError(f"missing ViT sizes {missing} (or give config = 'wide16' | 'tall16')")
    shape = tuple(int(s) for s in info["image_shape"])
    if shape[0] % sizes["patch"] or shape[1] % sizes["patch"]:
        raise TypeError(f"image shape {shape[:2]} is not a multiple of the patch size {sizes['patch']}")
    if sizes["hidden"] % sizes["heads"]:
        raise TypeError(f"hidden={sizes['hidden']} is not divisible by heads={sizes['heads']}")
    net = VisionTransformer(int(info["num_classes"]), **sizes)

    def init(key):
        return net.init(key, jnp.zeros((1, *shape)))["params"], {}

    def loss(params, state, key, batch):
        logits = net.apply({"params": params}, images_to_float(batch["image"]))
        return softmax_cross_entropy(logits, batch["label"]), state

    return Model(init=init, loss=loss)
