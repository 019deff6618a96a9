"""``celo-bench data prepare``: obtain a dataset once and store it as compact cached arrays.

Sources, tried in this order with ``source="auto"``:

1. ``local``: original files (or the hub's parquet shards) in a folder given with
   ``--from``, in ``<cache>/raw/<name>/``, or where a system package put them
   (``/usr/share/datasets/fashion-mnist``); no network.
2. ``hub``: the HuggingFace hub parquet dataset (``huggingface_hub.hf_hub_download``).
3. ``original``: the publisher's files at their original URLs, through ``pooch``
   (optional extra ``paper``), checked against the published md5.

Every download is verified before use (:mod:`celo_bench.data.fetch`); arrays are
written to a hidden folder and renamed into place with the manifest
(:class:`~celo_bench.data.cache.Staging`), so a failure leaves the cache as it was.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from celo_bench import __version__, fileio
from celo_bench.data import cache, images, text
from celo_bench.data.fetch import Remote, fetch, resolve_hub
from celo_bench.data.formats import (
    glob_files,
    iter_parquet_text,
    iter_text_lines,
    parquet_rows,
    read_parquet_images,
)
from celo_bench.data.images import check_images, convert_original
from celo_bench.data.sources import (
    IDX_FIELDS,
    LM1B_TEXT,
    RECIPES,
    VOCAB,
    Recipe,
    find_local,
    find_local_parquet,
    idx_file,
)
from celo_bench.errors import CeloBenchError, DataMissingError, UnknownNameError
from celo_bench.paths import require_writable

SOURCES = ("auto", "local", "hub", "original")


def load_tokenizer(path: Path) -> text.Tokenizer:
    """The tokenizer of a vocabulary file (tests replace this with a stub)."""
    return text.SentencePieceTokenizer(path)


class _Quiet:
    """A stand-in for ``rich.progress.Progress`` when no bar is wanted."""

    def add_task(self, *a, **k) -> int:
        return 0

    def update(self, *a, **k) -> None:
        pass

    def advance(self, *a, **k) -> None:
        pass


def _describe_files(files: Sequence[Path], base: Path, digests: dict[str, dict] | None = None) -> list[dict]:
    out = []
    for f in files:
        d = (digests or {}).get(str(f)) or fileio.file_digests(f, ("sha256", "md5"))
        out.append({"name": f.relative_to(base).as_posix() if f.is_relative_to(base) else f.name,
                    "bytes": f.stat().st_size, **d})
    return out


def _download(remotes: Sequence[Remote], folder: Path, progress, fetcher) -> dict[str, dict]:
    digests = {}
    for r in remotes:
        dest = folder / r.name
        task = progress.add_task(f"download {Path(r.name).name}", total=r.size)
        digests[str(dest)] = fetcher(r, dest, lambda done, total, t=task: progress.update(t, completed=done, total=total))
        progress.update(task, completed=dest.stat().st_size)
    return digests


def _obtain(recipe: Recipe, source: str, from_dirs: tuple[Path, ...], root: Path, progress,
            fetcher) -> tuple[str, Path, dict[str, Any]]:
    """Find or download `recipe`'s files; returns (kind, folder, source metadata)."""
    errors = []
    order = ("local", "hub", "original") if source == "auto" else (source,)
    for kind in order:
        try:
            if kind == "local":
                folder = find_local(recipe.name, root, from_dirs)
                if folder is not None:
                    return "original", folder, {"kind": "local", "location": str(folder)}
                folder = find_local_parquet(recipe.name, root, from_dirs)
                if folder is not None:
                    return "parquet", folder, {"kind": "local-parquet", "location": str(folder)}
                raise DataMissingError(
                    f"no original files of '{recipe.name}' in {', '.join(map(str, from_dirs)) or 'the usual folders'}"
                )
            if kind == "hub":
                if recipe.hub is None:
                    raise DataMissingError(f"'{recipe.name}' has no hub source")
                remotes, commit = resolve_hub(recipe.hub)
                folder = cache.downloads_dir(recipe.name, root)
                digests = _download(remotes, folder, progress, fetcher)
                return "parquet", folder, {"kind": "hub", "repo": recipe.hub.repo, "revision": commit,
                                           "digests": digests}
            if kind == "original":
                if not recipe.originals:
                    raise DataMissingError(f"'{recipe.name}' has no original download URLs")
                remotes = [Remote(o.url, o.name, checksums={k: v for k, v in (("md5", o.md5), ("sha256", o.sha256)) if v})
                           for o in recipe.originals]
                folder = cache.downloads_dir(recipe.name, root)
                digests = _download(remotes, folder, progress, fetcher)
                return "original", folder, {"kind": "original", "location": recipe.originals[0].url,
                                            "digests": digests}
        except cache.DataCorruptError:
            raise  # a corrupted download is reported as such, never silently skipped
        except DataMissingError as e:
            errors.append(f"[{kind}] {e}")
    raise DataMissingError(f"cannot obtain dataset '{recipe.name}': " + "; ".join(errors))


def _source_files(recipe: Recipe, kind: str, folder: Path) -> dict[str, list[Path]]:
    """Source split -> files to convert, in order."""
    if kind == "parquet":
        return {s: glob_files(folder, p) for s, p in recipe.hub.patterns.items()}
    if recipe.original_format == "lm1b_text":
        return {s: glob_files(folder, p) for s, p in LM1B_TEXT.items()}
    if recipe.original_format == "idx":
        return {"all": [idx_file(folder, s) for s in IDX_FIELDS.values()]}
    archive = folder / recipe.originals[0].name
    if archive.is_file():
        return {"all": [archive]}
    return {"all": sorted(p for m in recipe.cifar["train"] + recipe.cifar["test"] for p in folder.rglob(m))}


