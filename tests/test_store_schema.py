"""Schema evolution of the results store: older records are upgraded on read, newer ones are
skipped and left in place, and every command sees the same set of records.

The bug-report inputs are rebuilt here: a record written without ``strategy``, a record whose
``seed`` is int32, a record of a newer schema version, and a record without ``schema_version``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _score_fixtures import decaying, record, registry, write
from typer.testing import CliRunner

from celo_bench import records as rec_mod
from celo_bench.cli import app
from celo_bench.prune import prune
from celo_bench.records import SCHEMA, SCHEMA_HISTORY, SCHEMA_VERSION, UPGRADE_DEFAULTS
from celo_bench.results import score_results
from celo_bench.runner import RunConfig, plan_run, status
from celo_bench.store import Store

T = 20  # the fixture's horizon: 3 eval points, every 10 steps


def fixture_store(root: Path) -> tuple[Path, object, list[dict]]:
    """A store with the planned records of suite fx: adam and o on task t, two seeds."""
    reg = registry(["t"], ["adam", "o"], steps=T)
    recs = [record("t", opt, s, decaying(3, 2.0, end)) for opt, end in (("adam", 1.0), ("o", 0.8))
            for s in range(2)]
    write(root, recs)
    return root, reg, recs


def rewrite(path: Path, edit) -> None:
    """Rewrite the record file at `path` with `edit(table)` applied (a record of another form)."""
    pq.write_table(edit(pq.read_table(path)), path)


def drop(*names: str):
    return lambda t: t.drop_columns(list(names))


def cast(name: str, to: pa.DataType):
    return lambda t: t.set_column(t.schema.get_field_index(name), pa.field(name, to), t.column(name).cast(to))


def set_version(version: str):
    def edit(t: pa.Table) -> pa.Table:
        t = t.set_column(t.schema.get_field_index("schema_version"), "schema_version", pa.array([version]))
        return t.append_column("a_newer_column", pa.array([1.5]))  # what a newer writer might add
    return edit


def path_of(root: Path, r: dict) -> Path:
    return Store(root).path(r["task"], r["optimizer"], r["key"])


def every_reader(root: Path, reg) -> dict[str, set[str]]:
    """The set of run keys each command sees (status, run's plan, read, score, prune)."""
    store = Store(root)
    scan = store.scan()
    grid = plan_run(RunConfig(suite="fx", results=root, registry=reg))
    planned = {r.key for j in grid.jobs for r in j.runs}
    todo = {r.key for j in grid.todo for r in j.runs}
    st = status(RunConfig(suite="fx", results=root, registry=reg))
    res = score_results(root, "fx", registry=reg, reps=20)
    pruned = prune(root, registry=reg, dry_run=True)
    scored = {(r.task, r.optimizer, r.hparam_id, int(r.seed)) for r in res.runs.itertuples()}
    ids = {r.key: (r.task, r.optimizer, r.hparam_id, int(r.seed)) for r in store.read(curves=False).itertuples()}
    assert st["done"] == len(planned & set(scan.statuses))
    return {
        "scan": set(scan.statuses),
        "run (stored, not redone)": planned - todo,
        "read": set(store.read()["key"]),
        "read scalars": set(store.read(curves=False)["key"]),
        "score": {k for k, i in ids.items() if i in scored},
        "prune (kept)": set(scan.statuses) - set(pruned.pruned["key"]),
    }


@pytest.mark.parametrize("edit, column, expected", [
    (drop("strategy"), "strategy", None),  # the bug report: KeyError 'Field "strategy" does not exist'
    (cast("seed", pa.int32()), "seed", None),  # the bug report: ArrowInvalid on concatenation
    (drop("message", "job_runs"), "message", ""),
    (cast("run_seconds", pa.float32()), "run_seconds", 1.0),
    (drop("schema_version"), "schema_version", "0"),  # written before versions were stored
])
def test_an_older_record_is_upgraded_on_read_and_every_command_sees_it(tmp_path, edit, column, expected):
    root, reg, recs = fixture_store(tmp_path)
    old = recs[1]
    rewrite(path_of(root, old), edit)
    seen = every_reader(root, reg)
    keys = {r["key"] for r in recs}
    assert all(v == keys for v in seen.values()), seen
    df = Store(root).read()
    row = df[df["key"] == old["key"]].iloc[0]
    assert df["seed"].dtype == np.int64 and int(row["seed"]) == old["seed"]
    if expected is not None:
        assert row[column] == expected
    elif column == "strategy":
        assert row["strategy"] is None
    np.testing.assert_array_equal(row["eval_train_loss"], old["eval_train_loss"])
    # the upgrade is said in one line, and the scores are those of the record as written
    res = score_results(root, "fx", registry=reg, reps=20)
    assert any("1 records stored in an older schema" in n and "store check --migrate" in n for n in res.notes)
    write(tmp_path / "fresh", recs)
    fresh = score_results(tmp_path / "fresh", "fx", registry=reg, reps=20)
    assert res.fingerprint == fresh.fingerprint
    np.testing.assert_array_equal(res.scores["final_loss_score"], fresh.scores["final_loss_score"])


def test_a_newer_record_is_skipped_with_one_line_left_in_place_and_never_run_over(tmp_path):
    root, reg, recs = fixture_store(tmp_path)
    newer = recs[3]
    path = path_of(root, newer)
    st0 = status(RunConfig(suite="fx", results=root, registry=reg))
    res0 = score_results(root, "fx", registry=reg, reps=20)
    rewrite(path, set_version(str(int(SCHEMA_VERSION) + 1)))
    before = path.read_bytes()
    seen = every_reader(root, reg)
    assert seen["scan"] == seen["read"] == seen["score"] == {r["key"] for r in recs} - {newer["key"]}
    assert newer["key"] in seen["run (stored, not redone)"]  # a plan never trains over it
    store = Store(root)
    scan = store.repair()  # what `run` does first: it is neither quarantined nor removed
    assert [b.path for b in scan.newer] == [path] and scan.unreadable == ()
    lines = [ln for ln in scan.lines() if str(path) in ln]
    assert len(lines) == 1 and "newer celo-bench" in lines[0] and "left in place" in lines[0]
    res = score_results(root, "fx", registry=reg, reps=20)
    assert sum("newer celo-bench" in n for n in res.notes) == 1
    st = status(RunConfig(suite="fx", results=root, registry=reg))
    assert any("newer celo-bench" in ln for ln in st["unreadable"])
    # status, score and run agree: the run is neither missing nor trained again, so no hint
    # sends the user to a `run` that executes nothing (found by a new-user trial)
    assert st["newer"] == 1 and st0["newer"] == 0
    assert st["missing"] == st0["missing"] and st["done"] == st0["done"] - 1
    assert res.missing == res0.missing
    store.write(newer)  # a write of the same run (another process) leaves it as it is
    assert path.read_bytes() == before and not (root / ".quarantine").exists()


def test_a_record_that_cannot_be_upgraded_is_unreadable_to_every_command_and_quarantined(tmp_path):
    root, reg, recs = fixture_store(tmp_path)
    bad = [path_of(root, recs[1]), path_of(root, recs[2])]
    rewrite(bad[0], drop("config"))  # a column without a default
    rewrite(bad[1], cast("seed", pa.string()))  # a type that does not cast
    seen = every_reader(root, reg)
    expect = {recs[0]["key"], recs[3]["key"]}
    assert all(v == expect for v in seen.values()), seen
    scan = Store(root).repair()
    assert sorted(b.path for b in scan.unreadable) == sorted(bad)
    assert "lacks column config" in " ".join(b.reason for b in scan.unreadable)
    assert not any(p.exists() for p in bad) and len(list((root / ".quarantine").rglob("*.parquet"))) == 2


def test_store_check_lists_versions_and_migrate_rewrites_old_records_in_place(tmp_path):
    root, reg, recs = fixture_store(tmp_path)
    old, unversioned, newer = (path_of(root, r) for r in recs[1:])
    rewrite(old, lambda t: cast("seed", pa.int32())(drop("strategy")(t)))
    rewrite(unversioned, drop("schema_version"))
    rewrite(newer, set_version("99"))
    newer_bytes = newer.read_bytes()
    before = Store(root).read().set_index("key")
    runner = CliRunner()
    res = runner.invoke(app, ["store", "check", "--results", str(root), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["by_version"] == {"0": 1, "1": 2} and doc["records"] == 3
    change = {Path(u["path"]): u for u in doc["to_upgrade"]}
    assert set(change) == {old, unversioned}
    assert change[old]["filled"] == ["strategy"] and change[old]["cast"] == [["seed", "int32", "int64"]]
    assert change[unversioned]["version"] == "0"
    assert [Path(line.split(":")[0]) for line in doc["newer"]] == [newer]
    text = runner.invoke(app, ["store", "check", "--results", str(root)])
    assert text.exit_code == 0 and "schema 0: 1 records" in text.output and "--migrate" in text.output
    assert pq.read_schema(old).field("seed").type == pa.int32()  # checking changes nothing
    res = runner.invoke(app, ["store", "check", "--results", str(root), "--migrate", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert sorted(map(Path, json.loads(res.stdout)["migrated"])) == sorted([old, unversioned])
    for p in (old, unversioned):  # rewritten whole in the current schema, same values
        stored = pq.read_table(p)
        assert stored.schema.remove_metadata().equals(SCHEMA)
        assert stored.column("schema_version")[0].as_py() == SCHEMA_VERSION
    assert newer.read_bytes() == newer_bytes
    assert not list(root.rglob(".tmp-*"))
    after = Store(root).read().set_index("key")
    for key in before.index:
        for col in ("seed", "status", "hparams", "provenance", "strategy"):
            if col == "strategy" and key == old.stem:
                assert after.loc[key, col] is None
                continue
            assert after.loc[key, col] == before.loc[key, col], (key, col)
        np.testing.assert_array_equal(after.loc[key, "train_loss"], before.loc[key, "train_loss"])
    again = json.loads(runner.invoke(app, ["store", "check", "--results", str(root), "-f", "json"]).stdout)
    assert again["to_upgrade"] == [] and again["by_version"] == {SCHEMA_VERSION: 3}


VERSION_1_COLUMNS = (
    "key", "suite", "suite_version", "task", "optimizer", "optimizer_kind", "hparams", "hparam_id",
    "learning_rate", "seed", "num_steps", "status", "message", "diverged_step", "train_loss", "eval_steps",
    "eval_train_loss", "eval_valid_loss", "eval_test_loss", "compile_seconds", "run_seconds", "job_runs",
    "strategy", "config", "provenance", "schema_version",
)


def test_every_schema_version_is_declared_once_with_the_defaults_of_what_it_added():
    assert SCHEMA_HISTORY[-1].version == SCHEMA_VERSION
    assert [int(c.version) for c in SCHEMA_HISTORY] == sorted(int(c.version) for c in SCHEMA_HISTORY)
    added = [c for change in SCHEMA_HISTORY[1:] for c in change.added]
    # a column added to RunRecord without its SchemaChange (and the default older records get) fails here
    assert sorted(SCHEMA.names) == sorted([*VERSION_1_COLUMNS, *added])
    for change in SCHEMA_HISTORY[1:]:
        for column, default in change.added.items():
            assert UPGRADE_DEFAULTS[column] == default
    assert rec_mod.version_order("0") < 0 and rec_mod.version_order(SCHEMA_VERSION) == 0
    assert rec_mod.version_order(str(int(SCHEMA_VERSION) + 1)) > 0
    with pytest.raises(rec_mod.SchemaError, match="unknown schema version"):
        rec_mod.version_order("banana")
