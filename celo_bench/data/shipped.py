"""Datasets that ship inside the package: real data for the offline ``quick`` tier.

``fashion_mnist_14`` is a class-balanced subset of Fashion-MNIST (Xiao, Rasul and Vollgraf,
"Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms",
arXiv:1708.07747; MIT licence, Zalando SE) at 14x14 pixels: the first 3,000 training images of
each class in file order (30,000 in all) and the whole 10,000-image test set, each 28x28 image
downsampled by the loaders' bilinear resize (``tf.image.resize`` arithmetic; at exactly half
size it is the mean of each 2x2 block) and rounded to uint8. The files keep Fashion-MNIST's
own IDX format, gzip-compressed with a zero timestamp, so ``derive`` remakes them byte for byte.

Every load checks each file's sha256 against :data:`SHIPPED`; ``NOTICE.md`` beside the files
gives the source, the licence text, the sha256 sums and the command that derives them:
``celo-bench data derive fashion_mnist_14`` (from ``apt-get install dataset-fashion-mnist`` or a
``celo-bench data prepare fashion_mnist`` folder).

``pydoc_text`` is the English text of Python's ``pydoc_data.topics`` help pages (PSF licence) as
CPython 3.11.7 ships it, joined in topic order: the language-model tasks' text must not change
with the Python release a user runs (its content is part of every run key), so a copy ships
(``celo-bench data derive pydoc_text`` remakes it on Python 3.11.7).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from celo_bench.data._splits import split_train
from celo_bench.data.cache import DataCorruptError
from celo_bench.data.formats import parse_idx, read_idx
from celo_bench.data.images import resize_bilinear
from celo_bench.errors import DataMissingError
from celo_bench.task import Dataset

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
"""The four IDX files of an image dataset, in Fashion-MNIST's own names."""


@dataclass(frozen=True)
class ShippedImages:
    """A class-balanced, downsampled subset of an IDX image dataset, shipped as package data."""

    name: str
    source: str            # the dataset it derives from (a recipe of celo_bench.data.sources)
    image_size: int        # square side after resizing
    train_per_class: int   # the first N training images of each class, in file order
    num_classes: int
    sha256: dict[str, str]  # file name -> sha256 of the shipped (gzip) file
    citation: str


SHIPPED: dict[str, ShippedImages] = {
    "fashion_mnist_14": ShippedImages(
        name="fashion_mnist_14", source="fashion_mnist", image_size=14, train_per_class=3000,
        num_classes=10,
        sha256={
            "train-images-idx3-ubyte.gz":
                "8730e0891fb88244a700f93f56b1368364cd24aeaee431dd4341b1ea70e724a0",
            "train-labels-idx1-ubyte.gz":
                "87e110ebab8f45c1ab58817f552e3a5fdf1e212521ca3627bb9a1b76245932f3",
            "t10k-images-idx3-ubyte.gz":
                "731f67ec4898238fd9528f1b027509f4060845760964360212839340268624ed",
            "t10k-labels-idx1-ubyte.gz":
                "bad34aa92450454a281e4959ab5a22f03213e21212f4261dadf52e42fa6cd580",
        },
        citation="Xiao, Rasul and Vollgraf, Fashion-MNIST, arXiv:1708.07747 (MIT licence, Zalando SE)",
    ),
}
"""Shipped dataset name -> what it is and the sha256 of each file (checked at every load)."""


@dataclass(frozen=True)
class ShippedText:
    """A text shipped as package data: one gzip file of UTF-8 bytes."""

    name: str
    file: str
    sha256: str
    python: str  # the CPython release whose pydoc_data it copies
    citation: str


SHIPPED_TEXT: dict[str, ShippedText] = {
    "pydoc_text": ShippedText(
        name="pydoc_text", file="topics.txt.gz",
        sha256="a4f8f2b8729e733eb6ec99adb5bb15d57b86e4b1418f003b980ec8de94459b85",
        python="3.11.7", citation="Python 3.11.7 pydoc_data.topics (PSF License)",
    ),
}
"""Shipped text name -> its file and sha256 (checked at every load)."""


def folder(name: str) -> Path:
    """The package folder that holds dataset `name`'s files."""
    return Path(str(resources.files("celo_bench.data") / "package" / name))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify(name: str, where: Path | None = None) -> None:
    """Check every file of shipped dataset `name` against its pinned sha256.

    Raises:
      DataMissingError: a file is absent (a broken install).
      DataCorruptError: a file's sha256 differs from :data:`SHIPPED`.
    """
    where = where or folder(name)
    pinned = ({SHIPPED_TEXT[name].file: SHIPPED_TEXT[name].sha256} if name in SHIPPED_TEXT
              else SHIPPED[name].sha256)
    for file, expected in pinned.items():
        path = where / file
        if not path.is_file():
            raise DataMissingError(f"dataset '{name}': {path} is missing from the installed package; "
                                   "reinstall celo-bench (pip install --force-reinstall celo-bench)")
        got = _sha256(path)
        if got != expected:
            raise DataCorruptError(f"dataset '{name}': {path} has sha256 {got[:12]}…, expected "
                                   f"{expected[:12]}…; reinstall celo-bench, or remake the files with "
                                   f"`celo-bench data derive {name}`")


