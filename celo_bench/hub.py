"""Files from the Hugging Face hub, for weights and datasets alike: one rule for when the
machine is offline, one rule for a damaged file.

**Offline** (:func:`offline`): inside :func:`no_downloads` (``celo-bench plan``: a plan never
downloads), ``HF_HUB_OFFLINE`` is set (read when asked, not at import), or the hub's host
(``HF_ENDPOINT``, default huggingface.co) does not accept a connection within 3 s (probed
once per process: huggingface_hub would otherwise retry for half a minute).

**Damaged files** (:func:`obtain`): a file is fetched (from a cache when there), then checked;
one that fails its check is removed, never used and never kept, and fetched again once when
the machine is online. Offline, the caller's error says what was wrong and the command that
fetches it (``hf download ...``, :func:`download_command`; huggingface_hub 1.x and later
install no ``huggingface-cli``). The checks are the caller's: a learned optimizer's weights
(:mod:`celo_bench.weights`) are checked against the Hugging Face cache's own content hash
(:func:`cache_damage`; the blob's name is its sha256 for an LFS file, its git blob sha1
otherwise), against the spec's sha256 where the cache knows none, and for being a whole
msgpack document; a dataset's files (:mod:`celo_bench.data.fetch`) against the size and
hashes the publisher or the hub lists.

Imports no JAX; huggingface_hub is imported when a file is looked up.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from celo_bench import fileio

_TRUE = ("1", "true", "yes", "on")
DEFAULT_ENDPOINT = "https://huggingface.co"


class Damaged(Exception):
    """A fetched file failed its check; the message says how, in one line."""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def endpoint() -> str:
    """The hub's address: ``$HF_ENDPOINT`` or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


_NO_DOWNLOADS: list[str] = []


@contextlib.contextmanager
def no_downloads(why: str) -> Iterator[None]:
    """Count as offline while inside (`why` says so in messages), e.g. ``a plan never downloads``."""
    _NO_DOWNLOADS.append(why)
    try:
        yield
    finally:
        _NO_DOWNLOADS.pop()


def offline_reason() -> str:
    """Why the machine counts as offline for the hub ("" when it does not): see the module docstring."""
    if _NO_DOWNLOADS:
        return _NO_DOWNLOADS[-1]
    if _flag("HF_HUB_OFFLINE") or _flag("TRANSFORMERS_OFFLINE"):
        return "HF_HUB_OFFLINE is set"
    url = urllib.parse.urlparse(endpoint())
    host = url.hostname or "huggingface.co"
    if not _reachable(host, url.port or (80 if url.scheme == "http" else 443)):
        return f"{host} cannot be reached"
    return ""


def offline() -> bool:
    """Whether the hub counts as unreachable here (the one rule for weights and datasets)."""
    return bool(offline_reason())


@functools.cache
def _reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def cache_dir() -> Path:
    """The Hugging Face cache, resolved when asked (huggingface_hub reads it once, at import):
    ``$HF_HUB_CACHE``, ``$HUGGINGFACE_HUB_CACHE``, ``$HF_HOME/hub``, ``$XDG_CACHE_HOME/huggingface/hub``
    or ``~/.cache/huggingface/hub``."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def cached(repo: str, filename: str, *, repo_type: str = "model", revision: str | None = None) -> Path | None:
    """`repo`'s `filename` in the Hugging Face cache (no network), or None."""
    import huggingface_hub  # deferred: slow to import

    found = huggingface_hub.try_to_load_from_cache(repo, filename, cache_dir=cache_dir(), revision=revision,
                                                   repo_type=repo_type)
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def download(repo: str, filename: str, *, repo_type: str = "model", revision: str | None = None,
             force: bool = False, **kwargs: Any) -> Path:
    """Download `repo`'s `filename` with huggingface_hub (into the cache, or `local_dir=`);
    `force` fetches it even when a copy is there. Errors are huggingface_hub's."""
    import huggingface_hub

    if "local_dir" not in kwargs:
        kwargs["cache_dir"] = cache_dir()
    if force:
        kwargs["force_download"] = True
    return Path(huggingface_hub.hf_hub_download(repo, filename, repo_type=repo_type, revision=revision, **kwargs))


def download_command(repo: str, filename: str, *, repo_type: str = "model", revision: str | None = None,
                     local_dir: str | os.PathLike | None = None) -> str:
    """The ``hf download`` command that fetches one file (huggingface_hub's command line)."""
    cmd = f"hf download {repo} {filename}"
    if repo_type != "model":
        cmd += f" --repo-type {repo_type}"
    if revision:
        cmd += f" --revision {revision}"
    if local_dir is not None:
        cmd += f" --local-dir {local_dir}"
    return cmd


def git_blob_sha1(path: Path) -> str:
    """Git's object id of a file: sha1 over ``b"blob <size>\\0"`` + content (non-LFS hub files)."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def cache_hash(path: Path) -> str | None:
    """The content hash the Hugging Face cache files `path` under (its blob's name), or None
    where the cache does not say (not a link into ``blobs/``, e.g. a copy on Windows)."""
    if not path.is_symlink():
        return None
    name = Path(os.path.realpath(path)).name
    return name if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", name) else None


def cache_damage(path: Path) -> str:
    """Why the cache's copy at `path` does not match its own content hash ("" when it does, or
    when the cache knows no hash)."""
    want = cache_hash(path)
    if want is None:
        return ""
    blob = Path(os.path.realpath(path))
    if not blob.is_file():
        return "its blob in the Hugging Face cache is missing"
    got = fileio.sha256_file(blob) if len(want) == 64 else git_blob_sha1(blob)
    if got != want:
        return (f"{blob.stat().st_size} bytes whose hash {got[:12]}... is not the {want[:12]}... the hub lists "
                "(an interrupted or corrupted download)")
    return ""


def remove(path: Path) -> None:
    """Delete a damaged file: a cache link and the blob it points to, or the file itself."""
    blob = Path(os.path.realpath(path)) if path.is_symlink() else None
    for p in (path, blob):
        if p is not None:
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def obtain(get: Callable[[bool], Path], check: Callable[[Path], None], *,
           error: Callable[[str], Exception]) -> Path:
    """The one verify-and-refetch rule (see the module docstring).

    Args:
        get: ``get(force)`` returns the file: a cached copy when there (``force=False``) or a
            fresh download (``force=True``); it raises the caller's own error when it cannot
            (offline and not cached, a network failure).
        check: Raises :class:`Damaged` when the file is not what it must be.
        error: Builds the exception raised with one line (the damage, what was done, and
            why it was not fetched again); the caller adds its fix.

    Returns:
        The path of a file that passed `check`.
    """
    path = get(False)
    try:
        check(path)
        return path
    except Damaged as e:
        damage = str(e)
    remove(path)
    why = offline_reason()
    if why:
        raise error(f"{damage}; the damaged file was removed and cannot be fetched again here ({why})")
    path = get(True)
    try:
        check(path)
    except Damaged as e:
        remove(path)
        raise error(f"{damage}; fetched again, it is still damaged ({e}): the source itself is wrong or "
                    "changed") from None
    return path


__all__ = [
    "Damaged",
    "cache_damage",
    "cache_dir",
    "cache_hash",
    "cached",
    "download",
    "download_command",
    "endpoint",
    "git_blob_sha1",
    "obtain",
    "offline",
    "no_downloads",
    "offline_reason",
    "remove",
]
