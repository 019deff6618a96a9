"""Where each paper dataset comes from: published original files, HF hub parquet, local folders.

A :class:`Recipe` names, per dataset, (a) the original files as their authors publish them
(IDX for MNIST-style sets, the CIFAR binary archives, LM1B's text files) with the
publishers' URLs and checksums, (b) the HuggingFace hub parquet dataset that serves the
same data today, and (c) system folders where a distribution package installs the
originals (Debian's ``dataset-fashion-mnist``). ``prepare`` tries local folders first,
then downloads. What differs from the paper's TFDS sources is listed in docs/data.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from celo_bench.data import cache
from celo_bench.data.formats import glob_files


@dataclass(frozen=True)
class OriginalFile:
    """One published file: its name, download URL and the publisher's checksum (if any)."""

    name: str
    url: str = ""
    md5: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class HubSource:
    """Parquet shards on the HuggingFace hub; `patterns` maps source split -> glob."""

    repo: str
    patterns: dict[str, str]
    columns: tuple[str, ...]
    revision: str = "main"
    repo_type: str = "dataset"


@dataclass(frozen=True)
class Recipe:
    """How to obtain and convert one dataset."""

    name: str
    kind: str  # "image" | "lm"
    title: str
    original_format: str = ""  # "idx" | "cifar" | "lm1b_text" | ""
    originals: tuple[OriginalFile, ...] = ()
    hub: HubSource | None = None
    system_dirs: tuple[str, ...] = ()
    download_size: str = ""
    num_classes: int = 0
    image_shape: tuple[int, int, int] = (0, 0, 0)
    cifar: dict = field(default_factory=dict)  # train/test member names, label bytes/index
    lm_splits: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    paper_source: str = ""
    note: str = ""


def _idx(base: str, md5s: tuple[str, str, str, str]) -> tuple[OriginalFile, ...]:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return tuple(OriginalFile(n, base + n, m) for n, m in zip(names, md5s, strict=True))


IDX_FIELDS = {
    "train_image": "train-images-idx3-ubyte", "train_label": "train-labels-idx1-ubyte",
    "test_image": "t10k-images-idx3-ubyte", "test_label": "t10k-labels-idx1-ubyte",
}
"""Cache array -> IDX file stem (``.gz`` optional)."""

LM_REFERENCE_SPLITS = {  # split -> (source split, from %, to %) as learned_optimization slices
    "lm1b_32k": {"train": ("train", 2, 100), "inner_valid": ("train", 0, 1),
                 "outer_valid": ("train", 1, 2), "test": ("test", 0, 100)},
    "wikipedia_en_32k": {"train": ("train", 3, 100), "inner_valid": ("train", 0, 1),
                         "outer_valid": ("train", 1, 2), "test": ("train", 2, 3)},
}

VOCAB = HubSource(repo="google-t5/t5-small", patterns={"vocab": "spiece.model"}, columns=(),
                  repo_type="model")
"""T5's sentencepiece model: the ``cc_all.32000`` vocabulary of gs://t5-data/vocabs."""
VOCAB_SIZE = 32100
"""seqio.SentencePieceVocabulary(cc_all.32000, extra_ids=100).vocab_size, as the reference reports."""

