"""The environment a record's numbers come from, and the rule that scoring never mixes two.

A run's numbers depend on the device kind, the backend and the versions of jax, jaxlib,
optax and flax as well as on its run key. Those six :data:`FIELDS` are recorded in every
record's ``provenance`` (:func:`celo_bench.provenance.provenance`) but are not part of its
run key, so keys computed by ``plan`` and results made on another machine stay valid
(docs/architecture.md says why). Instead, scoring compares them: the records of one task
(every optimizer's, the reference's included; ``failed`` records hold no numbers and are
left out) must agree on each field, or scoring refuses
with one line naming the task, the field, the differing values and the fix
(:data:`ALLOW_OPTION`); with that option the mix is scored and noted. A field an old record
lacks is unknown, and unknown never matches anything, not even another unknown.

Imports no JAX: it reads stored provenance only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from celo_bench.errors import CeloBenchError

FIELDS: tuple[str, ...] = ("device", "backend", "jax", "jaxlib", "optax", "flax")
"""Provenance keys that make a record's environment (``device`` is the device kind)."""
LABELS: dict[str, str] = {"device": "device kind", "backend": "backend", "jax": "jax", "jaxlib": "jaxlib",
                          "optax": "optax", "flax": "flax"}
ALLOW_OPTION = "--allow-mixed-environments"
"""The option of the scoring commands (score, report, compare-suites) that scores a mix anyway."""
UNKNOWN = "unknown"
"""How a missing field is shown (it never matches, not even another unknown)."""


def of(provenance: Mapping[str, Any] | str | None) -> dict[str, str | None]:
    """field -> value of one record's provenance (a mapping or its stored JSON); None: unknown."""
    if isinstance(provenance, str):
        try:
            provenance = json.loads(provenance or "{}")
        except ValueError:
            provenance = {}
    if not isinstance(provenance, Mapping):
        provenance = {}
    out: dict[str, str | None] = {}
    for f in FIELDS:
        v = provenance.get(f)
        out[f] = None if v is None or str(v) == "" else str(v)
    return out


@dataclass(frozen=True)
class Mix:
    """Records of one task that differ in one environment field.

    ``values``: value (None: unknown) -> the optimizers whose records have it, each with its
    record count.
    """

    task: str
    field: str
    values: Mapping[str | None, Mapping[str, int]]

    def short(self) -> str:
        """``jax 0.4.1 vs 0.5.0`` (values only)."""
        return f"{LABELS[self.field]} " + " vs ".join(UNKNOWN if v is None else v for v in self.values)

    def describe(self) -> str:
        """``jax 0.4.1 (adam 3, sgd 3) vs 0.5.0 (sgd 1)``."""
        parts = []
        for value, by_opt in self.values.items():
            shown = ", ".join(f"{o} {n}" for o, n in list(by_opt.items())[:3])
            more = ", ..." if len(by_opt) > 3 else ""
            parts.append(f"{UNKNOWN if value is None else value} ({shown}{more})")
        text = " vs ".join(parts)
        if len(self.values) == 1:  # one value, and it is unknown
            text += ": not recorded, so never the same as another record's"
        return f"{LABELS[self.field]} {text}"


def mixes(records: pd.DataFrame) -> list[Mix]:
    """Every (task, field) whose records do not all hold one known value, by task then field.

    `records`: a ``Store.read()`` frame (``task``, ``optimizer``, ``status``, ``provenance``).
    ``failed`` records are left out (they hold no numbers); a task with one record mixes nothing.
    """
    if records.empty or "provenance" not in records.columns:
        return []
    if "status" in records.columns:
        records = records[records["status"] != "failed"]
    envs = [of(p) for p in records["provenance"]]
    out = []
    tasks = records["task"].tolist()
    opts = records["optimizer"].tolist()
    for task in sorted(set(tasks)):
        rows = [i for i, t in enumerate(tasks) if t == task]
        if len(rows) < 2:
            continue
        for f in FIELDS:
            values: dict[str | None, dict[str, int]] = {}
            for i in rows:
                by_opt = values.setdefault(envs[i][f], {})
                by_opt[opts[i]] = by_opt.get(opts[i], 0) + 1
            if len(values) > 1 or None in values:
                order = sorted(values, key=lambda v: (v is None, -sum(values[v].values()), v or ""))
                out.append(Mix(task, f, {v: dict(sorted(values[v].items())) for v in order}))
    return out


class MixedEnvironmentsError(CeloBenchError):
    """The records of a task come from environments that differ (see :func:`check`)."""


def check(records: pd.DataFrame, *, allow: bool = False) -> list[str]:
    """Refuse to score `records` whose tasks mix environments, or (with `allow`) note the mix.

    Returns:
        Notes, one per field and set of values, naming the tasks (empty when nothing mixes).

    Raises:
        MixedEnvironmentsError: a task mixes environments and `allow` is False: one line
            naming the first such task, the field, the values and the fix.
    """
    found = mixes(records)
    if not found:
        return []
    if not allow:
        first = found[0]
        others = sorted({m.task for m in found} - {first.task})
        more = f" (and {len(others)} other task{'s' if len(others) > 1 else ''})" if others else ""
        raise MixedEnvironmentsError(
            f"the records of task {first.task} come from different environments: {first.describe()}{more}; "
            "scores would compare numbers of different environments. Score them anyway with "
            f"{ALLOW_OPTION} (the output notes the mix), or move one environment's records aside and "
            "re-run them here"
        )
    grouped: dict[str, list[str]] = {}
    for m in found:
        grouped.setdefault(m.short(), []).append(m.task)
    return [f"mixed environments scored ({ALLOW_OPTION}): {what} in task{'s' if len(t) > 1 else ''} "
            f"{', '.join(t)}" for what, t in grouped.items()]


__all__ = ["ALLOW_OPTION", "FIELDS", "LABELS", "UNKNOWN", "Mix", "MixedEnvironmentsError", "check", "mixes", "of"]
