"""Downloads through pooch and huggingface_hub: verified, never half-written.

- Files a publisher serves (MNIST-style IDX, the CIFAR archives) come through
  :func:`pooch.retrieve` with the publisher's md5 or a pinned sha256: pooch writes a
  temporary file next to the target and moves it into place only once the hash matches
  (a mismatch deletes it). pooch is optional (``pip install 'celo-bench[paper]'``).
- Files of a HuggingFace hub repo come through :func:`huggingface_hub.hf_hub_download`
  (resumable, size-checked, honours ``HF_TOKEN``, ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``)
  and are then checked against the LFS sha256 (or git blob sha1) the hub lists for them; a
  copy that fails is removed and downloaded again once where the network allows
  (:func:`celo_bench.hub.obtain`, the rule learned optimizers' weights follow too).

Either way a mismatch raises :class:`~celo_bench.data.cache.DataCorruptError` and leaves
no file behind; an unreachable source raises :class:`~celo_bench.errors.DataMissingError`.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import huggingface_hub

from celo_bench import hub
from celo_bench.data.cache import DataCorruptError, file_digests
from celo_bench.data.sources import HubSource
from celo_bench.errors import DataMissingError

Progress = Callable[[int, int | None], None]
"""Called with (bytes done so far, total bytes or None)."""


@dataclass(frozen=True)
class HubFile:
    """Where the hub serves a :class:`Remote`: repo, repo type and the pinned commit."""

    repo: str
    repo_type: str
    revision: str


@dataclass(frozen=True)
class Remote:
    """A file to download: where from, where to (relative name), and what it must hash to."""

    url: str
    name: str
    size: int | None = None
    checksums: dict[str, str] = field(default_factory=dict)  # "sha256" | "md5" | "git-sha1"
    split: str = ""
    hub: HubFile | None = None  # set: fetched with hf_hub_download, else with pooch


class _Bar:
    """Feeds a :data:`Progress` callback from pooch's and huggingface_hub's progress bars
    (both call ``update(n)``; pooch sets ``total`` and calls ``reset``/``close``)."""

    def __init__(self, progress: Progress | None, total: int | None = None, initial: int = 0, **_: Any):
        self.progress, self.total, self.done = progress, total, initial

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.progress:
            self.progress(min(self.done, self.total) if self.total else self.done, self.total or None)

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        pass

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _check_size(path: Path | str, remote: Remote) -> None:
    size = os.path.getsize(path)
    if remote.size is not None and size != remote.size:
        raise DataCorruptError(f"{remote.name}: got {size} bytes, expected {remote.size} (truncated or wrong file)")


def check(path: Path, remote: Remote) -> None:
    """Verify `path` against every size and checksum `remote` lists (DataCorruptError if not)."""
    _check_size(path, remote)
    digests = file_digests(path, tuple(a for a in remote.checksums if a != "git-sha1"))
    if "git-sha1" in remote.checksums:
        digests["git-sha1"] = hub.git_blob_sha1(path)
    for algo, want in remote.checksums.items():
        if digests[algo] != want.lower():
            raise DataCorruptError(f"{remote.name}: {algo} mismatch (expected {want}, got {digests[algo]}); "
                                   "the download is corrupted or the source changed")


def _root(dest: Path, remote: Remote) -> Path:
    """The folder that `dest` = ``<folder>/<remote.name>`` (a relative path) lives under."""
    if dest.parts[-len(Path(remote.name).parts):] != Path(remote.name).parts:
        raise ValueError(f"{dest} does not end with {remote.name}")
    return dest.parents[len(Path(remote.name).parts) - 1]


def _pooch() -> ModuleType:
    try:
        import pooch
    except ImportError:
        raise DataMissingError("downloading the published files needs pooch: pip install 'celo-bench[paper]'") from None
    pooch.get_logger().setLevel("WARNING")  # our progress bars say what is downloading
    return pooch


def _copy_file(url: str, output_file: str, _pooch: object = None) -> None:
    """A pooch downloader for ``file://`` URLs (a local mirror)."""
    shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlparse(url).path), output_file)


