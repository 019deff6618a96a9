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


def masked_token_cross_entropy(logits: jax.Array, targets: jax.Array, pad_id: int | None = 0) -> jax.Array:
    """Token cross-entropy averaged over non-padding targets (all targets when ``pad_id`` is None)."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    if pad_id is None:
        return jnp.mean(ce)
    mask = (targets != pad_id).astype(ce.dtype)
    return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)
