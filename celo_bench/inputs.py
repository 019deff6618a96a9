"""What a run reads besides its specs: the data files and the meta-parameters, fingerprinted.

A run key must change whenever a number can change (design: "record everything that could
change a number"). Specs are hashed by :mod:`celo_bench.plan`; this module adds the content
of the inputs a job reads at execution time, so that replacing a dataset or a weights file
(same tree, other values) gives new keys instead of stale records:

- **data**: for a paper dataset, its publisher's file digests (verified on download); for data that ships with installed packages (8x8
  digits, ``pydoc_data`` text), the loaded arrays themselves (so a quick-tier key changes
  with the Python release whose bundled text it trains on: the data differ);
- **weights**: the sha256 of the ``theta.state`` bytes a learned optimizer will load, from
  whichever source :func:`celo_bench.weights.locate` picks.

Nothing here imports JAX. Fingerprints are memoised for the process.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from celo_bench import data as datasets
from celo_bench import weights
from celo_bench.data.synthetic import is_synthetic
from celo_bench.errors import CheckpointError, DataMissingError
from celo_bench.strategy import backend_kind
from celo_bench.suite import OptimizerSpec, TaskSpec, canonical_json


@dataclass(frozen=True)
class WeightsInput:
    """The weights a learned optimizer's job will load, or why it cannot run here."""

    path: str | None
    sha256: str | None
    origin: str | None
    unavailable: str = ""  # the whole one-line message
    reason: str = ""  # ... split into the reason and one working fix (for grouped summaries)
    fix: str = ""
    pinned: str | None = None  # the sha256 the spec pins (the published file's)

    @property
    def key_sha256(self) -> str | None:
        """The hash that enters run keys: the file's, or, where the file is not here, the one the
        spec pins (so stored results of published weights are found on a machine without them)."""
        return self.sha256 or self.pinned


def _hash_arrays(splits: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for split in sorted(splits):
        for name in sorted(splits[split]):
            arr = np.ascontiguousarray(splits[split][name])
            h.update(f"{split}/{name}:{arr.dtype.str}:{arr.shape};".encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def _published(name: str) -> dict | None:
    """What a paper dataset must be: its publisher's file digests or pinned hub revision."""
    r = datasets.RECIPES.get(name)
    if r is None:
        return None
    files = [(f.name, f.sha256 or f.md5) for f in r.originals]
    hub = [r.hub.repo, r.hub.revision, sorted(r.hub.patterns.items())] if r.hub else None
    return {"dataset": name, "originals": files, "hub": hub} if (any(d for _, d in files) or hub) else None


@functools.cache
def _data_fingerprint(name: str, options_json: str) -> str:
    options = json.loads(options_json)
    if is_synthetic(name):
        return "synthetic"
    published = _published(name)
    if published is not None:
        # the same key wherever it is computed, data present or not (scoring elsewhere)
        return hashlib.sha256(canonical_json({**published, "options": options}).encode()).hexdigest()
    datasets.require(name, options)
    return _hash_arrays(datasets.load(name, options).splits)


def data_fingerprint(task: TaskSpec) -> str:
    """sha256 (hex) naming the content of the data task `task` trains on.

    Paper datasets: their publisher's file digests (or pinned hub revision) and the task's
    data options (downloads are verified against them; a system copy, such as Debian's
    re-compressed Fashion-MNIST, is checked for shapes and classes when loaded), so the key
    is the same on a machine without the data (scoring stored results elsewhere). Data that
    ships with packages (digits, pydoc text): the loaded arrays themselves.

    Raises:
      DataMissingError: the dataset is needed to fingerprint it and is not present (the
        message names the command that fetches it).
    """
    return _data_fingerprint(task.dataset, canonical_json(dict(task.data)))


def data_missing(task: TaskSpec) -> str:
    """Why task `task`'s dataset cannot be loaded here, with the command that fetches it ("" if it can)."""
    try:
        datasets.require(task.dataset, dict(task.data))
    except DataMissingError as e:
        return str(e)
    return ""


_WEIGHTS: dict[str, WeightsInput] = {}


def weights_input(spec: OptimizerSpec) -> WeightsInput | None:
    """The weights learned optimizer `spec` will load (None for a hand-crafted one).

    Never raises for a missing checkpoint: the reason (with its fix) is in ``unavailable``.
    A file whose bytes do not match the spec's sha256 is unavailable too.
    """
    if spec.kind != "learned":
        return None
    memo = f"{spec.name}:{canonical_json(spec.resolved())}"
    pinned = spec.checkpoint.get("sha256") or None
    if memo not in _WEIGHTS:
        try:
            found = weights.locate(spec)
            _WEIGHTS[memo] = WeightsInput(str(found.path), found.sha256(), found.origin)
        except weights.WeightsUnavailable as e:
            _WEIGHTS[memo] = WeightsInput(None, None, None, unavailable=str(e), reason=e.reason, fix=e.fix,
                                          pinned=pinned)
        except CheckpointError as e:  # e.g. a shipped or cached file that fails its sha256
            _WEIGHTS[memo] = WeightsInput(None, None, None, unavailable=str(e), reason=str(e), pinned=pinned)
    return _WEIGHTS[memo]


def clear() -> None:
    """Forget memoised fingerprints (after files were replaced in place)."""
    _data_fingerprint.cache_clear()
    _WEIGHTS.clear()


__all__ = ["WeightsInput", "backend_kind", "clear", "data_fingerprint", "data_missing", "weights_input"]
