"""Where a learned optimizer's meta-parameters come from (no JAX, no flax: planning uses it).

This folder is also the package data that holds the shipped weights,
``celo_bench/weights/<optimizer>/theta.state`` (``NOTICE.md`` gives source, commit, sha256
and license of each). :func:`locate` finds an optimizer's file, in order:

1. the ``checkpoint`` argument: a local file or folder (holding ``theta.state``), an
   ``hf://owner/repo[/file]`` URI or a ``local://<name>`` install;
2. ``$CELO_BENCH_CHECKPOINTS/<optimizer name>/theta.state``;
3. package data: the published Celo and Celo-Adam weights (MIT; Moudgil et al., *Celo:
   Training Versatile Learned Optimizers on a Compute Diet*, arXiv:2501.12670) and the
   weights this project meta-trained (cpu diet), each beside its meta-training card;
4. the spec's ``[checkpoint] source``: ``hf://amoudgl/<repo>`` from the Hugging Face cache or
   downloaded into it once (when the network allows; never with ``HF_HUB_OFFLINE=1``), or
   ``local://<name>``, weights installed by ``celo-bench meta-train ... --install`` into
   ``$CELO_BENCH_WEIGHTS`` (default ``~/.cache/celo-bench/weights``).

Files that stand for the spec's published weights (package data, the hub, and the
``$CELO_BENCH_CHECKPOINTS`` copy of a published optimizer) must match the spec's ``sha256``.
A file the user names, their own install (``local://``) and their folder's copy of a
*made-here* optimizer (a remake) are trusted as theirs. Whatever the source, the sha256 of
the bytes actually loaded enters every run key (:meth:`Located.sha256`), so results of
different weights are never mixed.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from celo_bench.errors import CheckpointError

ENV_FOLDER = "CELO_BENCH_CHECKPOINTS"
FILENAME = "theta.state"


class WeightsUnavailable(CheckpointError):
    """An optimizer's weights are not on this machine: `reason` and one working `fix`.

    The two are kept apart so that a grid can print one line per reason for all the
    optimizers it could not run, not a paragraph per optimizer.
    """

    def __init__(self, name: str, reason: str, fix: str):
        self.name, self.reason, self.fix = name, reason, fix
        super().__init__(f"optimizer '{name}': {reason}; fix: {fix}")


def verify_sha256(data: bytes, expected: str, *, origin: str, fix: str | None = None) -> None:
    """Raise :class:`CheckpointError` if `data`'s sha256 is not `expected` (hex, any case).

    `origin` names the file in the message; `fix` says what to do (default: delete it and fetch
    it again, or give one's own file).
    """
    got = hashlib.sha256(data).hexdigest()
    if got.lower() != expected.lower():
        raise CheckpointError(
            f"{origin}: sha256 {got} does not match the expected {expected}; the file is "
            f"corrupt or a different checkpoint. {fix or _MISMATCH_FIX}"
        )


_MISMATCH_FIX = ("Delete it and fetch it again, or give your own file explicitly with "
                 "build(NAME, checkpoint=PATH).")


def _parse_hf(uri: str) -> tuple[str, str]:
    parts = uri.removeprefix("hf://").strip("/").split("/")
    if len(parts) < 2:
        raise CheckpointError(f"'{uri}' is not hf://owner/repo[/file]")
    return "/".join(parts[:2]), "/".join(parts[2:]) or FILENAME


@functools.cache
def _hub_reachable(timeout: float = 3.0) -> bool:
    """Fail fast offline: huggingface_hub would otherwise retry for half a minute."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def fetch_hf(uri: str, *, name: str) -> Path:
    """A Hugging Face file from the local cache, or downloaded into it once."""
    repo, filename = _parse_hf(uri)
    hint = (
        f"download it once where the network allows (it stays in the Hugging Face cache), or set "
        f"{ENV_FOLDER} to a folder holding {name}/{FILENAME}"
    )
    from huggingface_hub import hf_hub_download  # deferred: only downloads need it (slow import)

    try:
        return Path(hf_hub_download(repo, filename, local_files_only=True))
    except Exception:  # not cached yet
        pass
    if not _hub_reachable():
        raise WeightsUnavailable(
            name,
            "its published weights are not in the Hugging Face cache and the hub cannot be "
            "reached (offline)",
            f"run once where the network allows (they download into the Hugging Face cache), or "
            f"set {ENV_FOLDER} to a folder holding <optimizer>/{FILENAME}",
        )
    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as e:
        raise WeightsUnavailable(
            name,
            f"downloading its published weights failed ({type(e).__name__})",
            f"download them where the network allows, or {hint}",
        ) from None


LOCAL_PREFIX = "local://"
WEIGHTS_ENV = "CELO_BENCH_WEIGHTS"


def weights_root() -> Path:
    """Where ``--install`` puts weights made here: ``$CELO_BENCH_WEIGHTS`` or the user cache."""
    return Path(os.environ.get(WEIGHTS_ENV) or Path.home() / ".cache" / "celo-bench" / "weights").expanduser()


def local(uri: str, *, make: str = "") -> Path:
    """The file of a ``local://<name>`` source; `make` is the command that creates it."""
    name = uri.removeprefix(LOCAL_PREFIX).strip("/")
    path = weights_root() / name / FILENAME
    if not name or not path.is_file():
        how = f"make them with `{make}`" if make else "make them with `celo-bench meta-train ... --install`"
        raise WeightsUnavailable(
            name or uri,
            f"{uri} is not installed (no {FILENAME} at {path}); these weights are meta-trained on "
            "your machine, not downloaded",
            f"{how} (or set {WEIGHTS_ENV} to the folder that holds them)",
        )
    return path


def packaged(name: str) -> Path | None:
    """The package-data copy of optimizer `name`'s weights (``celo_bench/weights/<name>``), if any."""
    path = Path(str(resources.files(__name__) / name / FILENAME))
    return path if path.is_file() else None


@dataclass(frozen=True)
class Located:
    """Where an optimizer's weights come from.

    ``path`` is the file; ``origin`` one of ``explicit``, ``env``, ``package``, ``hub``,
    ``local``; ``expected_sha256`` the hash the file must have (None: trusted as the user's).
    """

    path: Path
    origin: str
    expected_sha256: str | None

    def sha256(self) -> str:
        """The sha256 of the file's bytes (hex), verified against ``expected_sha256``."""
        data = self.path.read_bytes()
        if self.expected_sha256:
            verify_sha256(data, self.expected_sha256, origin=str(self.path), fix=self.mismatch_fix())
        return hashlib.sha256(data).hexdigest()

    def mismatch_fix(self) -> str | None:
        """What to do when this file's hash is wrong, by where it was found (None: the default)."""
        if self.origin == "env":
            return (f"It was found through ${ENV_FOLDER}: replace it there, or unset {ENV_FOLDER} to use "
                    "the weights that ship with the package or come from the hub.")
        if self.origin == "package":
            return "The copy inside the installed package is damaged: reinstall celo-bench."
        if self.origin == "hub":
            return "Delete it from the Hugging Face cache; it downloads again where the network allows."
        return None


def _explicit(spec, text: str) -> Located:
    if text.startswith("hf://"):
        return Located(fetch_hf(text, name=spec.name), "hub", None)
    if text.startswith(LOCAL_PREFIX):
        return Located(local(text, make=spec.checkpoint.get("make", "")), "local", None)
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} for optimizer '{spec.name}' does not exist")
    return Located(path, "explicit", None)


