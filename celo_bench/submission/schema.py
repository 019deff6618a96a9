"""``submission.toml``: the metadata of a submitted optimizer, parsed and validated.

A submission is a folder with two files (see ``submissions/template/``)::

    submission.toml   name, authors, description, kind, license, search space,
                      and for learned optimizers a checkpoint and a meta-training card
    optimizer.py      one factory, ``make_optimizer``, returning an optax transformation

Parsing executes no code from the folder: it only reads TOML. Every error is a
:class:`~celo_bench.errors.SpecError` naming the file and the key, with the fix.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from celo_bench._schema import Field, read_toml, validate
from celo_bench.errors import SpecError

TOML_NAME = "submission.toml"
CODE_NAME = "optimizer.py"
FACTORY_NAME = "make_optimizer"
KINDS = ("handcrafted", "learned")
MAX_POINTS = 64
"""Largest search space (grid points): every point is trained on every task and seed."""
TEMPLATE_HINT = "see submissions/template/submission.toml"

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")

_FIELDS = {
    "name": Field((str,), required=True),
    "authors": Field((list,), required=True),
    "description": Field((str,), required=True),
    "kind": Field((str,), required=True, choices=KINDS),
    "license": Field((str,), required=True),
    "reference": Field((str,), default=""),
    "defaults": Field((dict,), default=None),
    "search_space": Field((dict,), default=None),
    "checkpoint": Field((dict,), default=None),
    "meta_training": Field((dict,), default=None),
}
_CHECKPOINT_FIELDS = {
    "source": Field((str,), required=True),
    "sha256": Field((str,), required=True),
}
_CARD_FIELDS = {
    "tasks": Field((str, list), required=True),
    "compute": Field((str,), required=True),
    "note": Field((str,), default=""),
}


@dataclass(frozen=True)
class Submission:
    """A parsed ``submission.toml`` (nothing from ``optimizer.py`` has been run)."""

    folder: Path
    name: str
    authors: tuple[str, ...]
    description: str
    kind: str
    license: str
    reference: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, tuple[float, ...]] = field(default_factory=dict)
    checkpoint: dict[str, str] = field(default_factory=dict)  # source, sha256 (learned only)
    meta_training: dict[str, Any] = field(default_factory=dict)  # tasks, compute, note

    @property
    def toml_path(self) -> Path:
        return self.folder / TOML_NAME

    @property
    def code_path(self) -> Path:
        return self.folder / CODE_NAME

    @property
    def learned(self) -> bool:
        return self.kind == "learned"

    def card(self) -> str:
        """The meta-training card as one line (shown under the leaderboard)."""
        if not self.meta_training:
            return ""
        tasks = self.meta_training["tasks"]
        tasks = ", ".join(tasks) if isinstance(tasks, list | tuple) else tasks
        note = self.meta_training.get("note", "")
        return f"meta-trained on {tasks}; compute: {self.meta_training['compute']}" + (
            f"; {note}" if note else ""
        )


def source_sha256(folder: Path) -> str:
    """sha256 of ``optimizer.py`` (the same as ``sha256sum optimizer.py``)."""
    return hashlib.sha256((Path(folder) / CODE_NAME).read_bytes()).hexdigest()


def log_range(path: Path, key: str, table: dict[str, Any]) -> tuple[float, ...]:
    """``{low, high, num}`` -> ``num`` log-spaced points from low to high, both included."""
    example = "{ low = 1e-4, high = 1e-1, num = 7 }"
    if set(table) != {"low", "high", "num"}:
        raise SpecError(path, key, f"a range needs exactly the keys low, high and num (got "
                        f"{', '.join(sorted(table)) or 'none'}); write e.g. {key.split('.')[-1]} = {example}")
    low, high, num = table["low"], table["high"], table["num"]
    for k, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise SpecError(path, f"{key}.{k}", f"must be a positive finite number (the range is "
                            f"log-scaled), got {v!r}")
    if not low < high:
        raise SpecError(path, key, f"low ({low!r}) must be smaller than high ({high!r})")
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise SpecError(path, f"{key}.num", f"must be an integer >= 2 (points from low to high), got {num!r}")
    return tuple(float(x) for x in np.geomspace(float(low), float(high), num))


def points_list(path: Path, key: str, values: list) -> tuple[float, ...]:
    """An explicit list of finite, distinct numbers."""
    if not values:
        raise SpecError(path, key, "is an empty list; give at least one value, e.g. [1e-3, 1e-2]")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise SpecError(path, key, f"values must be finite numbers, got {v!r}")
        out.append(float(v))
    if len(set(out)) != len(out):
        raise SpecError(path, key, f"has repeated values {values!r}; list each point once")
    return tuple(out)


def parse_search_space(path: Path, table: Any) -> dict[str, tuple[float, ...]]:
    """``[search_space]``: hyper-parameter -> list of points, or a log range {low, high, num}."""
    if not isinstance(table, dict):
        raise SpecError(path, "search_space", f"must be a table of hyper-parameter = [points] or "
                        f"{{ low, high, num }}, got {table!r}")
    space = {}
    for name, value in table.items():
        key = f"search_space.{name}"
        if not name.isidentifier():
            raise SpecError(path, key, "is not a Python identifier; it must be a keyword argument "
                            "of make_optimizer")
        if isinstance(value, list):
            space[name] = points_list(path, key, value)
        elif isinstance(value, dict):
            space[name] = log_range(path, key, value)
        else:
            raise SpecError(path, key, f"expected a list of points or a table {{ low, high, num }}, "
                            f"got {type(value).__name__} {value!r}")
    n = math.prod(len(v) for v in space.values())
    if n > MAX_POINTS:
        raise SpecError(path, "search_space", f"has {n} points, more than {MAX_POINTS}; every point "
                        "is trained on every task and seed: use fewer values")
    return space


def _defaults(path: Path, table: dict[str, Any]) -> dict[str, Any]:
    for k, v in table.items():
        if not k.isidentifier():
            raise SpecError(path, f"defaults.{k}", "is not a Python identifier (a keyword of make_optimizer)")
        if not isinstance(v, bool | int | float | str):
            raise SpecError(path, f"defaults.{k}", f"must be a number, bool or string, got {type(v).__name__}")
    return dict(table)


def parse_submission(folder: str | Path) -> Submission:
    """Read and validate ``folder/submission.toml``.

    Raises:
        SpecError: a missing file or key, a wrong type, a malformed search space, a
            checkpoint table on a hand-crafted submission (or none on a learned one).
    """
    folder = Path(folder).expanduser().resolve()
    if folder.is_file() and folder.name in (TOML_NAME, CODE_NAME):
        folder = folder.parent  # the user pointed at a file of the submission
    path = folder / TOML_NAME
    if not folder.is_dir():
        raise SpecError(folder, "<folder>", "is not a folder; a submission is a folder holding "
                        f"{TOML_NAME} and {CODE_NAME} (copy submissions/template/)")
    for required in (TOML_NAME, CODE_NAME):
        if not (folder / required).is_file():
            raise SpecError(folder / required, "<file>", "is missing; copy it from submissions/template/")
    raw = validate(path, read_toml(path), _FIELDS)
    name = raw["name"]
    if not _NAME_RE.match(name):
        raise SpecError(path, "name", f"'{name}' must be 1-40 characters of lower-case letters, digits "
                        "and _, starting with a letter (it names folders in the results store)")
    authors = raw["authors"]
    if not authors or not all(isinstance(a, str) and a.strip() for a in authors):
        raise SpecError(path, "authors", 'must be a non-empty list of names, e.g. ["Ada Lovelace"]')
    for key in ("description", "license"):
        if not raw[key].strip():
            raise SpecError(path, key, f"is empty; {TEMPLATE_HINT}")
    defaults = _defaults(path, raw["defaults"] or {})
    space = parse_search_space(path, raw["search_space"] or {})
    for k in space:
        if k in defaults:
            raise SpecError(path, f"search_space.{k}", "is also set in [defaults]; tune it or fix it, not both")
    ckpt, card = raw["checkpoint"], raw["meta_training"]
    if raw["kind"] == "learned":
        if ckpt is None:
            raise SpecError(path, "checkpoint", "learned submissions need a [checkpoint] table with "
                            f"source and sha256; {TEMPLATE_HINT}")
        ckpt = validate(path, ckpt, _CHECKPOINT_FIELDS, prefix="checkpoint.")
        if not _SHA_RE.match(ckpt["sha256"].lower()):
            raise SpecError(path, "checkpoint.sha256", "must be 64 hexadecimal digits (run "
                            "`sha256sum theta.state`)")
        if card is None:
            raise SpecError(path, "meta_training", "learned submissions need a [meta_training] card "
                            f"with tasks and compute; {TEMPLATE_HINT}")
        card = validate(path, card, _CARD_FIELDS, prefix="meta_training.")
    else:
        for key, table in (("checkpoint", ckpt), ("meta_training", card)):
            if table is not None:
                raise SpecError(path, key, "is only for kind = \"learned\"; remove it or change kind")
    return Submission(
        folder=folder, name=name, authors=tuple(authors), description=raw["description"].strip(),
        kind=raw["kind"], license=raw["license"].strip(), reference=raw["reference"],
        defaults=defaults, search_space=space,
        checkpoint={"source": ckpt["source"], "sha256": ckpt["sha256"].lower()} if ckpt else {},
        meta_training=dict(card) if card else {},
    )


def check_points(sub: Submission) -> list[dict[str, float]]:
    """Up to three points of the search space for the code checks: first, middle, last."""
    from celo_bench.plan import grid_points

    pts = grid_points(sub.search_space)
    if len(pts) <= 3:
        return pts
    return [pts[0], pts[len(pts) // 2], pts[-1]]
