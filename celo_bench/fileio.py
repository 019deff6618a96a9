"""Writing files and folders, each in one way: atomically, cleaned up on failure, normal modes.

Every file the package writes where a reader may look at it (run records, benchmark results,
checkpoints, cards, curves, resume state) goes through :func:`atomic_writer` (or its
shorthands :func:`atomic_write_bytes` / :func:`atomic_write_text`, or :func:`atomic_path`
for writers that want a file name): the bytes go to a uniquely named temporary file in the
target's own folder, are flushed and ``fsync``-ed, get the mode a plain ``open()`` would give
(``0o666`` less the umask; see :func:`celo_bench.paths.new_file_mode`) and are renamed over
the target in one ``os.replace``. A reader sees the old file or the new one, never half of
one; a failure (an exception, a full disk) removes the temporary file and re-raises; two
writers never share a temporary name. A killed process can leave a temporary file
(``.tmp-<name>-<random>`` unless the caller names a prefix), never a half target.

Folders (a dataset's cache, a report, installed weights) are written whole into a hidden
folder beside their place (:func:`staged_folder`) and swapped in by :func:`swap_folder`: the
old folder is renamed aside (``.<name>.old-<random>``), the new one renamed into place and
the old one deleted. A kill between the two renames leaves the old folder aside, which
:func:`recover_folder` puts back. :func:`move` renames a file into another folder (moving a
record aside). This module is the only one that calls ``os.replace``.

:func:`sha256_file` / :func:`file_digests` hash a file in 1 MiB chunks (datasets, weights,
downloads share them).

    >>> import tempfile
    >>> from pathlib import Path
    >>> from celo_bench import fileio
    >>> folder = Path(tempfile.mkdtemp())
    >>> with fileio.atomic_writer(folder / "a.json", "w") as f:
    ...     _ = f.write("{}")
    >>> (folder / "a.json").read_text(), sorted(p.name for p in folder.iterdir())
    ('{}', ['a.json'])
    >>> fileio.sha256_file(folder / "a.json")[:12]
    '44136fa355b3'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from celo_bench.paths import new_file_mode, set_new_file_mode

TMP_PREFIX = ".tmp-"
"""How temporary files and folders begin unless a caller names another prefix."""

_CHUNK = 1 << 20


# --------------------------------------------------------------------------- hashes
def file_digests(path: str | os.PathLike, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file for each of `algorithms` (``hashlib`` names), read once in 1 MiB chunks."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            for h in hashes.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashes.items()}


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 (lower-case hex) of the file at `path`, as ``sha256sum`` prints it."""
    return file_digests(path)["sha256"]


# --------------------------------------------------------------------------- files
def _prefix(target: Path, prefix: str | None) -> str:
    return prefix if prefix is not None else f"{TMP_PREFIX}{target.name}-"


def _discard(tmp: str | os.PathLike | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, prefix: str | None = None, suffix: str = "",
                mkdir: bool = True) -> Iterator[Path]:
    """Yield the name of a new empty temporary file beside `path`; on success it replaces `path`.

    For writers that want a file name (``pyarrow.parquet.write_table``, ``savefig``). On
    leaving the block normally the file is ``fsync``-ed, given the new-file mode and renamed
    over `path`; on an exception it is removed and the exception propagates.

    Args:
      path: the target.
      prefix: the temporary file's name starts with this (default ``.tmp-<name>-``); a random
        part follows.
      suffix: the temporary file's name ends with this (e.g. ``.png`` for writers that pick
        a format by extension).
      mkdir: create the target's folder (and its parents) first.
    """
    target = Path(path)
    if mkdir:
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(target, prefix), suffix=suffix, dir=target.parent)
    try:
        try:
            set_new_file_mode(fd)  # mkstemp makes it owner-only; the target is a normal file
        finally:
            os.close(fd)
        yield Path(tmp)
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                  prefix: str | None = None, suffix: str = "", mkdir: bool = True) -> Iterator[IO[Any]]:
    """Yield an open temporary file beside `path` (`mode` ``"wb"`` or ``"w"``); on success it
    replaces `path` atomically (flushed, ``fsync``-ed, new-file mode); on an exception it is
    removed and the exception propagates. See :func:`atomic_path` for the arguments."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_writer writes a new file: mode 'w' or 'wb', not {mode!r}")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with atomic_path(path, prefix=prefix, suffix=suffix, mkdir=mkdir) as tmp, open(tmp, mode, encoding=encoding) as f:
        yield f
        f.flush()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, **options: Any) -> Path:
    """Write `data` to `path` atomically (see :func:`atomic_writer`); returns `path`."""
    with atomic_writer(path, "wb", **options) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8", **options: Any) -> Path:
    """Write `text` to `path` atomically (see :func:`atomic_writer`); returns `path`."""
    with atomic_writer(path, "w", encoding=encoding, **options) as f:
        f.write(text)
    return Path(path)


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Rename file `src` to `dest` (one filesystem), creating `dest`'s folder; returns `dest`.

    Raises:
      FileNotFoundError: `src` is gone (e.g. moved by another process meanwhile).
      OSError: the rename failed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)
    return dest


# --------------------------------------------------------------------------- folders
def new_folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder under the process umask (``0o755`` under ``022``):
    the new-file mode with search rights wherever it gives read rights."""
    mode = new_file_mode()
    return mode | ((mode & 0o444) >> 2)


