"""Shared type aliases, so signatures read the same everywhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax

PRNGKey = jax.Array
Params = Any  # a pytree of arrays
ModelState = Any  # a pytree of arrays (e.g. batch-norm statistics); {} when unused
Batch = Mapping[str, jax.Array]
HParams = Mapping[str, float]
Metrics = Mapping[str, jax.Array]
LossFn = Callable[[Params, ModelState, PRNGKey, Batch], tuple[jax.Array, ModelState]]
