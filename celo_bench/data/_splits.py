"""Split helpers shared by every dataset: the reference code's 80/10/10 train split."""

from __future__ import annotations

import numpy as np


def split_train(
    arrays: dict[str, np.ndarray], seed: int = 0, shuffle: bool = True
) -> dict[str, dict[str, np.ndarray]]:
    """(train, inner_valid, outer_valid) = (train[:80%], train[80%:90%], train[90%:]).

    `shuffle` applies one fixed permutation first (for sources stored sorted by class).
    """
    n = len(next(iter(arrays.values())))
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    a, b = int(0.8 * n), int(0.9 * n)
    parts = {"train": order[:a], "inner_valid": order[a:b], "outer_valid": order[b:]}
    return {name: {k: v[idx] for k, v in arrays.items()} for name, idx in parts.items()}


def percent_bounds(n: int, lo: float, hi: float) -> tuple[int, int]:
    """Index bounds of TFDS-style slice ``split[lo%:hi%]`` of `n` examples (rounded to nearest)."""
    return int(round(n * lo / 100)), int(round(n * hi / 100))
