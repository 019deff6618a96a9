"""The run record: one training run's identity, outcome, curves and provenance.

:class:`RunRecord` declares every column of the results store once; the parquet schema
(:data:`SCHEMA`) and the column lists other modules use (:data:`COLUMNS`,
:data:`CURVE_COLUMNS`, ...) are derived from it. Executors build records, the store
writes them (one parquet row per file) and :meth:`RunRecord.from_row` reads them back.

On disk a record is the row of :data:`SCHEMA`: ``hparams``, ``config`` and
``provenance`` are canonical JSON strings, curves are lists of float32 (``eval_steps``:
int64), and a ``failed`` run has null curves.

Schema evolution: every record stores the ``schema_version`` it was written under, and
:data:`SCHEMA_HISTORY` says what each version added. A stored record is read through
:func:`plan_upgrade` and :func:`upgrade_table`: a record of an older version (or one short
of a column) gets each missing column's default (:data:`UPGRADE_DEFAULTS`) and every column
cast to its declared type (an int32 ``seed`` becomes int64); a record of a newer version is
not read (:func:`version_order` > 0: a newer celo-bench may share the store); one whose
columns cannot be made the declared ones raises :class:`SchemaError`.
"""

from __future__ import annotations

import dataclasses
import functools
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


# ---- schema versions and upgrades -------------------------------------------------------


@dataclass(frozen=True)
class SchemaChange:
    """One schema version: what it changed, and each column it added with the value a
    record of an older version gets for it (in stored form: JSON columns as strings)."""

    version: str
    note: str
    added: Mapping[str, Any] = field(default_factory=dict)


SCHEMA_HISTORY: tuple[SchemaChange, ...] = (
    SchemaChange("1", "the first versioned schema: every column of RunRecord"),
)
"""Every schema version, oldest first; the last is :data:`SCHEMA_VERSION`. A record without
``schema_version`` reads as :data:`UNVERSIONED` ("0"), older than every version.

To add a column: declare it on :class:`RunRecord` with a default, bump
:data:`SCHEMA_VERSION`, and add a :class:`SchemaChange` here naming the column and the value
older records get (``celo-bench store check --migrate`` then rewrites them). Adding a key
inside the ``provenance`` JSON (as the environment's library versions were) is no schema
change: a key an old record lacks reads as unknown."""


def _stored_default(f: dataclasses.Field) -> Any:
    """The stored (row) form of a field's declared default; MISSING when it has none."""
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return json.dumps(dict(value), sort_keys=True) if f.name in _JSON_COLUMNS else value
    return f.default


def _upgrade_defaults() -> dict[str, Any]:
    out = {f.name: d for f in _FIELDS if (d := _stored_default(f)) is not dataclasses.MISSING}
    for change in SCHEMA_HISTORY:
        out.update(change.added)
    out.pop("schema_version", None)  # a record without it keeps "0", its version as read
    return out


#: Column -> the value a stored record that lacks it is read with: the value of the
#: :data:`SCHEMA_HISTORY` entry that added the column, else its declared default. A column
#: without one (``key``, ``task``, ``status``, ...) cannot be missing from a readable record.
UPGRADE_DEFAULTS: dict[str, Any] = _upgrade_defaults()
_TYPES: dict[str, pa.DataType] = {f.name: f.type for f in SCHEMA}
#: The version of a stored record that has no ``schema_version`` column.
UNVERSIONED = "0"


class SchemaError(ValueError):
    """A stored record's columns cannot be made those of :data:`SCHEMA` (one line: why)."""


def version_of(value: Any) -> str:
    """The schema version of a stored ``schema_version`` cell (:data:`UNVERSIONED` when absent)."""
    return UNVERSIONED if value is None or str(value).strip() == "" else str(value).strip()


def version_order(version: str) -> int:
    """-1, 0 or 1 as `version` is older than, equal to or newer than :data:`SCHEMA_VERSION`.

    Raises:
        SchemaError: `version` is neither a known version nor a number (not a record's).
    """
    if version == SCHEMA_VERSION:
        return 0
    try:
        number, current = int(version), int(SCHEMA_VERSION)
    except ValueError:
        raise SchemaError(f"unknown schema version {version!r}") from None
    return -1 if number < current else 1


