"""Where benchmark results live: one JSON file per benchmark in a folder of their own.

``celo-bench bench NAME --out DIR`` writes ``DIR/NAME.json`` (default ``benchmarks/``,
beside ``results/`` and ``reports/``); a rerun replaces the file. Every file holds one
object::

    {"benchmark": "overhead", "created": "2026-11-30T05:40:00+00:00",
     "machine": {"jax": ..., "backend": "cpu", "device": ..., ...},
     "settings": {...},            # the options the benchmark ran with
     "rows": [...] or "result": {...}}

Rows are the benchmark's table (``overhead``: one object per optimizer with
``optimizer``, ``kind``, ``ms_per_step``, ``ratio_vs_adam``, ``meta_params``); a single
measurement (``engine``, ``grid-<suite>``) is ``result``. The report's runtime table reads
``overhead.json`` from this folder. A file gets the mode a plain ``open()`` would give it
(``0o666`` less the process umask), so others can read a shared folder of results.

    >>> import tempfile
    >>> from celo_bench.bench import results
    >>> results.path("benchmarks", "overhead").as_posix()
    'benchmarks/overhead.json'
    >>> out = tempfile.mkdtemp()
    >>> rows = [{"optimizer": "adam", "ms_per_step": 1.5, "ratio_vs_adam": 1.0}]
    >>> file = results.write(out, "overhead", settings={"unroll": 10}, machine={}, rows=rows)
    >>> results.read(out, "overhead")["rows"][0]["ms_per_step"]
    1.5
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celo_bench import fileio
from celo_bench.errors import CeloBenchError

DEFAULT_OUT = Path("benchmarks")
"""Default folder of benchmark results (relative to the working directory)."""


def path(out: str | os.PathLike, name: str) -> Path:
    """The file of benchmark `name` in folder `out`: ``<out>/<name>.json``."""
    return Path(out).expanduser() / f"{name}.json"


def write(
    out: str | os.PathLike,
    name: str,
    *,
    settings: Mapping[str, Any],
    machine: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]] | None = None,
    result: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<out>/<name>.json`` atomically (a temporary file renamed over the old one).

    Raises:
        CeloBenchError: `out` cannot be created or written (the message names the path).
    """
    payload: dict[str, Any] = {
        "benchmark": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": dict(machine),
        "settings": dict(settings),
    }
    if rows is not None:
        payload["rows"] = [dict(r) for r in rows]
    if result is not None:
        payload["result"] = dict(result)
    target = path(out, name)
    try:
        fileio.atomic_write_text(target, json.dumps(payload, indent=2, default=str) + "\n",
                                 prefix=f".tmp-{name}-", suffix=".json")
    except OSError as e:
        raise CeloBenchError(
            f"cannot write benchmark results to {target.parent}: {e.strerror or e}; pass --out DIR "
            "with a writable folder"
        ) from None
    return target


def read(out: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The stored object of benchmark `name` in `out`, or None when absent or unreadable."""
    file = path(out, name)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