def _old_name(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.old-{secrets.token_hex(6)}"


def swap_folder(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Put folder `src` at `dest` (same parent folder), replacing whatever folder is there.

    Two renames: the old `dest` moves aside to ``.<name>.old-<random>``, `src` moves into
    place, then the old folder is deleted. Readers see the old folder or the new one (never
    a mix); a kill between the renames leaves the old folder aside (:func:`recover_folder`
    puts it back). Returns `dest`.
    """
    src, dest = Path(src), Path(dest)
    if dest.exists():
        old = _old_name(dest)
        os.replace(dest, old)
        try:
            os.replace(src, dest)
        except BaseException:
            os.replace(old, dest)  # put the old folder back: nothing changed
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)
    return dest


def recover_folder(dest: str | os.PathLike, *, tmp_prefix: str | None = None) -> None:
    """Undo what a killed :func:`swap_folder` or :func:`staged_folder` left beside `dest`.

    An old folder left aside is put back if `dest` is gone; other old folders, and temporary
    folders named with `tmp_prefix` (default ``.<name>.tmp-``), are deleted. Call it only
    while no other writer of `dest` is at work (under the writers' lock).
    """
    dest = Path(dest)
    olds = sorted(dest.parent.glob(f".{_glob_escape(dest.name)}.old-*"))
    if not dest.exists() and olds:
        os.replace(olds.pop(), dest)
    prefix = tmp_prefix if tmp_prefix is not None else f".{dest.name}.tmp-"
    for p in [*olds, *dest.parent.glob(_glob_escape(prefix) + "*")]:
        shutil.rmtree(p, ignore_errors=True)


def _glob_escape(text: str) -> str:
    """`text` with the glob pattern characters ``*?[`` taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def staging_folder(dest: str | os.PathLike, *, prefix: str | None = None) -> Path:
    """A new empty hidden folder beside `dest` (created with its parents), to be swapped in by
    :func:`swap_folder`: named `prefix` (default ``.<name>.tmp-``) plus a random part, with the
    mode of a normal new folder. The caller deletes it if it is not swapped in."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix if prefix is not None else f".{dest.name}.tmp-", dir=dest.parent))
    try:
        tmp.chmod(new_folder_mode())  # mkdtemp makes it owner-only
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


@contextlib.contextmanager
def staged_folder(dest: str | os.PathLike, *, prefix: str | None = None) -> Iterator[Path]:
    """Yield a :func:`staging_folder` for `dest`; leaving the block normally swaps it in whole
    (:func:`swap_folder`), an exception deletes it and propagates (`dest` is untouched)."""
    tmp = staging_folder(dest, prefix=prefix)
    try:
        yield tmp
        swap_folder(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = [
    "TMP_PREFIX",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "file_digests",
    "move",
    "new_folder_mode",
    "recover_folder",
    "sha256_file",
    "staged_folder",
    "staging_folder",
    "swap_folder",
]