@dataclass(frozen=True)
class Upgrade:
    """How one stored record's columns become those of :data:`SCHEMA` (see :func:`plan_upgrade`).

    Attributes:
        version: The record's stored schema version.
        filled: Declared columns the record lacks; read as their :data:`UPGRADE_DEFAULTS`.
        cast: ``(column, stored type, declared type)`` of columns stored under another type.
        extra: Stored columns :data:`SCHEMA` does not declare (not read; a migration would
            drop them, so it leaves such a record alone).
    """

    version: str
    filled: tuple[str, ...] = ()
    cast: tuple[tuple[str, str, str], ...] = ()
    extra: tuple[str, ...] = ()

    @property
    def needed(self) -> bool:
        """True when the record differs from one written now (a migration would rewrite it)."""
        return bool(self.filled or self.cast) or self.version != SCHEMA_VERSION

    def describe(self) -> str:
        """What reading it changes, in a few words (``"nothing"`` when it is current)."""
        parts = []
        if self.version != SCHEMA_VERSION:
            parts.append(f"version {self.version} -> {SCHEMA_VERSION}")
        if self.filled:
            parts.append("adds " + ", ".join(f"{c}={UPGRADE_DEFAULTS[c]!r}" for c in self.filled))
        parts += [f"casts {c} {a} -> {b}" for c, a, b in self.cast]
        if self.extra:
            parts.append("has undeclared columns " + ", ".join(self.extra))
        return "; ".join(parts) or "nothing"


def _castable(stored: pa.DataType, declared: pa.DataType) -> bool:
    """Casts an upgrade makes: widening numbers, string kinds, lists of those, nulls."""
    t = pa.types
    if stored == declared or t.is_null(stored):
        return True
    if t.is_integer(declared):
        return t.is_integer(stored)
    if t.is_floating(declared):
        return t.is_floating(stored) or t.is_integer(stored)
    if t.is_string(declared) or t.is_large_string(declared):
        return t.is_string(stored) or t.is_large_string(stored)
    if t.is_list(declared):
        return ((t.is_list(stored) or t.is_large_list(stored) or t.is_fixed_size_list(stored))
                and _castable(stored.value_type, declared.value_type))
    return False


def plan_upgrade(schema: pa.Schema, version: str) -> Upgrade:
    """The :class:`Upgrade` that makes a stored record of `schema` (its file's) a current one.

    Raises:
        SchemaError: it lacks a column without a default, or stores one under a type that
            does not cast to the declared one.
    """
    return _plan_upgrade(schema, version)


@functools.lru_cache(maxsize=256)  # a store holds a handful of file schemas: decide each once
def _plan_upgrade(schema: pa.Schema, version: str) -> Upgrade:
    names = set(schema.names)
    filled = tuple(c for c in COLUMNS if c not in names and c != "schema_version")
    lacking = [c for c in filled if c not in UPGRADE_DEFAULTS]
    if lacking:
        raise SchemaError(f"lacks column{'s' if len(lacking) > 1 else ''} {', '.join(lacking)} (no default)")
    cast = []
    for c in COLUMNS:
        if c not in names:
            continue
        stored, declared = schema.field(c).type, _TYPES[c]
        if stored != declared:
            if not _castable(stored, declared):
                raise SchemaError(f"column {c} is {stored}, the schema declares {declared}")
            cast.append((c, str(stored), str(declared)))
    extra = tuple(n for n in schema.names if n not in _FIELD_NAMES)
    return Upgrade(version=version, filled=filled, cast=tuple(cast), extra=extra)


@functools.lru_cache(maxsize=256)
def _is_current(schema: pa.Schema, columns: tuple[str, ...]) -> bool:
    names = set(schema.names)
    return all(c in names and schema.field(c).type == _TYPES[c] for c in columns)


def upgrade_table(table: pa.Table, columns: Iterable[str]) -> pa.Table:
    """`table` (rows of stored records) as `columns` of :data:`SCHEMA`: missing columns filled
    with their default, the others cast to their declared type (``schema_version`` keeps the
    stored value; :data:`UNVERSIONED` where the file has none).

    Raises:
        SchemaError: a missing column has no default, or a value does not fit its type.
    """
    columns = tuple(columns)
    if _is_current(table.schema, columns):
        return table.select(list(columns))  # a current record: nothing to upgrade
    out = {}
    for c in columns:
        declared = _TYPES[c]
        if c in table.column_names:
            col = table.column(c)
            if col.type != declared:
                if not _castable(col.type, declared):
                    raise SchemaError(f"column {c} is {col.type}, the schema declares {declared}")
                try:
                    col = col.cast(declared)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise SchemaError(f"column {c} does not fit {declared}: {str(e).splitlines()[0]}") from None
            out[c] = col
        elif c == "schema_version":
            out[c] = pa.array([UNVERSIONED] * table.num_rows, declared)
        elif c in UPGRADE_DEFAULTS:
            out[c] = pa.array([UPGRADE_DEFAULTS[c]] * table.num_rows, declared)
        else:
            raise SchemaError(f"lacks column {c} (no default)")
    return pa.table(out, schema=pa.schema([SCHEMA.field(c) for c in out]))


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
    "SCHEMA_HISTORY",
    "UNVERSIONED",
    "UPGRADE_DEFAULTS",
    "RunRecord",
    "SchemaChange",
    "SchemaError",
    "Upgrade",
    "from_table",
    "plan_upgrade",
    "row_of",
    "to_table",
    "upgrade_table",
    "version_of",
    "version_order",
]
