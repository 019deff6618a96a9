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
   downloaded into it once (when the network allows, :func:`celo_bench.hub.offline`; a damaged
   cached copy is removed and downloaded again, :func:`fetch_hf`), or
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

from celo_bench import hub
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


HUB_FIX = (f"`celo-bench run` downloads them where the network allows, into the Hugging Face cache "
           f"(`celo-bench plan` prints the `hf download` command of each), or set {ENV_FOLDER} to a folder "
           f"holding <optimizer>/{FILENAME}")
"""The fix of a learned optimizer whose published weights are not here, or came damaged."""


def fetch_hf(uri: str, *, name: str, expected_sha256: str | None = None) -> Path:
    """A Hugging Face file from the local cache, or downloaded into it once.

    A cached copy that fails its check is removed and downloaded again when the network allows
    (:func:`celo_bench.hub.obtain`, the rule datasets follow too): the check is the cache's own
    content hash (the blob's name), or `expected_sha256` (the spec's) where the cache knows
    none, and that the file is a whole msgpack document. Offline, or when the download fails,
    :class:`WeightsUnavailable` says why, with :data:`HUB_FIX` (``celo-bench plan`` prints the
    ``hf download`` command of each optimizer: :func:`celo_bench.pricing.fetch_command`).
    """
    repo, filename = _parse_hf(uri)
    fix = HUB_FIX  # one fix for every hub optimizer: a grid prints one line per reason

    def get(force: bool) -> Path:
        path = None if force else hub.cached(repo, filename)
        if path is not None:
            return path
        why = hub.offline_reason()
        if why:
            raise WeightsUnavailable(
                name, f"its published weights are not in the Hugging Face cache and the hub cannot be reached "
                f"(offline: {why})", fix)
        try:
            return hub.download(repo, filename, force=force)
        except Exception as e:  # network, auth, a missing repo: all end the same way for the user
            raise WeightsUnavailable(name, f"downloading its published weights failed ({type(e).__name__})",
                                     fix) from None

    def damaged(reason: str) -> WeightsUnavailable:
        return WeightsUnavailable(name, f"its published weights in the Hugging Face cache are damaged: {reason}", fix)

    return hub.obtain(get, functools.partial(_check_published, expected_sha256=expected_sha256), error=damaged)


def _check_published(path: Path, *, expected_sha256: str | None) -> None:
    """Raise :class:`celo_bench.hub.Damaged` when a downloaded weights file is not whole."""
    damage = hub.cache_damage(path)
    if damage:
        raise hub.Damaged(damage)
    if hub.cache_hash(path) is None and expected_sha256:
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != expected_sha256.lower():
            raise hub.Damaged(f"its sha256 {got[:12]}... is not the {expected_sha256[:12]}... the spec pins")
    import msgpack  # a whole msgpack document, without flax (planning imports no JAX)

    try:
        msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several types for bad input
        raise hub.Damaged(f"it is not a whole flax-msgpack file ({type(e).__name__}: {e})") from None


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
            return (f"The hub's file is whole but is not the one the spec pins (another checkpoint): give the "
                    f"published file through ${ENV_FOLDER}.")
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
        return Located(fetch_hf(source, name=spec.name, expected_sha256=sha), "hub", sha)
    if source.startswith(LOCAL_PREFIX):
        return Located(local(source, make=spec.checkpoint.get("make", "")), "local", None)
    if source and source != "none":
        return _explicit(spec, source)
    raise WeightsUnavailable(
        spec.name,
        "no published weights exist",
        f"make them with `celo-bench meta-train {spec.factory} --out {MADE_HERE}/{spec.name}` (about an hour "
        f"on 2 cores) and `export {ENV_FOLDER}={MADE_HERE}` (any folder holding {spec.name}/{FILENAME} will "
        "do; in Python: build(NAME, checkpoint=PATH))",
    )


MADE_HERE = "~/celo-bench-weights"
"""The folder the fix for weights that were never published suggests (``$CELO_BENCH_CHECKPOINTS``)."""


def resolve(spec, checkpoint: str | os.PathLike | None) -> tuple[Path, str | None]:
    """The file to load for `spec` and the sha256 it must have (None: not checked)."""
    found = locate(spec, checkpoint)
    return found.path, found.expected_sha256


__all__ = [
    "ENV_FOLDER",
    "FILENAME",
    "HUB_FIX",
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
