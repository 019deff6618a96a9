"""Image-classification datasets of the paper: Fashion-MNIST, MNIST, CIFAR-10, CIFAR-100.

Preprocessing follows learned_optimization's ``image_classification_datasets``: the
whole split is held in memory, optionally resized with ``tf.image.resize`` (bilinear,
``half_pixel_centers``, no antialiasing), scaled to [0, 1] by the model (``/ 255``), no
normalisation, no augmentation. The meta-training tasks (8x8 MLPs) also convert
CIFAR/SVHN to greyscale by the mean over channels, after resizing.

Splits: (train, inner_valid, outer_valid, test) = (train[:80%], train[80%:90%],
train[90%:], test) of one fixed permutation (``numpy default_rng(0)``) of the published
training set. TFDS stores examples in its own hashed, shuffled order, which cannot be
reproduced without TFDS; a fixed permutation is the closest equivalent (see docs/data.md).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from celo_bench.data import cache
from celo_bench.data._splits import split_train
from celo_bench.data.formats import read_cifar, read_idx
from celo_bench.data.sources import (
    IDX_FIELDS,
    RECIPES,
    Recipe,
    find_local,
    idx_file,
    missing_message,
)
from celo_bench.errors import DataMissingError, SpecError
from celo_bench.task import Dataset

FIELDS = ("train_image", "train_label", "test_image", "test_label")


def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) interpolation weights of TF2 ``resize_bilinear`` with half-pixel centers.

    For output pixel ``i`` the source coordinate is ``x = (i + 0.5) * in / out - 0.5``;
    it blends ``lower = max(floor(x), 0)`` and ``upper = min(ceil(x), in - 1)`` with
    weight ``x - floor(x)`` on ``upper`` (TensorFlow's ``compute_interpolation_weights``).
    """
    scale = in_size / out_size
    x = (np.arange(out_size) + 0.5) * scale - 0.5
    floor = np.floor(x)
    lower = np.maximum(floor, 0).astype(int)
    upper = np.minimum(np.ceil(x), in_size - 1).astype(int)
    frac = x - floor
    w = np.zeros((out_size, in_size))
    np.add.at(w, (np.arange(out_size), lower), 1.0 - frac)
    np.add.at(w, (np.arange(out_size), upper), frac)
    return w


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``tf.image.resize(images, size)`` (bilinear, no antialias) in NumPy: float32 output.

    Bilinear interpolation is separable, so the resize is ``Wh @ image @ Ww^T`` per
    channel with the matrices of :func:`_bilinear_matrix`; this is the same arithmetic as
    TensorFlow's kernel (top/bottom row lerps, then a vertical lerp), up to float
    rounding (computed in float64, returned as float32 like TF). Values are not rounded,
    so uint8 inputs give float32 in [0, 255].
    """
    n, h, w, c = images.shape
    wh, ww = _bilinear_matrix(h, size[0]), _bilinear_matrix(w, size[1])
    x = np.moveaxis(images, -1, 1).astype(np.float64)  # (N, C, H, W)
    out = wh @ x @ ww.T  # (N, C, h, w)
    return np.ascontiguousarray(np.moveaxis(out, 1, -1), dtype=np.float32)


def _image_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    if len(image_size) == 2 and all(isinstance(v, int) and v > 0 for v in image_size):
        return (int(image_size[0]), int(image_size[1]))
    raise SpecError("[data]", "image_size", f"expected an int or [height, width], got {image_size!r}")


def image_facts(name: str, image_size: int | Sequence[int] | None = None, greyscale: bool = False) -> dict[str, Any]:
    """Facts known without the data: classes and the (possibly resized) image shape."""
    r = RECIPES[name]
    h, w, c = r.image_shape
    size = _image_size(image_size)
    if size is not None:
        h, w = size
    return {"num_classes": r.num_classes, "image_shape": (h, w, 1 if greyscale else c)}


@functools.lru_cache(maxsize=8)
def _source_arrays(name: str, root: str) -> tuple[tuple[np.ndarray, ...], str]:
    """The published train/test arrays, from the cache or a folder of original files."""
    if cache.read_manifest(name, root) is not None:
        arrays = cache.load_arrays(name, FIELDS, root)
        return tuple(arrays[f] for f in FIELDS), f"cache {cache.dataset_dir(name, root)}"
    local = find_local(name, root=root)
    if local is not None:
        arrays = convert_original(RECIPES[name], local)
        return tuple(arrays[f] for f in FIELDS), f"original files in {local}"
    raise DataMissingError(missing_message(name, root))


def convert_original(recipe: Recipe, folder: Path) -> dict[str, np.ndarray]:
    """Original image files in `folder` -> ``{train,test}_{image,label}`` arrays."""
    if recipe.original_format == "idx":
        out = {}
        for field_, stem in IDX_FIELDS.items():
            arr = read_idx(idx_file(folder, stem))
            out[field_] = arr[..., None] if field_.endswith("image") else arr.astype(np.int32)
    elif recipe.original_format == "cifar":
        archive = folder / recipe.originals[0].name
        c = recipe.cifar
        out = read_cifar(archive if archive.is_file() else folder, c["train"], c["test"],
                         c["label_bytes"], c["label_index"])
    else:
        raise DataMissingError(f"dataset '{recipe.name}' has no image original format")
    check_images(recipe, out, str(folder))
    return out


def check_images(recipe: Recipe, arrays: dict[str, np.ndarray], where: str) -> None:
    """Raise :class:`~celo_bench.data.cache.DataCorruptError` unless `arrays` hold `recipe`'s images.

    Checks uint8 images of the recipe's ``(H, W, C)``, as many labels as images, and labels
    in ``[0, num_classes)``, for both splits; `where` names the source in the message.
    """
    for split in ("train", "test"):
        x, y = arrays[f"{split}_image"], arrays[f"{split}_label"]
        if x.dtype != np.uint8 or tuple(x.shape[1:]) != recipe.image_shape or len(x) != len(y):
            raise cache.DataCorruptError(
                f"{where}: {split} images {x.shape} {x.dtype} / labels {y.shape} do not match "
                f"{recipe.name} (expected uint8 (N, {', '.join(map(str, recipe.image_shape))}))"
            )
        if len(y) and (y.min() < 0 or y.max() >= recipe.num_classes):
            raise cache.DataCorruptError(f"{where}: {split} labels outside [0, {recipe.num_classes})")


def load_image_dataset(
    name: str,
    image_size: int | Sequence[int] | None = None,
    greyscale: bool = False,
    root: str | os.PathLike | None = None,
) -> Dataset:
    """Load image dataset `name` (see module docstring for splits and preprocessing).

    Args:
      name: ``fashion_mnist``, ``mnist``, ``cifar10`` or ``cifar100``.
      image_size: resize to ``(s, s)`` or ``(h, w)`` (``tf.image.resize`` arithmetic).
      greyscale: average the channels after resizing (the meta-training tasks' choice).
      root: cache root (default ``$CELO_BENCH_DATA`` or the user cache).

    Returns:
      Splits with ``image`` (uint8 (N, H, W, C), or float32 in [0, 255] when resized or
      converted, exactly as the reference computes them before ``/ 255``) and int32 ``label``.
    """
    root_s = str(cache.data_root(root))
    info = image_facts(name, image_size, greyscale)
    (tr_x, tr_y, te_x, te_y), where = _source_arrays(name, root_s)
    size = _image_size(image_size)

    def prep(x: np.ndarray) -> np.ndarray:
        if size is not None and tuple(x.shape[1:3]) != size:
            x = resize_bilinear(x, size)
        if greyscale:
            x = x.astype(np.float32).mean(axis=-1, keepdims=True)
        return x

    splits = split_train({"image": prep(tr_x), "label": np.asarray(tr_y, np.int32)})
    splits["test"] = {"image": prep(te_x), "label": np.asarray(te_y, np.int32)}
    return Dataset(name=name, splits=splits, info={**info, "source": where})


def make_loader(name: str):
    def loader(image_size=None, greyscale: bool = False) -> Dataset:
        return load_image_dataset(name, image_size=image_size, greyscale=greyscale)

    loader.__doc__ = f"Load '{name}' (options: image_size, greyscale)."
    return loader


def make_facts(name: str):
    def facts(image_size=None, greyscale: bool = False) -> Mapping[str, Any]:
        return image_facts(name, image_size, greyscale)

    return facts


def clear_memory_cache() -> None:
    """Forget arrays read so far (tests and `data prepare --force` use this)."""
    _source_arrays.cache_clear()


__all__ = ["check_images", "convert_original", "image_facts", "load_image_dataset", "resize_bilinear"]
