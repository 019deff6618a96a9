"""The dataset cache: one folder of compact ``.npy`` arrays plus a manifest per dataset.

Layout under :func:`data_root` (``$CELO_BENCH_DATA``, default the user cache)::

    <root>/<dataset>/manifest.json        sizes, shapes, dtypes, sha256 of arrays and sources
    <root>/<dataset>/<split>_<field>.npy  e.g. train_image.npy (uint8), test_tokens.npy (uint16)
    <root>/raw/<dataset>/                 original published files a user may drop in by hand
    <root>/downloads/<dataset>/           verified downloads (removed after a successful prepare)
    <root>/vocab/spiece.model             the T5 32k sentencepiece vocabulary

Arrays are written into a hidden temporary folder and moved into place with one rename,
so an interrupted or failed ``prepare`` never leaves a half-written dataset behind.
Arrays are plain ``.npy`` files read with ``allow_pickle=False``: no pickles anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from celo_bench import fileio
from celo_bench.errors import DataMissingError
from celo_bench.fileio import file_digests, sha256_file  # noqa: F401  (callers hash through the cache)

ENV_VAR = "CELO_BENCH_DATA"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class DataCorruptError(DataMissingError):
    """A download or a cached array does not match its checksum, size or format."""


def default_root() -> Path:
    """The platform's per-user cache folder + ``celo-bench/data`` (XDG on Linux).

    Hand-written (a few lines) instead of depending on ``platformdirs``.
    """
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "celo-bench" / "Cache" / "data"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "celo-bench" / "data"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "celo-bench" / "data"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The cache root: `root` if given, else ``$CELO_BENCH_DATA``, else :func:`default_root`."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else default_root()


def dataset_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    return data_root(root) / name


def raw_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where a user can put a dataset's original published files by hand."""
    return data_root(root) / "raw" / name


def downloads_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    return data_root(root) / "downloads" / name


def read_manifest(name: str, root: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The manifest of a cached dataset, or None when it is not (completely) cached."""
    path = dataset_dir(name, root) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataCorruptError(
            f"{path} is not valid JSON ({e}); run `celo-bench data prepare {name} --force`"
        ) from None


def load_arrays(
    name: str, fields: tuple[str, ...], root: str | os.PathLike | None = None, mmap: bool = False
) -> dict[str, np.ndarray]:
    """Arrays ``<field>.npy`` of a cached dataset, checked against the manifest's shape/dtype."""
    manifest = read_manifest(name, root)
    if manifest is None:
        raise DataMissingError(f"dataset '{name}' is not in the cache {dataset_dir(name, root)}")
    out = {}
    for field in fields:
        entry = manifest["arrays"].get(field)
        path = dataset_dir(name, root) / f"{field}.npy"
        if entry is None or not path.is_file():
            raise DataCorruptError(
                f"cached dataset '{name}' lacks {path.name}; "
                f"run `celo-bench data prepare {name} --force`"
            )
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if list(arr.shape) != entry["shape"] or str(arr.dtype) != entry["dtype"]:
            raise DataCorruptError(
                f"{path}: shape {arr.shape} / dtype {arr.dtype} differ from the manifest "
                f"({entry['shape']}, {entry['dtype']}); run `celo-bench data prepare {name} --force`"
            )
        out[field] = arr
    return out


def verify(name: str, root: str | os.PathLike | None = None) -> list[str]:
    """Recompute the sha256 of every cached array; returns the names that do not match."""
    manifest = read_manifest(name, root) or {"arrays": {}}
    bad = []
    for field, entry in manifest["arrays"].items():
        path = dataset_dir(name, root) / f"{field}.npy"
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            bad.append(field)
    return bad


class Staging:
    """A hidden folder that becomes ``<root>/<name>`` only on :meth:`commit`.

    Usage: ``with staged(name, root) as st: st.save("train_image", arr); st.commit(meta)``.
    Leaving the block without committing (an exception) deletes everything written.
    """

    def __init__(self, name: str, root: Path):
        self.name, self.root = name, root
        self.path = fileio.staging_folder(root / name, prefix=f".tmp-{name}-")
        self.arrays: dict[str, dict[str, Any]] = {}
        self.committed = False

    def save(self, field: str, array: np.ndarray) -> None:
        path = self.path / f"{field}.npy"
        np.save(path, np.ascontiguousarray(array), allow_pickle=False)
        self.arrays[field] = {
            "file": path.name, "shape": list(array.shape), "dtype": str(array.dtype),
            "bytes": path.stat().st_size, "sha256": sha256_file(path),
        }

    def commit(self, meta: Mapping[str, Any]) -> Path:
        """Write the manifest last, then swap the folder into place with one rename."""
        manifest = {
            "dataset": self.name, "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **meta, "arrays": self.arrays,
        }
        (self.path / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        final = fileio.swap_folder(self.path, self.root / self.name)
        self.committed = True
        return final

    def discard(self) -> None:
        if not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def staged(name: str, root: Path) -> Iterator[Staging]:
    st = Staging(name, root)
    try:
        yield st
    finally:
        st.discard()


def cached_names(root: str | os.PathLike | None = None) -> list[str]:
    base = data_root(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / MANIFEST).is_file())
