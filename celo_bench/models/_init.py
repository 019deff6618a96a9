"""Initialisers that reproduce haiku's defaults with flax/jax initialisers.

learned_optimization builds its tasks with haiku. Its defaults differ from flax's, and
the differences change the optimisation problem, so every model here names its
initialiser explicitly:

- ``hk.Linear`` / ``hk.Conv2D`` weights: ``TruncatedNormal(stddev=1/sqrt(fan_in))``, a
  normal with that *untruncated* stddev cut at +-2 stddev (actual std ~0.88/sqrt(fan_in)).
  flax's ``lecun_normal`` rescales to an actual std of 1/sqrt(fan_in), so it is not the
  same; :data:`HAIKU_DEFAULT` is jax's variance scaling with the scale chosen to cancel
  jax's rescaling.
- ``hk.initializers.VarianceScaling(s)`` (fan_in, truncated normal) equals jax's
  ``variance_scaling(s, "fan_in", "truncated_normal")``: both rescale by the truncated
  normal's std.
- ``hk.Embed``: ``TruncatedNormal(stddev=1)``.
- Biases: zeros. ``hk.LayerNorm`` / ``hk.BatchNorm``: epsilon 1e-5, scale 1, offset 0.
"""

from __future__ import annotations

from jax.nn import initializers

_TRUNC_STD = 0.87962566103423978
"""Std of a standard normal truncated to [-2, 2] (the constant jax and haiku both use)."""

HAIKU_DEFAULT = initializers.variance_scaling(_TRUNC_STD**2, "fan_in", "truncated_normal")
"""hk.Linear / hk.Conv2D default: samples = truncated_normal(-2, 2) / sqrt(fan_in)."""

HAIKU_EMBED = initializers.truncated_normal(stddev=1.0)
"""hk.Embed default: truncated_normal(-2, 2) * 1 (jax's stddev is the untruncated one)."""

HAIKU_LN_EPS = 1e-5
"""Epsilon of hk.LayerNorm and hk.BatchNorm."""


def haiku_variance_scaling(scale: float):
    """``hk.initializers.VarianceScaling(scale)`` (fan_in, truncated normal)."""
    return initializers.variance_scaling(scale, "fan_in", "truncated_normal")
