"""The typed run record: one declaration, the same parquet schema as before, lossless round trips."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from celo_bench import records, store
from celo_bench.records import RunRecord

# The store's schema as it was written literally before the record had a type: existing
# stores must stay readable, so the derived schema must equal it column for column.
OLD_SCHEMA = pa.schema([
    ("key", pa.string()), ("suite", pa.string()), ("suite_version", pa.string()), ("task", pa.string()),
    ("optimizer", pa.string()), ("optimizer_kind", pa.string()), ("hparams", pa.string()),
    ("hparam_id", pa.string()), ("learning_rate", pa.float64()), ("seed", pa.int64()),
    ("num_steps", pa.int64()), ("status", pa.string()), ("message", pa.string()),
    ("diverged_step", pa.int64()), ("train_loss", pa.list_(pa.float32())),
    ("eval_steps", pa.list_(pa.int64())), ("eval_train_loss", pa.list_(pa.float32())),
    ("eval_valid_loss", pa.list_(pa.float32())), ("eval_test_loss", pa.list_(pa.float32())),
    ("compile_seconds", pa.float64()), ("run_seconds", pa.float64()), ("job_runs", pa.int64()),
    ("strategy", pa.string()), ("config", pa.string()), ("provenance", pa.string()),
    ("schema_version", pa.string()),
])


def make(status: str = "ok", **kw) -> RunRecord:
    T = 8
    curve = np.linspace(2.0, 1.0, 3, dtype=np.float32)
    fields = dict(
        key="k0", suite="smoke", suite_version="1", task="t", optimizer="sgd", optimizer_kind="handcrafted",
        hparams={"learning_rate": 0.1, "b": 2.0}, hparam_id="sgd[b=2,learning_rate=0.1]", learning_rate=0.1,
        seed=3, num_steps=T, status=status, config='{"task": {}}', provenance={"jax": "0.0", "node": "n"},
    )
    if status != "failed":
        fields |= dict(
            train_loss=np.linspace(2.0, 1.0, T + 1), eval_steps=[0, 4, 8], eval_train_loss=curve,
            eval_valid_loss=curve + 0.1, eval_test_loss=curve + 0.2, compile_seconds=0.5,
            run_seconds=1.5, job_runs=3, strategy="scan+vmap",
        )
    return RunRecord(**(fields | kw))


def test_schema_is_derived_from_the_record_and_equals_the_old_one():
    assert records.SCHEMA.equals(OLD_SCHEMA)
    assert store.SCHEMA is records.SCHEMA and list(store.COLUMNS) == OLD_SCHEMA.names
    assert records.CURVE_COLUMNS == ("train_loss", "eval_steps", "eval_train_loss", "eval_valid_loss",
                                     "eval_test_loss")
    assert set(records.SCALAR_COLUMNS) | set(records.CURVE_COLUMNS) == set(records.COLUMNS)
    assert records.IDENTITY_COLUMNS[:5] == ("key", "suite", "suite_version", "task", "optimizer")


def test_record_normalises_json_and_curve_dtypes_and_rejects_a_bad_status():
    rec = make()
    assert rec.hparams == json.dumps({"b": 2.0, "learning_rate": 0.1}, sort_keys=True)
    assert rec.train_loss.dtype == np.float32 and rec.eval_steps.dtype == np.int64
    assert rec["status"] == rec.get("status") == "ok" and rec.get("nope", 7) == 7
    with pytest.raises(KeyError):
        rec["nope"]
    with pytest.raises(ValueError, match="status"):
        make(status="done")
    with pytest.raises(AttributeError):  # frozen
        rec.status = "failed"  # type: ignore[misc]
    assert rec.with_provenance(executor="ray").provenance == {"jax": "0.0", "node": "n", "executor": "ray"}
    assert rec.provenance == {"jax": "0.0", "node": "n"}


@pytest.mark.parametrize("status", ["ok", "diverged", "failed"])
def test_record_round_trips_through_parquet(tmp_path, status):
    rec = make(status, diverged_step=4 if status == "diverged" else None, message=status)
    if status == "diverged":
        rec = rec.replace(train_loss=np.r_[np.linspace(2, 1, 5), [np.nan, np.inf, np.nan, np.nan]])
    path = store.Store(tmp_path).write(rec)
    table = pq.read_table(path)
    assert table.schema.equals(OLD_SCHEMA)
    back = records.from_table(table)[0]
    for name in records.COLUMNS:
        a, b = getattr(rec, name), getattr(back, name)
        if name in records.CURVE_COLUMNS and a is not None:
            np.testing.assert_array_equal(a, b)  # NaN and inf kept as values
            assert a.dtype == b.dtype
        else:
            assert a == b, name
    scalars = [c for c in records.COLUMNS if c not in records.CURVE_COLUMNS]
    assert [back.to_row()[c] for c in scalars] == [rec.to_row()[c] for c in scalars]


def test_dict_and_record_input_write_the_same_row(tmp_path):
    rec = make()
    as_dict = {name: getattr(rec, name) for name in records.COLUMNS}
    a = pq.read_table(store.Store(tmp_path / "a").write(rec)).to_pylist()
    b = pq.read_table(store.Store(tmp_path / "b").write(as_dict)).to_pylist()
    assert a == b
    # a partial dict (older callers) still writes, the missing columns null
    partial = {k: as_dict[k] for k in ("key", "task", "optimizer", "status", "seed", "num_steps")}
    row = pq.read_table(store.Store(tmp_path / "c").write(partial)).to_pylist()[0]
    assert row["config"] is None and row["schema_version"] == records.SCHEMA_VERSION


def test_store_read_frame_is_unchanged_by_the_typed_record(tmp_path):
    st = store.Store(tmp_path)
    st.write_many([make(), make("failed", key="k1", seed=4)])
    df = st.read()
    assert list(df.columns) == list(OLD_SCHEMA.names) and len(df) == 2
    ok, failed = df.set_index("key").loc["k0"], df.set_index("key").loc["k1"]
    assert ok["eval_steps"].dtype == np.int64 and ok["train_loss"].dtype == np.float32
    assert failed["train_loss"].size == 0 and json.loads(ok["provenance"]) == {"jax": "0.0", "node": "n"}
    assert list(st.read(curves=False).columns) == list(records.SCALAR_COLUMNS)


def test_executors_build_typed_records(tmp_path):
    from celo_bench.execute import failed_records
    from celo_bench.runner import RunConfig, plan_grid

    jobs, _, _ = plan_grid(RunConfig(suite="smoke", steps=10, seeds=1, results=tmp_path,
                                     tasks=["smoke_digits_mlp"], optimizers=["sgd"]))
    recs = failed_records(jobs[0], "boom", {"executor": "test"})
    assert recs and all(isinstance(r, RunRecord) and r.status == "failed" for r in recs)
    assert {r.key for r in recs} == {r.key for r in jobs[0].runs}
    assert recs[0].provenance["executor"] == "test" and recs[0].job_runs == len(jobs[0].runs)
    store.Store(tmp_path).write_many(recs)
    assert set(store.Store(tmp_path).statuses().values()) == {"failed"}
