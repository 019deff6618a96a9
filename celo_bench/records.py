"""The run record: one training run's identity, outcome, curves and provenance.

:class:`RunRecord` declares every column of the results store once; the parquet schema
(:data:`SCHEMA`) and the column lists other modules use (:data:`COLUMNS`,
:data:`CURVE_COLUMNS`, ...) are derived from it. Executors build records, the store
writes them (one parquet row per file) and :meth:`RunRecord.from_row` reads them back.

On disk a record is the row of :data:`SCHEMA`: ``hparams``, ``config`` and
``provenance`` are canonical JSON strings, curves are lists of float32 (``eval_steps``:
int64), and a ``failed`` run has null curves.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = "1"
STATUSES = ("ok", "diverged", "failed")

_REQUIRED = dataclasses.MISSING


def _column(arrow: pa.DataType, group: str, default: Any = _REQUIRED, factory: Any = _REQUIRED) -> Any:
    """A record field that is also a store column of type `arrow`, in column `group`."""
    meta = {"arrow": arrow, "group": group}
    if factory is not _REQUIRED:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, kw_only=True, eq=False)
class RunRecord:
    """One stored run. Field order is the column order of :data:`SCHEMA`.

    Curves are NumPy arrays (``None`` for a ``failed`` run): ``train_loss`` has one value
    per step, shape ``(num_steps + 1,)``; ``eval_steps`` (int64) and the three
    ``eval_*_loss`` curves (float32) share one shape ``(n_evals,)``. Values after a
    divergence are NaN. Timings are seconds. ``hparams`` and ``config`` are canonical JSON
    (a mapping given as ``hparams`` is serialised); ``provenance`` is a mapping.

    For callers written against the old dict records, ``record["status"]`` and
    ``record.get("status")`` read a field.

    Raises:
        ValueError: ``status`` is not one of :data:`STATUSES`.
    """

    # identity: what was run (the key hashes the resolved config)
    key: str = _column(pa.string(), "identity")
    suite: str = _column(pa.string(), "identity")
    suite_version: str = _column(pa.string(), "identity")
    task: str = _column(pa.string(), "identity")
    optimizer: str = _column(pa.string(), "identity")
    optimizer_kind: str = _column(pa.string(), "identity")
    hparams: str = _column(pa.string(), "identity")  # canonical JSON
    hparam_id: str = _column(pa.string(), "identity")
    learning_rate: float | None = _column(pa.float64(), "identity", None)
    seed: int = _column(pa.int64(), "identity")
    num_steps: int = _column(pa.int64(), "identity")
    # outcome
    status: str = _column(pa.string(), "outcome")
    message: str = _column(pa.string(), "outcome", "")
    diverged_step: int | None = _column(pa.int64(), "outcome", None)
    # curves (every step for train_loss; at eval_steps for the others)
    train_loss: np.ndarray | None = _column(pa.list_(pa.float32()), "curve", None)
    eval_steps: np.ndarray | None = _column(pa.list_(pa.int64()), "curve", None)
    eval_train_loss: np.ndarray | None = _column(pa.list_(pa.float32()), "curve", None)
    eval_valid_loss: np.ndarray | None = _column(pa.list_(pa.float32()), "curve", None)
    eval_test_loss: np.ndarray | None = _column(pa.list_(pa.float32()), "curve", None)
    # how it ran
    compile_seconds: float | None = _column(pa.float64(), "timing", None)
    run_seconds: float | None = _column(pa.float64(), "timing", None)
    job_runs: int | None = _column(pa.int64(), "timing", None)
    strategy: str | None = _column(pa.string(), "timing", None)
    config: str = _column(pa.string(), "provenance")  # canonical JSON of the resolved specs
    provenance: Mapping[str, Any] = _column(pa.string(), "provenance", factory=dict)
    schema_version: str = _column(pa.string(), "provenance", SCHEMA_VERSION)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"run {self.key}: status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if not isinstance(self.hparams, str):
            object.__setattr__(self, "hparams", json.dumps(dict(self.hparams), sort_keys=True))
        if isinstance(self.provenance, str):
            object.__setattr__(self, "provenance", json.loads(self.provenance or "{}"))
        for name in CURVE_COLUMNS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, np.asarray(value, dtype=CURVE_DTYPES[name]))

    # -- dict-style reading, for callers of the old dict records
    def __getitem__(self, name: str) -> Any:
        if name not in _FIELD_NAMES:
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in _FIELD_NAMES else default

    def replace(self, **changes: Any) -> RunRecord:
        """A copy with `changes` applied (records are immutable)."""
        return dataclasses.replace(self, **changes)

    def with_provenance(self, **extra: Any) -> RunRecord:
        """A copy whose provenance also holds `extra` (e.g. the executor and node)."""
        return self.replace(provenance=dict(self.provenance) | extra)

    # -- parquet rows
    def to_row(self) -> dict[str, Any]:
        """Column name -> cell value of :data:`SCHEMA` (JSON strings, lists for curves)."""
        return row_of(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRecord:
        """The record of one stored row (the inverse of :meth:`to_row`)."""
        return cls(**{name: row.get(name) for name in _FIELD_NAMES if name in row and row.get(name) is not None})

    @classmethod
    def from_mapping(cls, record: Mapping[str, Any] | RunRecord) -> RunRecord:
        """A record from an old-style dict (unknown keys are an error) or the record itself."""
        if isinstance(record, RunRecord):
            return record
        unknown = set(record) - set(_FIELD_NAMES)
        if unknown:
            raise ValueError(f"not record fields: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in record.items() if v is not None})


_FIELDS = dataclasses.fields(RunRecord)
_FIELD_NAMES = frozenset(f.name for f in _FIELDS)

#: The parquet schema of a stored record, derived from :class:`RunRecord`.
SCHEMA = pa.schema([(f.name, f.metadata["arrow"]) for f in _FIELDS])
#: Every column, in schema order.
COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS)
#: Columns that say what was run (task, optimizer, hyper-parameters, seed, horizon).
IDENTITY_COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS if f.metadata["group"] == "identity")
#: status, message, diverged_step.
OUTCOME_COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS if f.metadata["group"] == "outcome")
#: Array-valued columns (read as NumPy arrays; empty for a failed run).
CURVE_COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS if f.metadata["group"] == "curve")
#: Every column but the curves (what ``Store.read(curves=False)`` returns).
SCALAR_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in CURVE_COLUMNS)
#: Loss curves sampled at ``eval_steps``.
EVAL_CURVE_COLUMNS: tuple[str, ...] = tuple(c for c in CURVE_COLUMNS if c.startswith("eval_") and c != "eval_steps")
#: dtype of each curve column once read.
CURVE_DTYPES: dict[str, type] = {c: (np.int64 if c == "eval_steps" else np.float32) for c in CURVE_COLUMNS}
_JSON_COLUMNS = ("hparams", "provenance")


def row_of(record: RunRecord | Mapping[str, Any]) -> dict[str, Any]:
    """One row of :data:`SCHEMA` from a record or an old-style dict (missing keys: null).

    NaN and inf in curves are kept as values, never replaced. ``schema_version`` is always
    the current :data:`SCHEMA_VERSION`.
    """
    get = record.get
    row = {}
    for name in COLUMNS:
        value = get(name)
        if value is None:
            row[name] = None
        elif name in CURVE_COLUMNS:
            row[name] = np.asarray(value).tolist()
        elif name in _JSON_COLUMNS and not isinstance(value, str):
            row[name] = json.dumps(dict(value), sort_keys=True)
        else:
            row[name] = value
    row["schema_version"] = SCHEMA_VERSION
    return row


def to_table(records: Iterable[RunRecord | Mapping[str, Any]]) -> pa.Table:
    """A table of :data:`SCHEMA` with one row per record."""
    rows = [row_of(r) for r in records]
    return pa.table({name: [r[name] for r in rows] for name in COLUMNS}, schema=SCHEMA)


def from_table(table: pa.Table) -> list[RunRecord]:
    """Records of every row of a table read from the store (columns of :data:`SCHEMA`)."""
    return [RunRecord.from_row(row) for row in table.to_pylist()]


__all__ = [
    "COLUMNS",
    "CURVE_COLUMNS",
    "CURVE_DTYPES",
    "EVAL_CURVE_COLUMNS",
    "IDENTITY_COLUMNS",
    "OUTCOME_COLUMNS",
    "SCALAR_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "STATUSES",
    "RunRecord",
    "from_table",
    "row_of",
    "to_table",
]
