"""Offline datasets that ship with installed packages: no network, no downloads.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).
- ``pydoc_text``: the English text of Python's ``pydoc_data`` help topics (~460 kB) as
  CPython 3.11.7 ships it (a copy ships with this package, :mod:`celo_bench.data.shipped`, so
  the text is the same on every Python), byte-level tokens for language modelling.
"""

from __future__ import annotations

import functools

import numpy as np

from celo_bench.data import shipped
from celo_bench.data._splits import split_train
from celo_bench.task import Dataset


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load  # heavy (scikit-learn): only when loaded

    d = sk_load()
    # 0..16 intensities -> uint8 0..255, the same compact format as every image dataset.
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    return images, d.target.astype(np.int32)


def load_digits(test_fraction: float = 0.2) -> Dataset:
    """8x8 digits: a fixed 20% test split, the rest split 80/10/10 as the reference does."""
    images, labels = _digits_arrays()
    order = np.random.default_rng(0).permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    test_idx, rest = order[:n_test], order[n_test:]
    splits = split_train({"image": images[rest], "label": labels[rest]}, shuffle=False)
    splits["test"] = {"image": images[test_idx], "label": labels[test_idx]}
    info = {"num_classes": 10, "image_shape": (8, 8, 1), "source": "sklearn.datasets.load_digits"}
    return Dataset(name="digits", splits=splits, info=info)


@functools.cache
def _pydoc_bytes() -> np.ndarray:
    return np.frombuffer(shipped.text_bytes("pydoc_text"), dtype=np.uint8).copy()


def load_pydoc_text(seq_len: int = 32, test_fraction: float = 0.1) -> Dataset:
    """Byte-level LM data: non-overlapping windows of ``seq_len + 1`` bytes (vocab 256).

    Windows are cut in document order; the test split is the last `test_fraction` of the
    text (so it is not interleaved with training text), the rest is split 80/10/10.
    """
    data = _pydoc_bytes()
    window = seq_len + 1
    n = len(data) // window
    tokens = data[: n * window].reshape(n, window).astype(np.int32)
    n_test = int(round(test_fraction * n))
    splits = split_train({"tokens": tokens[: n - n_test]})
    splits["test"] = {"tokens": tokens[n - n_test :]}
    info = {"vocab_size": 256, "seq_len": seq_len, "source": "Python 3.11.7 pydoc_data.topics, shipped (byte level)"}
    return Dataset(name="pydoc_text", splits=splits, info=info)