RECIPES: dict[str, Recipe] = {
    "fashion_mnist": Recipe(
        "fashion_mnist", "image", "Fashion-MNIST (Zalando), 60k/10k 28x28 greyscale", "idx",
        _idx("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
              "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
        HubSource("zalando-datasets/fashion_mnist",
                  {"train": "fashion_mnist/train-*.parquet", "test": "fashion_mnist/test-*.parquet"},
                  ("image", "label")),
        system_dirs=("/usr/share/datasets/fashion-mnist",), download_size="30 MB",
        num_classes=10, image_shape=(28, 28, 1), paper_source="tfds fashion_mnist",
    ),
    "mnist": Recipe(
        "mnist", "image", "MNIST, 60k/10k 28x28 greyscale", "idx",
        _idx("https://storage.googleapis.com/cvdf-datasets/mnist/",
             ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
              "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
        HubSource("ylecun/mnist", {"train": "mnist/train-*.parquet", "test": "mnist/test-*.parquet"},
                  ("image", "label")),
        download_size="12 MB",
        num_classes=10, image_shape=(28, 28, 1), paper_source="tfds mnist",
    ),
    "cifar10": Recipe(
        "cifar10", "image", "CIFAR-10, 50k/10k 32x32 RGB", "cifar",
        (OriginalFile("cifar-10-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                      "c32a1d4ab5d03f1284b67883e8d87530",
                      "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),),
        HubSource("uoft-cs/cifar10", {"train": "plain_text/train-*.parquet",
                                      "test": "plain_text/test-*.parquet"}, ("img", "label")),
        download_size="170 MB", num_classes=10, image_shape=(32, 32, 3), paper_source="tfds cifar10",
        cifar={"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"],
               "label_bytes": 1, "label_index": 0, "folder": "cifar-10-batches-bin"},
    ),
    "cifar100": Recipe(
        "cifar100", "image", "CIFAR-100 (fine labels), 50k/10k 32x32 RGB", "cifar",
        (OriginalFile("cifar-100-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                      "03b5dce01913d631647c71ecec9e9cb8"),),
        HubSource("uoft-cs/cifar100", {"train": "cifar100/train-*.parquet",
                                       "test": "cifar100/test-*.parquet"}, ("img", "fine_label")),
        download_size="170 MB", num_classes=100, image_shape=(32, 32, 3), paper_source="tfds cifar100",
        cifar={"train": ["train.bin"], "test": ["test.bin"], "label_bytes": 2, "label_index": 1,
               "folder": "cifar-100-binary"},
    ),
    "lm1b_32k": Recipe(
        "lm1b_32k", "lm", "One Billion Word benchmark (30.3M/307k sentences), T5 32k sentencepiece",
        "lm1b_text", (),
        HubSource("billion-word-benchmark/lm1b", {"train": "plain_text/train/*.parquet",
                                                  "test": "plain_text/test/*.parquet"}, ("text",),
                  revision="refs/convert/parquet"),
        download_size="3.3 GB", lm_splits=LM_REFERENCE_SPLITS["lm1b_32k"], paper_source="tfds lm1b",
    ),
    "wikipedia_en_32k": Recipe(
        "wikipedia_en_32k", "lm", "English Wikipedia articles, T5 32k sentencepiece", "", (),
        HubSource("wikimedia/wikipedia", {"train": "20231101.en/train-*.parquet"}, ("text",)),
        download_size="11 GB", lm_splits=LM_REFERENCE_SPLITS["wikipedia_en_32k"],
        paper_source="tfds wikipedia/20201201.en",
        note="the 20201201.en snapshot is no longer served; uses wikimedia/wikipedia 20231101.en",
    ),
}

LM1B_TEXT = {
    "train": "*training-monolingual.tokenized.shuffled/news.en-*",
    "test": "*heldout-monolingual.tokenized.shuffled/news.en.heldout-*",
}
"""LM1B's original text layout (statmt.org r13 archive, extracted), as TFDS reads it."""


def idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def has_originals(recipe: Recipe, folder: Path) -> bool:
    """Does `folder` hold a complete set of `recipe`'s original files?"""
    if not folder.is_dir():
        return False
    if recipe.original_format == "idx":
        return all(idx_file(folder, stem) for stem in IDX_FIELDS.values())
    if recipe.original_format == "cifar":
        if (folder / recipe.originals[0].name).is_file():
            return True
        members = recipe.cifar["train"] + recipe.cifar["test"]
        return all(any(folder.rglob(m)) for m in members)
    if recipe.original_format == "lm1b_text":
        return all(glob_files(folder, p) for p in LM1B_TEXT.values())
    return False


def has_parquet(recipe: Recipe, folder: Path) -> bool:
    """Does `folder` hold the hub's parquet shards (e.g. an ``hf download``)?"""
    if recipe.hub is None or not folder.is_dir():
        return False
    return all(glob_files(folder, p) for p in recipe.hub.patterns.values())


def candidate_dirs(name: str, root: str | os.PathLike | None = None,
                   extra: tuple[Path, ...] = ()) -> list[Path]:
    return [*map(Path, extra), cache.raw_dir(name, root), *map(Path, RECIPES[name].system_dirs)]


def find_local(name: str, root: str | os.PathLike | None = None,
               extra: tuple[Path, ...] = ()) -> Path | None:
    """The first folder holding `name`'s original files (given folders, raw/, system dirs)."""
    recipe = RECIPES[name]
    for d in candidate_dirs(name, root, extra):
        if has_originals(recipe, d):
            return d
    return None


def find_local_parquet(name: str, root: str | os.PathLike | None = None,
                       extra: tuple[Path, ...] = ()) -> Path | None:
    recipe = RECIPES[name]
    for d in candidate_dirs(name, root, extra):
        if has_parquet(recipe, d):
            return d
    return None


def missing_message(name: str, root: str | os.PathLike | None = None) -> str:
    """What to do when dataset `name` is neither cached nor found as original files."""
    r = RECIPES[name]
    msg = (f"dataset '{name}' is not prepared (no cache at {cache.dataset_dir(name, root)}). "
           f"Run `celo-bench data prepare {name}` (downloads ~{r.download_size} once; "
           "needs network and `pip install 'celo-bench[paper]'`)")
    if r.original_format in ("idx", "cifar"):
        files = (list(IDX_FIELDS.values()) if r.original_format == "idx"
                 else [r.originals[0].name])
        msg += (f", or put the original files ({', '.join(f + ('.gz' if r.original_format == 'idx' else '') for f in files)}) "
                f"in {cache.raw_dir(name, root)}")
        if r.system_dirs:
            msg += f" (Debian's package dataset-fashion-mnist installs them in {r.system_dirs[0]})"
    return msg + "."
