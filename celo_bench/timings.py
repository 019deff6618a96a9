"""Per-step timings of single runs, by device kind: where they live and how they are read.

``celo-bench bench step-time --suite S`` (:mod:`celo_bench.bench.step_time`) writes
``<out>/step_time-<slug>.json`` for the device kind it ran on (``slug`` is the kind in
lower case with every other character run replaced by ``-``: ``NVIDIA H200`` ->
``nvidia-h200``). Each row is one (task, optimizer) with ``seconds_per_step``: the median
time of one jitted training step of one run (forward, backward, optimizer update).

This module imports no JAX and sits beside scoring (the probe in ``bench/`` writes the files;
scoring and reports, below ``bench/``, read them through this module).
Timings of one device kind are never combined with another's: a kind has its own file,
and :func:`read_step_times` returns only the rows of the kind asked for.

    >>> import json, tempfile
    >>> from celo_bench import timings
    >>> timings.slug("NVIDIA H200")
    'nvidia-h200'
    >>> out = tempfile.mkdtemp()
    >>> doc = {"device_kind": "cpu", "rows": [{"task": "t", "optimizer": "adam", "seconds_per_step": 0.002}]}
    >>> _ = timings.path(out, "cpu").write_text(json.dumps(doc))
    >>> timings.read_step_times(out, "cpu")
    {('t', 'adam'): 0.002}
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

DEFAULT_OUT = Path("benchmarks")
"""Default benchmark folder; the same as :data:`celo_bench.bench.results.DEFAULT_OUT`
(repeated here because scoring sits below ``bench/``; a test checks they agree)."""
BENCHMARK = "step_time"
UNKNOWN_KIND = "unknown"


def slug(device_kind: str) -> str:
    """The file-name form of a device kind (lower case, runs of other characters -> ``-``)."""
    return re.sub(r"[^a-z0-9]+", "-", str(device_kind).lower()).strip("-") or UNKNOWN_KIND


def name(device_kind: str) -> str:
    """Benchmark name of the timings of `device_kind`: ``step_time-<slug>``."""
    return f"{BENCHMARK}-{slug(device_kind)}"


def path(out: str | os.PathLike, device_kind: str) -> Path:
    """``<out>/step_time-<slug>.json``."""
    return Path(out).expanduser() / f"{name(device_kind)}.json"


def read_document(out: str | os.PathLike, device_kind: str) -> dict | None:
    """The stored timing document of `device_kind` in `out`, or None when absent or unreadable."""
    try:
        doc = json.loads(path(out, device_kind).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def document_kind(doc: dict) -> str | None:
    """The device kind a timing document records (``settings.device_kind``, else a top-level
    ``device_kind``, else ``machine.device``), or None when it records none."""
    for holder, key in ((doc.get("settings"), "device_kind"), (doc, "device_kind"), (doc.get("machine"), "device")):
        if isinstance(holder, dict) and holder.get(key):
            return str(holder[key])
    return None


def read_step_times(out: str | os.PathLike, device_kind: str) -> dict[tuple[str, str], float]:
    """(task, optimizer) -> seconds per step of one run, measured on `device_kind` only.

    Rows of another device kind (a file copied or renamed by hand) and rows without a
    positive finite time are left out; an absent or unreadable file gives ``{}``.
    """
    doc = read_document(out, device_kind)
    if doc is None or document_kind(doc) not in (None, str(device_kind)):
        return {}
    times: dict[tuple[str, str], float] = {}
    for row in doc.get("rows") or []:
        try:
            s = float(row["seconds_per_step"])
            key = (str(row["task"]), str(row["optimizer"]))
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(s) and s > 0:
            times[key] = s
    return times


def command(suite: str, device_kind: str, out: str | os.PathLike = DEFAULT_OUT) -> str:
    """The command that measures the missing timings (to be run on a `device_kind` device)."""
    folder = "" if Path(out) == DEFAULT_OUT else f" --out {out}"
    return f"`celo-bench bench step-time --suite {suite}{folder}` on a {device_kind} device"


__all__ = ["BENCHMARK", "DEFAULT_OUT", "UNKNOWN_KIND", "command", "name", "path", "document_kind", "read_document", "read_step_times", "slug"]
