"""Small convnets: learned_optimization's ``Conv_Cifar10_32x64x64`` family.

Architecture (``tasks/fixed/conv.py::_cross_entropy_pool_loss``): for each width ``c_i``
a 3x3 convolution (SAME padding; stride 2 on the first layer, 1 after), the activation,
then the optional normalisation (*after* the activation, as in the reference), then a
global average pool over space and ``Linear(num_classes)``; mean softmax cross-entropy.

Normalisations:

- ``"batchnorm"``: ``hk.BatchNorm(decay_rate=0.9)`` always in training mode, i.e. each
  batch is normalised by its own statistics; the running averages are kept in the model
  state (``batch_stats``) like haiku does, but never used by the loss. (haiku's moving
  averages are zero-debiased and flax's are not; this changes only the unused state.)
- ``"layernorm"``: ``hk.LayerNorm(axis=-1)``, over channels only.

Initialisation: haiku's defaults (truncated normal, stddev 1/sqrt(fan_in), fan_in =
3*3*in_channels) and zero biases; norm scales 1, offsets 0, epsilon 1e-5.

Convolution implementation (``impl``): ``"xla"`` is ``lax.conv_general_dilated``;
``"im2col"`` gathers the 3x3 patches with pad + strided slices and multiplies by the
kernel reshaped to a matrix, the same function up to float rounding with the same
parameters. On CPU, XLA's convolution *gradients* inside a ``lax.scan`` / while loop run
~50-100x slower than outside one (measured with jax 0.10 on 2 cores: a 3x3 16->32 weight
gradient takes 9 ms per step in a scan, 0.15 ms outside), while pads, slices and matmuls
are as fast inside as outside; ``"auto"`` (default) picks ``im2col`` on CPU and ``xla``
on accelerators, so the engine can scan and vmap convnets on every backend.

Parameters, with ``C`` input channels, widths ``w`` and ``K`` classes::

    sum_i (9 * w_{i-1} * w_i + w_i) + (w_last * K + K) + norm,   w_0 = C
    norm = 2 * sum_i w_i for batchnorm / layernorm, 0 otherwise
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from celo_bench.models._init import HAIKU_DEFAULT, HAIKU_LN_EPS
from celo_bench.models._losses import images_to_float, softmax_cross_entropy
from celo_bench.models.mlp import ACTIVATIONS
from celo_bench.task import Model

NORMS = ("none", "batchnorm", "layernorm")
IMPLS = ("auto", "xla", "im2col")


def conv2d_im2col(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """SAME-padded 2-D convolution (NHWC, HWIO) as patches @ kernel matrix.

    Hand-written because XLA's CPU convolution gradients are very slow inside loops (see
    the module docstring); the patches come from pad + strided slices, whose gradients
    are pads and slices again.
    """
    kh, kw, cin, cout = kernel.shape
    h, w = x.shape[1:3]
    pads = lax.padtype_to_pads((h, w), (kh, kw), (stride, stride), "SAME")
    xp = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    oh = (h + sum(pads[0]) - kh) // stride + 1
    ow = (w + sum(pads[1]) - kw) // stride + 1
    cols = [
        xp[:, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.concatenate(cols, axis=-1) @ kernel.reshape(kh * kw * cin, cout)


class Conv2D(nn.Module):
    """3x3 (or k x k) SAME convolution with bias; parameters as ``flax.linen.Conv``."""

    features: int
    kernel_size: int
    stride: int
    impl: str

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param("kernel", HAIKU_DEFAULT, (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if self.impl == "im2col":
            y = conv2d_im2col(x, kernel, self.stride)
        else:
            y = lax.conv_general_dilated(
                x, kernel, (self.stride, self.stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        return y + bias


class ConvNet(nn.Module):
    widths: Sequence[int]
    num_classes: int
    activation: str = "relu"
    norm: str = "none"
    kernel_size: int = 3
    impl: str = "xla"

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        for i, width in enumerate(self.widths):
            stride = 2 if i == 0 else 1
            x = Conv2D(width, self.kernel_size, stride, self.impl)(x)
            x = act(x)
            if self.norm == "batchnorm":
                # Training mode always (the reference never evaluates in inference mode).
                x = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=HAIKU_LN_EPS)(x)
            elif self.norm == "layernorm":
                x = nn.LayerNorm(epsilon=HAIKU_LN_EPS)(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=HAIKU_DEFAULT)(x)


def build_convnet(
    *,
    info: Mapping[str, Any],
    batch_size: int,
    widths: Sequence[int] = (32, 64, 64),
    activation: str = "relu",
    norm: str = "none",
    impl: str = "auto",
) -> Model:
    """Image -> 3x3 convs (first stride 2) -> global average pool -> logits; mean CE.

    Args:
      info: dataset facts (``num_classes``, ``image_shape`` = (H, W, C)).
      batch_size: unused (the model works for any batch).
      widths: output channels of each convolution.
      activation: ``relu`` or ``tanh`` (applied before the normalisation).
      norm: ``none``, ``batchnorm`` (training-mode statistics, state kept) or ``layernorm``.
      impl: ``auto`` (``im2col`` on CPU, ``xla`` elsewhere), ``xla`` or ``im2col``.
    """
    if activation not in ACTIVATIONS:
        raise TypeError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if norm not in NORMS:
        raise TypeError(f"norm must be one of {NORMS}, got {norm!r}")
    if impl not in IMPLS:
        raise TypeError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = "im2col" if jax.default_backend() == "cpu" else "xla"
    net = ConvNet(tuple(widths), int(info["num_classes"]), activation, norm, impl=impl)
    shape = tuple(int(s) for s in info["image_shape"])
    stateful = norm == "batchnorm"

    def init(key):
        variables = net.init(key, jnp.zeros((1, *shape)))
        return variables["params"], ({"batch_stats": variables["batch_stats"]} if stateful else {})

    def loss(params, state, key, batch):
        x = images_to_float(batch["image"])
        if stateful:
            logits, new_state = net.apply({"params": params, **state}, x, mutable=["batch_stats"])
            state = dict(new_state)
        else:
            logits = net.apply({"params": params}, x)
        return softmax_cross_entropy(logits, batch["label"]), state

    return Model(init=init, loss=loss)
