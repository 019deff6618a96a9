"""SM3 that accepts scalar (0-d) parameters.

``optax.scale_by_sm3`` keeps one accumulator per array axis, so a 0-d leaf has none and its
update raises ``IndexError``. The reference (learned_optimization's ``SM3`` wrapper) reshapes
0-d leaves to ``(1,)`` and back; this module does the same around optax's transform, so the
numbers are optax's and only the shapes are handled here.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def _lift(tree: Any) -> Any:
    """0-d leaves -> shape (1,); other leaves unchanged."""
    return jax.tree_util.tree_map(lambda x: jnp.reshape(x, (1,)) if jnp.ndim(x) == 0 else x, tree)


def _lower(tree: Any, like: Any) -> Any:
    """Undo :func:`_lift` leaf by leaf, using `like`'s shapes."""
    return jax.tree_util.tree_map(lambda x, ref: jnp.reshape(x, jnp.shape(ref)), tree, like)


def scalar_safe(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """Run `inner` on parameters whose 0-d leaves are seen as shape ``(1,)``."""

    def init_fn(params):
        return inner.init(_lift(params))

    def update_fn(updates, state, params=None):
        lifted_params = None if params is None else _lift(params)
        new, state = inner.update(_lift(updates), state, lifted_params)
        return _lower(new, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def sm3(learning_rate: Any, momentum: Any = 0.9, b2: float = 1.0, eps: Any = 1e-8):
    """``chain(scale_by_sm3(momentum, b2, eps), scale(-lr))`` with scalar leaves reshaped.

    `b2` must be a Python float: optax branches on ``b2 != 1.0`` in Python.
    """
    return scalar_safe(
        optax.chain(optax.scale_by_sm3(b1=momentum, b2=b2, eps=eps), optax.scale_by_learning_rate(learning_rate))
    )
