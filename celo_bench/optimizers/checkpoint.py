"""Meta-parameter checkpoints: the flax-msgpack ``theta.state`` format, read by key path.

Format (learned-optimizers.md §9.1): ``flax.serialization.to_bytes`` of the bare theta tree,
i.e. nested msgpack maps with string keys whose array leaves are ExtType 1
``[shape, dtype, raw bytes]``. haiku module names such as ``"rnn/linear"`` are single keys
containing a slash. Leaves are matched to the optimizer's template **by key path**, never by
leaf order (order-based loading swaps an LSTM's ``hidden`` and ``cell``).

Where a checkpoint comes from, in order (:func:`load_for_spec`):

1. the ``checkpoint`` argument: a local file or folder (holding ``theta.state``), or an
   ``hf://owner/repo[/file]`` URI;
2. ``$CELO_BENCH_CHECKPOINTS/<optimizer name>/theta.state``;
3. the spec's ``[checkpoint] source``: ``hf://amoudgl/<repo>``, from the Hugging Face cache
   or downloaded into it once (needs the optional ``huggingface_hub`` package and network);
   or ``local://<name>``, weights meta-trained on this machine and installed into the local
   weights folder (``$CELO_BENCH_WEIGHTS``, default ``~/.cache/celo-bench/weights``) by
   ``celo-bench meta-train ARCH --preset cpu --select-best --install``. Checkpoints are
   never committed to the repository: they are downloaded, made here, or given by path.

Files found through the spec (2 and 3) must match the spec's ``sha256``; a file the user
names explicitly (1) is trusted as theirs (e.g. their own meta-training) but must still have
exactly the architecture's tree. Nothing is returned unless every leaf matched.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from celo_bench.errors import CheckpointError

ENV_FOLDER = "CELO_BENCH_CHECKPOINTS"
FILENAME = "theta.state"
_PICKLE_PROTOCOL_MARK = b"\x80"


# --------------------------------------------------------------------------- tree helpers
def flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Nested dicts (or namedtuples) -> ``{key path: leaf}`` in insertion order."""
    if hasattr(tree, "_asdict"):
        tree = tree._asdict()
    out: dict[tuple[str, ...], Any] = {}
    for k, v in tree.items():
        path = prefix + (str(k),)
        if isinstance(v, Mapping) or hasattr(v, "_asdict"):
            out.update(flatten(v, path))
        else:
            out[path] = v
    return out


def unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict:
    out: dict = {}
    for path, leaf in flat.items():
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = leaf
    return out


def key_name(path: tuple[str, ...]) -> str:
    """``('rnn_params', 'rnn/linear', 'w')`` -> ``rnn_params['rnn/linear']/w`` style text."""
    return "/".join(f"[{k}]" if "/" in k else k for k in path)


# --------------------------------------------------------------------------- bytes <-> tree
def decode(data: bytes, *, origin: str = "checkpoint") -> dict:
    """Bytes of a ``theta.state`` file -> nested dict of NumPy arrays. Rejects pickles."""
    if data[:1] == _PICKLE_PROTOCOL_MARK and data[1:2] in bytes(range(2, 6)):
        raise CheckpointError(
            f"{origin} looks like a Python pickle; refusing to load it (unpickling can run "
            "code). Meta-parameters must be flax-msgpack (flax.serialization.to_bytes)."
        )
    from flax.serialization import msgpack_restore

    try:
        tree = msgpack_restore(data)
    except Exception as e:  # msgpack raises several types for bad input
        raise CheckpointError(
            f"{origin} is truncated or not a flax-msgpack meta-parameter file ({type(e).__name__}: "
            f"{e}). Re-download it or pass a valid --checkpoint PATH."
        ) from None
    if not isinstance(tree, dict) or not tree:
        raise CheckpointError(f"{origin} does not hold a meta-parameter tree (got {type(tree).__name__})")
    for path, leaf in flatten(tree).items():
        if not isinstance(leaf, np.ndarray | np.generic):
            raise CheckpointError(
                f"{origin}: key '{key_name(path)}' holds a {type(leaf).__name__}, not an array"
            )
    return tree


def encode(tree: Mapping[str, Any]) -> bytes:
    """Nested dict of arrays -> flax-msgpack bytes (keys in the given order)."""
    from flax.serialization import msgpack_serialize

    flat = {path: np.asarray(leaf) for path, leaf in flatten(tree).items()}
    return msgpack_serialize(unflatten(flat))


