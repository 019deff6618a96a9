"""The results store: one immutable parquet record per run, content-addressed.

Layout: ``<root>/<task>/<optimizer>/<run key>.parquet``. A record is written to a
temporary file in the same folder and renamed into place, so a killed process leaves
either the whole record or nothing. Records are plain values (no pickles).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = "1"
STATUSES = ("ok", "diverged", "failed")

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("suite", pa.string()),
        ("suite_version", pa.string()),
        ("task", pa.string()),
        ("optimizer", pa.string()),
        ("optimizer_kind", pa.string()),
        ("hparams", pa.string()),  # canonical JSON
        ("hparam_id", pa.string()),
        ("learning_rate", pa.float64()),
        ("seed", pa.int64()),
        ("num_steps", pa.int64()),
        ("status", pa.string()),
        ("message", pa.string()),
        ("diverged_step", pa.int64()),
        ("train_loss", pa.list_(pa.float32())),  # every step, length num_steps + 1
        ("eval_steps", pa.list_(pa.int64())),
        ("eval_train_loss", pa.list_(pa.float32())),
        ("eval_valid_loss", pa.list_(pa.float32())),
        ("eval_test_loss", pa.list_(pa.float32())),
        ("compile_seconds", pa.float64()),
        ("run_seconds", pa.float64()),
        ("job_runs", pa.int64()),
        ("strategy", pa.string()),
        ("config", pa.string()),
        ("provenance", pa.string()),
        ("schema_version", pa.string()),
    ]
)
COLUMNS = [f.name for f in SCHEMA]
CURVE_COLUMNS = ("train_loss", "eval_steps", "eval_train_loss", "eval_valid_loss", "eval_test_loss")


class Store:
    """A results folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, task: str, optimizer: str, key: str) -> Path:
        return self.root / task / optimizer / f"{key}.parquet"

    def _files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("*/*/*.parquet"))

    def statuses(self) -> dict[str, str]:
        """key -> status, reading only the status column."""
        out = {}
        for p in self._files():
            out[p.stem] = pq.read_table(p, columns=["status"]).column(0)[0].as_py()
        return out

    def write(self, record: Mapping[str, Any]) -> Path:
        """Atomically write one record (a dict with the schema's columns)."""
        row = {name: [_cell(name, record.get(name))] for name in COLUMNS}
        row["schema_version"] = [SCHEMA_VERSION]
        table = pa.table(row, schema=SCHEMA)
        target = self.path(record["task"], record["optimizer"], record["key"])
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=target.parent)
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def write_many(self, records: Iterable[Mapping[str, Any]]) -> int:
        n = 0
        for rec in records:
            self.write(rec)
            n += 1
        return n

    def read(
        self,
        *,
        tasks: Iterable[str] | None = None,
        optimizers: Iterable[str] | None = None,
        curves: bool = True,
    ) -> pd.DataFrame:
        """All records as one frame (one row per run); curve cells are NumPy arrays."""
        files = self._files()
        if tasks is not None:
            keep = set(tasks)
            files = [p for p in files if p.parent.parent.name in keep]
        if optimizers is not None:
            keep_o = set(optimizers)
            files = [p for p in files if p.parent.name in keep_o]
        cols = COLUMNS if curves else [c for c in COLUMNS if c not in CURVE_COLUMNS]
        if not files:
            return pd.DataFrame(columns=cols)
        table = pa.concat_tables([pq.read_table(p, columns=cols) for p in files])
        df = table.to_pandas()
        if curves:
            for c in CURVE_COLUMNS:
                dtype = np.int64 if c == "eval_steps" else np.float32
                # failed runs have no curves (null cells): read them as empty arrays
                df[c] = [np.asarray([] if v is None else v, dtype=dtype) for v in df[c]]
        return df.sort_values(["task", "optimizer", "hparam_id", "seed"]).reset_index(drop=True)


def _cell(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in CURVE_COLUMNS:
        return np.asarray(value).tolist()  # NaN/inf are kept as values, never replaced
    if name in ("hparams", "provenance") and not isinstance(value, str):
        return json.dumps(value, sort_keys=True)
    return value
