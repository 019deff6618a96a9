"""Synthetic stand-in data: every dataset's exact shapes, dtypes, vocabulary and classes, no download.

Random inputs of the right form let throughput, device memory and compile time be measured
for every paper task before (or without) preparing its data. They are never a substitute for
the real data in a score: synthetic runs carry their own keys, their own suite label
(``<suite>@synthetic``) and their own default results folder (``results-synthetic/``); see
docs/paper-grid.md.

Form, per dataset kind (the same as the real loaders in :mod:`celo_bench.data.images` and
:mod:`celo_bench.data.text` produce):

- image datasets: ``image`` uint8 ``(N, H, W, C)`` uniform in 0..255 (float32 in [0, 255]
  when the task resizes or converts to greyscale, as the real loader returns then) and
  ``label`` int32 uniform in ``0..num_classes-1``;
- language-model datasets: ``tokens`` int32 ``(N, seq_len + 1)`` uniform in
  ``1..vocab_size-1``, a quarter of the rows right-padded with ``pad_id`` 0 as cropped or
  padded sentences are;
- offline datasets (``digits``, ``pydoc_text``): random arrays shaped and typed like the
  real (bundled) data, split for split.

Split sizes are the published ones split as the reference does (80/10/10 of the training
set plus the test set, or the LM percentage slices), each capped at
:data:`MAX_EXAMPLES` so that a synthetic dataset is generated in well under a second.
Everything is a deterministic function of the dataset name, its options and ``seed``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from celo_bench.data._splits import percent_bounds
from celo_bench.data.images import image_facts
from celo_bench.data.sources import RECIPES
from celo_bench.data.text import PAD_ID, lm_facts
from celo_bench.task import Dataset

PREFIX = "synthetic:"
"""A task's dataset ``cifar10`` becomes ``synthetic:cifar10`` in a synthetic grid."""

MAX_EXAMPLES = 50_000
"""Cap on every split's example count (CIFAR's 40k training split fits exactly)."""

SPLITS = ("train", "inner_valid", "outer_valid", "test")

PUBLISHED_SIZES: dict[str, dict[str, int]] = {
    "fashion_mnist": {"train": 60_000, "test": 10_000},
    "mnist": {"train": 60_000, "test": 10_000},
    "cifar10": {"train": 50_000, "test": 10_000},
    "cifar100": {"train": 50_000, "test": 10_000},
    "lm1b_32k": {"train": 30_301_028, "test": 306_688},  # TFDS lm1b sentences
    "wikipedia_en_32k": {"train": 6_407_814},  # wikimedia/wikipedia 20231101.en articles
}
"""Examples per source split of each paper dataset, as published."""


def synthetic_name(dataset: str) -> str:
    """``cifar10`` -> ``synthetic:cifar10`` (idempotent)."""
    return dataset if is_synthetic(dataset) else PREFIX + dataset


def is_synthetic(dataset: str) -> bool:
    return dataset.startswith(PREFIX)


def real_name(dataset: str) -> str:
    """``synthetic:cifar10`` -> ``cifar10``."""
    return dataset.removeprefix(PREFIX)


def split_sizes(name: str) -> dict[str, int]:
    """Examples per split of synthetic paper dataset `name` (published sizes, capped).

    Raises:
      KeyError: `name` is not a paper dataset.
    """
    src = PUBLISHED_SIZES[name]
    recipe = RECIPES[name]
    if recipe.kind == "image":
        n = src["train"]
        a, b = int(0.8 * n), int(0.9 * n)
        sizes = {"train": a, "inner_valid": b - a, "outer_valid": n - b, "test": src["test"]}
    else:
        sizes = {}
        for split, (source, lo, hi) in recipe.lm_splits.items():
            lo_i, hi_i = percent_bounds(src[source], lo, hi)
            sizes[split] = hi_i - lo_i
    return {s: min(sizes[s], MAX_EXAMPLES) for s in SPLITS}


def _rng(name: str, options: Mapping[str, Any], seed: int, split: str) -> np.random.Generator:
    tag = f"{name}|{sorted(dict(options).items())}|{split}".encode()
    return np.random.default_rng([seed, zlib.crc32(tag)])


def _image_split(rng: np.random.Generator, n: int, info: Mapping[str, Any], floating: bool) -> dict:
    shape = (n, *(int(s) for s in info["image_shape"]))
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    if floating:
        image = image.astype(np.float32)
    label = rng.integers(0, int(info["num_classes"]), n, dtype=np.int32)
    return {"image": image, "label": label}