def _vocab(root: Path, from_dirs: tuple[Path, ...], progress, fetcher) -> Path:
    """The T5 sentencepiece model: from --from folders, the cache, or the hub."""
    for d in from_dirs:
        for n in ("spiece.model", "sentencepiece.model"):
            if (d / n).is_file():
                return d / n
    path = cache.data_root(root) / "vocab" / "spiece.model"
    if path.is_file():
        return path
    remotes, _ = resolve_hub(VOCAB)
    _download(remotes[:1], path.parent, progress, fetcher)
    return path.parent / remotes[0].name


def _convert_lm(recipe: Recipe, kind: str, files: dict[str, list[Path]], tokenizer, length: int,
                progress) -> dict[str, np.ndarray]:
    out = {}
    for split, fs in files.items():
        if kind == "parquet":
            total, batches = parquet_rows(fs), iter_parquet_text(fs, recipe.hub.columns[0])
        else:
            total, batches = None, iter_text_lines(fs)
        task = progress.add_task(f"tokenise {recipe.name} {split}", total=total)
        out[f"{split}_tokens"] = text.tokenize_batches(
            batches, tokenizer, length, on_batch=lambda n, t=task: progress.advance(t, n))
    return out


def prepare(
    name: str,
    *,
    source: str = "auto",
    from_dirs: Sequence[str | Path] = (),
    root: str | Path | None = None,
    force: bool = False,
    max_seq_len: int = text.DEFAULT_MAX_SEQ_LEN,
    keep_downloads: bool = False,
    progress=None,
    fetcher=fetch,
) -> Path:
    """Prepare dataset `name` into the cache and return its folder.

    Args:
      name: a dataset of :data:`~celo_bench.data.sources.RECIPES`.
      source: ``auto`` | ``local`` | ``hub`` | ``original`` (see module docstring).
      from_dirs: folders to look in first for original files / parquet shards / spiece.model.
      root: cache root (default ``$CELO_BENCH_DATA`` or the user cache).
      force: rebuild even if the dataset is already cached.
      max_seq_len: language datasets keep ``max_seq_len + 1`` tokens per example.
      keep_downloads: keep the verified downloads after conversion.
      progress: a ``rich.progress.Progress`` (or None for no bars).
      fetcher: the download function (tests point it at local files).
    """
    if name not in RECIPES:
        raise UnknownNameError("dataset", name, RECIPES)
    if source not in SOURCES:
        raise DataMissingError(f"unknown source '{source}'; choose one of {', '.join(SOURCES)}")
    recipe, root = RECIPES[name], cache.data_root(root)
    progress = progress or _Quiet()
    from_dirs = tuple(Path(d).expanduser() for d in from_dirs)
    manifest = cache.read_manifest(name, root)
    if manifest is not None and not force and manifest.get("max_seq_len", max_seq_len) >= max_seq_len:
        return cache.dataset_dir(name, root)
    require_writable(root, "data cache", f"pass --data-dir DIR or set {cache.ENV_VAR} to a writable folder "
                     "(nothing was downloaded)")

    kind, folder, src = _obtain(recipe, source, from_dirs, root, progress, fetcher)
    files = _source_files(recipe, kind, folder)
    meta: dict[str, Any] = {"title": recipe.title, "paper_source": recipe.paper_source,
                            "note": recipe.note, "celo_bench_version": __version__}
    if recipe.kind == "image":
        if kind == "original":
            arrays = convert_original(recipe, folder)
        else:
            arrays = {}
            for split in ("train", "test"):
                x, y = read_parquet_images(files[split], *recipe.hub.columns)
                arrays[f"{split}_image"], arrays[f"{split}_label"] = x, y
            check_images(recipe, arrays, str(folder))
        meta["info"] = images.image_facts(name)
    else:
        vocab = _vocab(root, from_dirs, progress, fetcher)
        tokenizer = load_tokenizer(vocab)
        arrays = _convert_lm(recipe, kind, files, tokenizer, max_seq_len + 1, progress)
        meta["info"] = text.lm_facts(name, max_seq_len)
        meta["max_seq_len"] = max_seq_len
        meta["tokenizer"] = {"file": vocab.name, "sha256": fileio.sha256_file(vocab),
                             "source": f"{VOCAB.repo}/{vocab.name}", "pad_id": text.PAD_ID}
    digests = src.pop("digests", None)
    src["files"] = _describe_files([f for fs in files.values() for f in fs], folder, digests)
    meta["source"] = src
    try:
        with cache.staged(name, root) as st:  # a failure leaves no partial dataset behind
            for field_, arr in arrays.items():
                st.save(field_, arr)
            final = st.commit(meta)
    except OSError as e:
        raise CeloBenchError(f"could not write dataset '{name}' into {root}: {e.strerror or e}; free some space "
                             f"or pass --data-dir DIR (nothing was cached)") from None
    if src["kind"] in ("hub", "original") and not keep_downloads:
        shutil.rmtree(cache.downloads_dir(name, root), ignore_errors=True)
    images.clear_memory_cache()
    return final
