"""Losses and input preprocessing shared by the model families."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def images_to_float(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [0, 1], as the reference pipeline does (no normalisation)."""
    return images.astype(jnp.float32) / 255.0


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def lm_obs_target(batch) -> tuple[jax.Array, jax.Array]:
    """Split ``tokens`` (B, seq_len + 1) into inputs ``t[:, :-1]`` and targets ``t[:, 1:]``."""
    tokens = batch["tokens"].astype(jnp.int32)
    return tokens[:, :-1], tokens[:, 1:]


def lm_cross_entropy(logits: jax.Array, obs: jax.Array, targets: jax.Array, pad_id: int = 0) -> jax.Array:
    """learned_optimization's LM loss: token CE averaged over positions whose *input* is not padding.

    The reference masks with ``obs != 0`` (so the prediction made from the last real token,
    whose target may be padding, still counts), not with the targets.
    """
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    mask = (obs != pad_id).astype(ce.dtype)
    # max(., 1): an all-padding batch gives 0 instead of the reference's 0/0 = NaN.
    return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)