def _token_split(rng: np.random.Generator, n: int, info: Mapping[str, Any]) -> dict:
    width = int(info["seq_len"]) + 1
    tokens = rng.integers(1, int(info["vocab_size"]), (n, width), dtype=np.int32)
    padded = rng.random(n) < 0.25
    lengths = rng.integers(1, width, n)
    cols = np.arange(width)[None, :]
    tokens[padded[:, None] & (cols >= lengths[:, None])] = PAD_ID
    return {"tokens": tokens}


def paper_dataset(name: str, options: Mapping[str, Any] | None = None, seed: int = 0) -> Dataset:
    """Synthetic stand-in for paper dataset `name` with the task's ``[data]`` options.

    Args:
      name: a paper dataset (``fashion_mnist``, ``mnist``, ``cifar10``, ``cifar100``,
        ``lm1b_32k``, ``wikipedia_en_32k``).
      options: the task's ``[data]`` table (``image_size``, ``greyscale`` or ``seq_len``).
      seed: generator seed; the same arguments always give the same arrays.

    Returns:
      A :class:`~celo_bench.task.Dataset` named ``synthetic:<name>`` with the four splits of
      :func:`split_sizes` and the real dataset's facts plus ``synthetic: True``.
    """
    options = dict(options or {})
    recipe = RECIPES[name]
    sizes = split_sizes(name)
    splits = {}
    if recipe.kind == "image":
        info = image_facts(name, options.get("image_size"), bool(options.get("greyscale", False)))
        resized = tuple(info["image_shape"][:2]) != tuple(recipe.image_shape[:2])
        floating = resized or bool(options.get("greyscale", False))
        for s in SPLITS:
            splits[s] = _image_split(_rng(name, options, seed, s), sizes[s], info, floating)
    else:
        info = lm_facts(name, **options)
        for s in SPLITS:
            splits[s] = _token_split(_rng(name, options, seed, s), sizes[s], info)
    info = {**info, "synthetic": True, "source": f"synthetic (seed {seed}), shapes of {name}"}
    return Dataset(name=synthetic_name(name), splits=splits, info=info)


def like(real: Dataset, seed: int = 0) -> Dataset:
    """Random arrays with `real`'s split sizes, shapes and dtypes (offline datasets).

    Integer fields keep their value range (labels stay below ``num_classes``, tokens below
    ``vocab_size``); float fields are uniform over the real field's [min, max].
    """
    splits = {}
    for split, fields in real.splits.items():
        rng = _rng(real.name, {}, seed, split)
        out = {}
        for key, arr in fields.items():
            if key == "label" and "num_classes" in real.info:
                out[key] = rng.integers(0, int(real.info["num_classes"]), arr.shape).astype(arr.dtype)
            elif key == "tokens" and "vocab_size" in real.info:
                out[key] = rng.integers(0, int(real.info["vocab_size"]), arr.shape).astype(arr.dtype)
            elif np.issubdtype(arr.dtype, np.integer):
                hi = int(arr.max()) + 1 if arr.size else 1
                out[key] = rng.integers(int(arr.min()) if arr.size else 0, hi, arr.shape).astype(arr.dtype)
            else:
                lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
                out[key] = rng.uniform(lo, hi, arr.shape).astype(arr.dtype)
        splits[split] = out
    info = {**real.info, "synthetic": True, "source": f"synthetic (seed {seed}), shapes of {real.name}"}
    return Dataset(name=synthetic_name(real.name), splits=splits, info=info)


def make_loader(name: str, real_loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
    """The loader registered as ``synthetic:<name>``: `real_loader`'s signature, random data.

    Paper datasets are generated from their facts (no data needed); offline datasets are
    loaded (they ship with installed packages) and mirrored with :func:`like`.
    """
    if name in RECIPES:

        def loader(**options: Any) -> Dataset:
            return paper_dataset(name, options)
    else:

        def loader(**options: Any) -> Dataset:
            return like(real_loader(**options))

    loader.__doc__ = f"Synthetic stand-in for '{name}' (same options as the real loader)."
    return loader


def make_facts(name: str, real_facts: Callable[..., Mapping[str, Any]]) -> Callable[..., Mapping[str, Any]]:
    """Facts of ``synthetic:<name>``: the real dataset's, marked synthetic."""

    def facts(**options: Any) -> Mapping[str, Any]:
        return {**real_facts(**options), "synthetic": True}

    return facts


def batch(dataset: Dataset, split: str, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`n` examples of `split` drawn with replacement (tests feed models with these)."""
    arrays = dataset.splits[split]
    idx = np.random.default_rng(seed).integers(0, dataset.size(split), n)
    return {k: v[idx] for k, v in arrays.items()}


__all__ = [
    "MAX_EXAMPLES",
    "PREFIX",
    "PUBLISHED_SIZES",
    "batch",
    "is_synthetic",
    "like",
    "make_facts",
    "make_loader",
    "paper_dataset",
    "real_name",
    "split_sizes",
    "synthetic_name",
]