def locate(spec, checkpoint: str | os.PathLike | None = None) -> Located:
    """The weights file of learned optimizer `spec` (see the module docstring for the order).

    Raises CheckpointError with the reason and a working fix when no source has them.
    """
    sha = spec.checkpoint.get("sha256") or None
    made_here = bool(spec.checkpoint.get("label"))
    if checkpoint is not None:
        return _explicit(spec, str(checkpoint))
    folder = os.environ.get(ENV_FOLDER)
    if folder:
        path = Path(folder).expanduser() / spec.name / FILENAME
        if path.is_file():
            return Located(path, "env", None if made_here else sha)
    shipped = packaged(spec.name)
    if shipped is not None:
        return Located(shipped, "package", sha)
    source = spec.checkpoint.get("source", "")
    if source.startswith("hf://"):
        return Located(fetch_hf(source, name=spec.name), "hub", sha)
    if source.startswith(LOCAL_PREFIX):
        return Located(local(source, make=spec.checkpoint.get("make", "")), "local", None)
    if source and source != "none":
        return _explicit(spec, source)
    raise WeightsUnavailable(
        spec.name,
        "no published weights exist",
        f"set {ENV_FOLDER} to a folder holding <optimizer>/{FILENAME} (e.g. weights you made "
        f"with `celo-bench meta-train`), or give them with build(NAME, checkpoint=PATH)",
    )


def resolve(spec, checkpoint: str | os.PathLike | None) -> tuple[Path, str | None]:
    """The file to load for `spec` and the sha256 it must have (None: not checked)."""
    found = locate(spec, checkpoint)
    return found.path, found.expected_sha256


__all__ = [
    "ENV_FOLDER",
    "FILENAME",
    "LOCAL_PREFIX",
    "WEIGHTS_ENV",
    "Located",
    "WeightsUnavailable",
    "fetch_hf",
    "local",
    "locate",
    "packaged",
    "resolve",
    "verify_sha256",
    "weights_root",
]
