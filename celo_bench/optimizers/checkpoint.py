"""Meta-parameter checkpoints: the flax-msgpack ``theta.state`` format, read by key path.

Format: ``flax.serialization.to_bytes`` of the bare theta tree, i.e. nested msgpack maps with
string keys whose array leaves are ExtType 1 ``[shape, dtype, raw bytes]`` (the format of the
published Celo weights, Moudgil et al., *Celo: Training Versatile Learned Optimizers on a
Compute Diet*, arXiv:2501.12670). haiku module names such as ``"rnn/linear"`` are single keys
containing a slash. Leaves are matched to the optimizer's template **by key path**, never by
leaf order (order-based loading swaps an LSTM's ``hidden`` and ``cell``).

Where a checkpoint comes from (explicit path, ``$CELO_BENCH_CHECKPOINTS``, package data, the
hub) is :mod:`celo_bench.weights`; this module reads, verifies and matches the bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from celo_bench import fileio
from celo_bench.errors import CheckpointError
from celo_bench.weights import (
    ENV_FOLDER,
    FILENAME,
    LOCAL_PREFIX,
    WEIGHTS_ENV,
    Located,
    local,
    locate,
    packaged,
    resolve,
    verify_sha256,
    weights_root,
)

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
            f"{e}). Fetch it again, or give a valid file with build(NAME, checkpoint=PATH) or $CELO_BENCH_CHECKPOINTS."
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
    """Write `tree` as a ``theta.state`` file (atomically: :func:`celo_bench.fileio.atomic_write_bytes`)."""
    return fileio.atomic_write_bytes(path, encode(tree))


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


def load_for_spec(
    spec, checkpoint: str | os.PathLike | None = None, *, sha256: str | None = None
) -> dict:
    """The meta-parameters of learned optimizer `spec`, verified and matched to its tree.

    `sha256`, when given, is the hash the loaded bytes must have (the one planned into the
    run key); it is checked on top of the source's own expected hash.
    """
    import jax

    from celo_bench.optimizers._registry import factory

    entry = factory(spec.factory)
    if entry.init_meta_params is None:
        raise CheckpointError(f"optimizer factory '{spec.factory}' has no meta-parameter template")
    template = jax.eval_shape(entry.init_meta_params, jax.random.PRNGKey(0))
    found = locate(spec, checkpoint)
    data = found.path.read_bytes()
    for want in (found.expected_sha256, sha256):
        if want:
            verify_sha256(data, want, origin=str(found.path), fix=found.mismatch_fix())
    return match(template, decode(data, origin=str(found.path)), origin=str(found.path))


__all__ = [
    "ENV_FOLDER",
    "FILENAME",
    "LOCAL_PREFIX",
    "Located",
    "WEIGHTS_ENV",
    "decode",
    "encode",
    "load",
    "load_for_spec",
    "match",
    "local",
    "locate",
    "packaged",
    "read",
    "resolve",
    "verify_sha256",
    "weights_root",
    "write",
]