@functools.cache
def _arrays(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    verify(name)
    where = folder(name)
    return tuple(parse_idx(gzip.decompress((where / f).read_bytes()), f"{name}/{f}") for f in FILES)


def load(name: str) -> Dataset:
    """Shipped dataset `name`: train split 80/10/10 (fixed shuffle, seed 0) and the test set.

    Returns:
      Splits ``train``, ``inner_valid``, ``outer_valid``, ``test`` with ``image`` uint8
      ``(N, S, S, 1)`` and int32 ``label``.

    Raises:
      DataMissingError / DataCorruptError: a file is missing or fails its sha256.
    """
    spec = SHIPPED[name]
    tr_x, tr_y, te_x, te_y = _arrays(name)
    splits = split_train({"image": tr_x[..., None], "label": tr_y.astype(np.int32)})
    splits["test"] = {"image": te_x[..., None], "label": te_y.astype(np.int32)}
    return Dataset(name=name, splits=splits, info={**facts(name), "source": f"package data: {spec.citation}"})


@functools.cache
def text_bytes(name: str) -> bytes:
    """The UTF-8 bytes of shipped text `name`, after its sha256 check (see :func:`verify`)."""
    verify(name)
    return gzip.decompress((folder(name) / SHIPPED_TEXT[name].file).read_bytes())


def derive_text(name: str, out: Path) -> dict[str, str]:
    """Remake shipped text `name` from this Python's ``pydoc_data`` into `out`.

    Byte-identical on the CPython release in :data:`SHIPPED_TEXT` (another release's help text
    differs). Returns file name -> sha256 of the written file.
    """
    from pydoc_data.topics import topics  # a large module of text: only when remade

    text = "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")
    data = gzip.compress(text, compresslevel=9, mtime=0)
    out.mkdir(parents=True, exist_ok=True)
    (out / SHIPPED_TEXT[name].file).write_bytes(data)
    return {SHIPPED_TEXT[name].file: hashlib.sha256(data).hexdigest()}


def facts(name: str) -> dict:
    """Classes and image shape of shipped dataset `name`, without reading it."""
    spec = SHIPPED[name]
    return {"num_classes": spec.num_classes, "image_shape": (spec.image_size, spec.image_size, 1)}


def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array (magic 0x08 = unsigned byte, big-endian dimensions)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def derive(name: str, source_folder: Path, out: Path) -> dict[str, str]:
    """Remake shipped dataset `name` from the original IDX files in `source_folder` into `out`.

    Deterministic: the same originals give byte-identical files (gzip level 9, mtime 0).

    Returns:
      File name -> sha256 of the written file.

    Raises:
      DataMissingError: an original file is absent from `source_folder`.
    """
    spec = SHIPPED[name]
    originals = {}
    for f in FILES:
        path = source_folder / f
        if not path.is_file() and (source_folder / f.removesuffix(".gz")).is_file():
            path = source_folder / f.removesuffix(".gz")
        if not path.is_file():
            raise DataMissingError(f"{source_folder} has no {f}: install the originals with "
                                   "`apt-get install dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist) "
                                   f"or `celo-bench data prepare {spec.source}`, and pass that folder to --source")
        originals[f] = read_idx(path)
    tr_x, tr_y = originals[FILES[0]], originals[FILES[1]]
    keep = np.sort(np.concatenate([np.flatnonzero(tr_y == c)[: spec.train_per_class]
                                   for c in range(spec.num_classes)]))
    size = (spec.image_size, spec.image_size)

    def small(x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(resize_bilinear(x[..., None], size)[..., 0]), 0, 255).astype(np.uint8)

    arrays = {FILES[0]: small(tr_x[keep]), FILES[1]: tr_y[keep].astype(np.uint8),
              FILES[2]: small(originals[FILES[2]]), FILES[3]: originals[FILES[3]].astype(np.uint8)}
    out.mkdir(parents=True, exist_ok=True)
    sums = {}
    for f, a in arrays.items():
        data = gzip.compress(_idx_bytes(a), compresslevel=9, mtime=0)
        (out / f).write_bytes(data)
        sums[f] = hashlib.sha256(data).hexdigest()
    return sums


__all__ = ["FILES", "SHIPPED", "SHIPPED_TEXT", "ShippedImages", "ShippedText", "derive", "derive_text", "facts",
           "folder", "load", "text_bytes", "verify"]