def read(path: str | os.PathLike, *, sha256: str | None = None) -> dict:
    """Read a checkpoint file (verifying `sha256` when given) into nested NumPy arrays."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    data = path.read_bytes()
    if sha256:
        verify_sha256(data, sha256, origin=str(path))
    return decode(data, origin=str(path))


def write(path: str | os.PathLike, tree: Mapping[str, Any]) -> Path:
    """Write `tree` as a ``theta.state`` file (atomically: temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(encode(tree))
    tmp.replace(path)
    return path


def verify_sha256(data: bytes, expected: str, *, origin: str) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got.lower() != expected.lower():
        raise CheckpointError(
            f"{origin}: sha256 {got} does not match the expected {expected}; the file is "
            "corrupt or a different checkpoint. Delete it and fetch it again, or pass your "
            "own file explicitly with --checkpoint PATH."
        )


# --------------------------------------------------------------------------- matching
def match(template: Mapping[str, Any], loaded: Mapping[str, Any], *, origin: str = "checkpoint") -> dict:
    """Map `loaded` onto `template` key path by key path; all or nothing.

    Raises CheckpointError naming the first (in template order) key that is missing,
    unexpected, or has another shape, with both shapes.
    """
    want, got = flatten(template), flatten(loaded)
    out = {}
    for path, leaf in want.items():
        shape = tuple(leaf.shape)
        if path not in got:
            raise CheckpointError(
                f"{origin} does not match this optimizer: key '{key_name(path)}' (shape {shape}) "
                f"is missing. Is it a checkpoint of another architecture?"
            )
        arr = np.asarray(got[path])
        if tuple(arr.shape) != shape:
            raise CheckpointError(
                f"{origin} does not match this optimizer: key '{key_name(path)}' has shape "
                f"{tuple(arr.shape)}, expected {shape}"
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise CheckpointError(f"{origin}: key '{key_name(path)}' has dtype {arr.dtype}, expected float")
        out[path] = arr.astype(leaf.dtype)
    extra = [p for p in got if p not in want]
    if extra:
        raise CheckpointError(
            f"{origin} does not match this optimizer: unexpected key '{key_name(extra[0])}' "
            f"(shape {tuple(np.shape(got[extra[0]]))})"
        )
    return unflatten(out)


def load(path: str | os.PathLike, template: Mapping[str, Any], *, sha256: str | None = None) -> dict:
    """Read `path` and match it to `template` (a tree of arrays or ShapeDtypeStructs)."""
    return match(template, read(path, sha256=sha256), origin=str(path))


# --------------------------------------------------------------------------- sources
def _parse_hf(uri: str) -> tuple[str, str]:
    parts = uri.removeprefix("hf://").strip("/").split("/")
    if len(parts) < 2:
        raise CheckpointError(f"'{uri}' is not hf://owner/repo[/file]")
    return "/".join(parts[:2]), "/".join(parts[2:]) or FILENAME


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
        f"pass --checkpoint PATH (a {FILENAME} file) or set {ENV_FOLDER} to a folder holding "
        f"<optimizer>/{FILENAME} (here: {name}/{FILENAME})"
    )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise CheckpointError(
            f"optimizer '{name}' needs its meta-parameters from {uri}, but huggingface_hub is not "
            f"installed (pip install 'celo-bench[paper]'); or {hint}"
        ) from None
    try:
        return Path(hf_hub_download(repo, filename, local_files_only=True))
    except Exception:  # not cached yet
        pass
    if not _hub_reachable():
        raise CheckpointError(
            f"optimizer '{name}' needs its meta-parameters from {uri}, which is not in the "
            f"Hugging Face cache, and huggingface.co cannot be reached (offline?); {hint}"
        )
    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as e:
        raise CheckpointError(
            f"could not download {uri} for optimizer '{name}' ({type(e).__name__}); no network? "
            f"Download it elsewhere and {hint}"
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
        raise CheckpointError(
            f"{uri}: no {FILENAME} at {path}; these weights are meta-trained on your machine, not "
            f"downloaded: {how} (or set {WEIGHTS_ENV} to the folder that holds them)"
        )
    return path


def resolve(spec, checkpoint: str | os.PathLike | None) -> tuple[Path, str | None]:
    """The file to load for `spec` and the sha256 it must have (None: not checked)."""
    sha = spec.checkpoint.get("sha256") or None
    if checkpoint is not None:
        text = str(checkpoint)
        if text.startswith("hf://"):
            return fetch_hf(text, name=spec.name), None
        if text.startswith(LOCAL_PREFIX):
            return local(text, make=spec.checkpoint.get("make", "")), None
        path = Path(text).expanduser()
        if path.is_dir():
            path = path / FILENAME
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} for optimizer '{spec.name}' does not exist")
        return path, None
    folder = os.environ.get(ENV_FOLDER)
    if folder:
        path = Path(folder).expanduser() / spec.name / FILENAME
        if path.is_file():
            return path, sha
    source = spec.checkpoint.get("source", "")
    if source.startswith("hf://"):
        return fetch_hf(source, name=spec.name), sha
    if source.startswith(LOCAL_PREFIX):
        return local(source, make=spec.checkpoint.get("make", "")), sha
    if source and source != "none":
        return resolve(spec, source)[0], sha
    raise CheckpointError(
        f"optimizer '{spec.name}' has no published checkpoint; pass --checkpoint PATH or set "
        f"{ENV_FOLDER} to a folder holding {spec.name}/{FILENAME}"
    )


def load_for_spec(spec, checkpoint: str | os.PathLike | None = None) -> dict:
    """The meta-parameters of learned optimizer `spec`, verified and matched to its tree."""
    import jax

    from celo_bench.optimizers._registry import factory

    entry = factory(spec.factory)
    if entry.init_meta_params is None:
        raise CheckpointError(f"optimizer factory '{spec.factory}' has no meta-parameter template")
    template = jax.eval_shape(entry.init_meta_params, jax.random.PRNGKey(0))
    path, sha = resolve(spec, checkpoint)
    return load(path, template, sha256=sha)


__all__ = [
    "ENV_FOLDER",
    "LOCAL_PREFIX",
    "WEIGHTS_ENV",
    "decode",
    "encode",
    "load",
    "load_for_spec",
    "match",
    "local",
    "read",
    "resolve",
    "verify_sha256",
    "weights_root",
    "write",
]