def _via_pooch(remote: Remote, dest: Path, progress: Progress | None) -> None:
    pooch = _pooch()
    if remote.url.startswith("file://"):
        inner: Callable[..., Any] = _copy_file
    else:
        inner = pooch.HTTPDownloader(progressbar=_Bar(progress) if progress else False,
                                     headers={"User-Agent": "celo-bench"}, timeout=60)

    def download(url: str, output_file: str, p: object) -> None:
        inner(url, output_file, p)
        _check_size(output_file, remote)  # pooch then checks the hash, and deletes on failure

    algo = "sha256" if "sha256" in remote.checksums else "md5" if "md5" in remote.checksums else None
    known = f"{algo}:{remote.checksums[algo].lower()}" if algo else None
    try:
        pooch.retrieve(remote.url, known, fname=remote.name, path=_root(dest, remote), downloader=download)
    except ValueError as e:
        if "does not match the known hash" not in str(e):
            raise
        raise DataCorruptError(f"{remote.name}: {algo} mismatch ({e}); the download is corrupted or the "
                               "source changed") from None
    except OSError as e:  # requests' errors (connection, HTTP status, timeouts) are OSErrors too
        raise DataMissingError(f"cannot download {remote.url}: {e}") from None


def _via_hub(remote: Remote, dest: Path, progress: Progress | None) -> None:
    """hf_hub_download into the dataset's folder, then :func:`celo_bench.hub.obtain`'s rule: a
    file that fails its size or hash (hf_hub_download checks the size only, and returns a damaged
    local copy as it is) is removed and downloaded again once, where the network allows."""
    hubfile = remote.hub
    assert hubfile is not None
    root = _root(dest, remote)
    command = hub.download_command(hubfile.repo, remote.name, repo_type=hubfile.repo_type,
                                   revision=hubfile.revision, local_dir=root)
    fix = f"fetch it where the network allows: `celo-bench data prepare` again, or `{command}`"

    def get(force: bool) -> Path:
        kwargs: dict[str, Any] = {"force_download": True} if force else {}
        try:
            return Path(huggingface_hub.hf_hub_download(
                hubfile.repo, remote.name, repo_type=hubfile.repo_type, revision=hubfile.revision,
                local_dir=root, tqdm_class=functools.partial(_Bar, progress) if progress else None, **kwargs))
        except Exception as e:  # offline, network, auth, missing file: all end the same way for the user
            offline = hub.offline_reason()
            why = (f"offline ({offline}) and the file is not downloaded yet" if offline
                   else f"{type(e).__name__}: {e}".split("\n")[0])
            raise DataMissingError(f"cannot download {remote.url}: {why}") from None

    def verify(path: Path) -> None:
        try:
            check(path, remote)
        except DataCorruptError as e:
            raise hub.Damaged(str(e)) from None

    hub.obtain(get, verify, error=lambda why: DataCorruptError(f"{why}; fix: {fix}"))


def fetch(remote: Remote, dest: Path, progress: Progress | None = None) -> dict[str, str]:
    """Download `remote` to `dest` (kept when it already verifies); returns its md5 and sha256.

    `dest` must end with ``remote.name`` (the folder layout of the source is kept).

    Raises:
        DataCorruptError: size or checksum mismatch (nothing is left at `dest`).
        DataMissingError: the source cannot be reached, or pooch is missing.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if remote.hub is not None:
        _via_hub(remote, dest, progress)
    else:
        _via_pooch(remote, dest, progress)
    return file_digests(dest, ("md5", "sha256"))


def _hub_api() -> Any:
    return huggingface_hub.HfApi()


def resolve_hub(source: HubSource) -> tuple[list[Remote], str]:
    """List the hub files matching `source.patterns`, with their LFS sha256 and commit id.

    Returns ``(remotes, commit)``; every remote is pinned to the resolved commit so every
    file of one prepare comes from the same revision.
    """
    api = _hub_api()
    try:
        get_info = api.dataset_info if source.repo_type == "dataset" else api.model_info
        info = get_info(source.repo, revision=source.revision, files_metadata=True)
    except Exception as e:  # network, auth, missing repo, offline: all end the same way for the user
        raise DataMissingError(
            f"cannot reach the HuggingFace hub for {source.repo}@{source.revision}: {e}".split("\n")[0]
        ) from None
    commit = str(info.sha)
    hub = HubFile(source.repo, source.repo_type, commit)
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
            url = huggingface_hub.hf_hub_url(source.repo, s.rfilename, repo_type=source.repo_type,
                                             revision=commit)
            remotes.append(Remote(url=url, name=s.rfilename, size=s.size, checksums=checks, split=split, hub=hub))
    return remotes, commit
