"""Downloads: one verified file at a time, never half-written.

Each :class:`Remote` carries the checksums known for it: the publisher's md5 (MNIST,
Fashion-MNIST, CIFAR pages), a pinned sha256, or the hub's LFS sha256 / git blob sha1
read from the HuggingFace API. :func:`fetch` streams the URL (``https://``, ``http://``
or ``file://``) into ``<dest>.part`` while hashing, checks size and every checksum, and
only then renames the file into place; a mismatch deletes the partial file and raises
:class:`~celo_bench.data.cache.DataCorruptError`. ``huggingface_hub`` (optional extra
``paper``) is imported lazily and only to list a hub repo's files and their hashes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celo_bench.data.cache import DataCorruptError, file_digests
from celo_bench.data.sources import HubSource
from celo_bench.errors import DataMissingError

Progress = Callable[[int, int | None], None]
"""Called with (bytes done so far, total bytes or None)."""


@dataclass(frozen=True)
class Remote:
    """A file to download: where from, where to (relative name), and what it must hash to."""

    url: str
    name: str
    size: int | None = None
    checksums: dict[str, str] = field(default_factory=dict)  # "sha256" | "md5" | "git-sha1"
    split: str = ""


def _git_blob_sha1(path: Path) -> str:
    """Git's object id of a file: sha1 over ``b"blob <size>\\0"`` + content (non-LFS hub files)."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def check(path: Path, remote: Remote) -> dict[str, str]:
    """Verify `path` against `remote`'s size and checksums; returns its md5 and sha256."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        raise DataCorruptError(
            f"{remote.name}: got {size} bytes, expected {remote.size} (truncated or wrong file)"
        )
    digests = file_digests(path, ("sha256", "md5"))
    if "git-sha1" in remote.checksums:
        digests["git-sha1"] = _git_blob_sha1(path)
    for algo, want in remote.checksums.items():
        if digests[algo] != want.lower():
            raise DataCorruptError(
                f"{remote.name}: {algo} mismatch (expected {want}, got {digests[algo]}); "
                "the download is corrupted or the source changed"
            )
    return {"md5": digests["md5"], "sha256": digests["sha256"]}


def _open(url: str):
    headers = {"User-Agent": "celo-bench"}
    token = os.environ.get("HF_TOKEN")
    if token and "huggingface" in url:
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)


def fetch(remote: Remote, dest: Path, progress: Progress | None = None) -> dict[str, str]:
    """Download `remote` to `dest` (skipped when `dest` already verifies); returns digests.

    The bytes go to ``dest.part`` first; `dest` appears only after every check passed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        try:
            return check(dest, remote)
        except DataCorruptError:
            dest.unlink()
    part = dest.with_name(dest.name + ".part")
    try:
        with _open(remote.url) as resp, open(part, "wb") as out:
            total = remote.size or int(resp.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        digests = check(part, remote)
    except DataCorruptError:
        part.unlink(missing_ok=True)
        raise
    except OSError as e:  # URLError, HTTPError, timeouts, disk errors
        part.unlink(missing_ok=True)
        raise DataMissingError(f"cannot download {remote.url}: {e}") from None
    os.replace(part, dest)
    return digests


def _hub_api() -> Any:
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise DataMissingError(
            "downloading from the HuggingFace hub needs the optional dependencies: "
            "pip install 'celo-bench[paper]'"
        ) from None
    return HfApi()


def hub_url(source: HubSource, path: str, revision: str) -> str:
    """The hub's download URL of `path` (``<endpoint>/[datasets/]<repo>/resolve/<rev>/<path>``)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    prefix = "datasets/" if source.repo_type == "dataset" else ""
    rev = urllib.parse.quote(revision, safe="")
    return f"{endpoint}/{prefix}{source.repo}/resolve/{rev}/{urllib.parse.quote(path)}"


def resolve_hub(source: HubSource) -> tuple[list[Remote], str]:
    """List the hub files matching `source.patterns`, with their LFS sha256 and commit id.

    Returns ``(remotes, commit)``; URLs are pinned to the resolved commit so every file of
    one prepare comes from the same revision.
    """
    api = _hub_api()
    try:
        get_info = api.dataset_info if source.repo_type == "dataset" else api.model_info
        info = get_info(source.repo, revision=source.revision, files_metadata=True)
    except Exception as e:  # network, auth, missing repo: all end the same way for the user
        raise DataMissingError(
            f"cannot reach the HuggingFace hub for {source.repo}@{source.revision}: {e}"
        ) from None
    remotes = []
    for split, pattern in source.patterns.items():
        hits = sorted((s for s in info.siblings if fnmatch.fnmatch(s.rfilename, pattern)),
                      key=lambda s: s.rfilename)
        if not hits:
            raise DataMissingError(
                f"{source.repo}@{source.revision} has no files matching '{pattern}' "
                "(the hub layout changed?); put the files in a folder and use --from DIR"
            )
        for s in hits:
            lfs = s.lfs
            sha = (getattr(lfs, "sha256", None) or (lfs.get("sha256") if isinstance(lfs, dict) else None)
                   if lfs else None)
            checks = {"sha256": sha} if sha else ({"git-sha1": s.blob_id} if s.blob_id else {})
            url = hub_url(source, s.rfilename, str(info.sha))
            remotes.append(Remote(url=url, name=s.rfilename, size=s.size, checksums=checks, split=split))
    return remotes, str(info.sha)
