"""Bundles: `celo-bench export`, `import` and `verify`.

A bundle carries a submission's records, folder and provenance; `import` must refuse a
bundle whose hashes, keys, versions or paths are wrong, with one line and the store left
byte for byte as it was, and never run the bundle's code; `verify` reruns a sample in a
separate process and fails a bundle whose curves were altered. The fast tests build records
from the plan (no training); the end-to-end test trains the smoke suite at 10 steps.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from celo_bench import plan
from celo_bench.errors import CeloBenchError
from celo_bench.records import SCHEMA, RunRecord
from celo_bench.store import Store
from celo_bench.submission import stored
from celo_bench.submission.bundle import MANIFEST, BundleRefused, open_bundle
from celo_bench.submission.exchange import export_bundle, import_bundle
from celo_bench.submission.schema import parse_submission
from celo_bench.submission.verify import choose, max_rel_diff, rerun_jobs
from celo_bench.suite import load_registry
from tests.test_submission import TOML as SUBMISSION_TOML

REPO = Path(__file__).resolve().parents[1]
NAME = "tiny_bundle"
CODE = """
import optax

def make_optimizer(*, learning_rate, num_steps):
    return optax.sgd(learning_rate)
"""
MARKER_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("optimizer.py was run")
raise SystemExit("optimizer.py must never run during import")
"""
TOML = SUBMISSION_TOML.format(name=NAME, kind="handcrafted")  # the submission tests' metadata
FAST = {"steps": 10, "seeds": 2}


def write_submission(root: Path, code: str = CODE, toml: str = TOML) -> Path:
    folder = root / NAME
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text(toml)
    (folder / "optimizer.py").write_text(code)
    return folder


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `root` (nothing there: {})."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def fake_records(folder: Path, results: Path, execution: dict | None = None) -> list[str]:
    """Store records of the submission's smoke plan without training (curves from the seed and lr)."""
    sub = parse_submission(folder)
    spec = stored.spec(sub)
    reg = load_registry().with_optimizer(spec)
    jobs = plan.expand(reg, reg.suite("smoke"), optimizers=[NAME], backend="cpu",
                       strategy_overrides=execution or {}, **FAST)
    store = Store(results)
    env = {"backend": "cpu", "device": "cpu", "jax": "0.0-test", "jaxlib": "0.0-test", "optax": "0", "flax": "0",
           "submission": NAME, "submission_source_sha256": hashlib.sha256((folder / "optimizer.py").read_bytes()).hexdigest()}
    keys = []
    for job in jobs:
        steps = np.arange(0, job.num_steps + 1, job.task.eval_every)
        for run in job.runs:
            lr = run.hparams["learning_rate"]
            train = (2.0 - lr * np.arange(job.num_steps + 1) / (1 + run.seed)).astype(np.float32)
            store.write(RunRecord(
                key=run.key, suite=run.suite, suite_version=run.suite_version, task=run.task, optimizer=NAME,
                optimizer_kind="submission", hparams=run.hparams, hparam_id=run.hparam_id, learning_rate=lr,
                seed=run.seed, num_steps=run.num_steps, status="ok", train_loss=train, eval_steps=steps,
                eval_train_loss=train[steps], eval_valid_loss=train[steps] + 0.1, eval_test_loss=train[steps] + 0.2,
                compile_seconds=1.0, run_seconds=0.5, job_runs=len(job.runs), strategy=job.strategy.label,
                config=run.config, provenance=env | dict(job.provenance)))
            keys.append(run.key)
    return keys


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A submission, its (untrained) records in a store, and the bundle exported from them."""
    root = tmp_path_factory.mktemp("bundles")
    folder = write_submission(root)
    results = root / "results"
    fake_records(folder, results)
    res = export_bundle(folder, suite="smoke", results=results, out=root / "tiny.zip", **FAST)
    assert res.runs == 8 and res.path.is_file()
    return {"root": root, "folder": folder, "results": results, "bundle": res.path}


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, list[str]]:
    """Run `celo-bench ARGS` through its entry point: (exit code, stdout, stderr's error lines)."""
    from celo_bench.cli import main

    monkeypatch.setattr(sys, "argv", ["celo-bench", *args])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    return e.value.code or 0, captured.out, [ln for ln in captured.err.splitlines() if ln.startswith("error: ")]


# --------------------------------------------------------------------------- tampering
def members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def rezip(out: Path, parts: dict[str, bytes], *, rehash: bool = False, extra: list[zipfile.ZipInfo] = ()) -> Path:
    """Write `parts` as a zip; `rehash` updates the manifest's sha256 of every part (a careful forger)."""
    parts = dict(parts)
    if rehash:
        m = json.loads(parts[MANIFEST])
        m["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in parts.items() if n != MANIFEST}
        parts[MANIFEST] = json.dumps(m).encode()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
        for info in extra:
            zf.writestr(info, b"/etc/passwd")
    return out


def first_record(parts: dict[str, bytes]) -> str:
    return sorted(n for n in parts if n.startswith("records/"))[0]


def edit_record(data: bytes, **changes) -> bytes:
    row = pq.read_table(pa.BufferReader(data)).to_pylist()[0] | changes
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([row], schema=SCHEMA), buf)
    return buf.getvalue()


def one_loss_changed(parts: dict[str, bytes]) -> dict[str, bytes]:
    name = first_record(parts)
    row = pq.read_table(pa.BufferReader(parts[name])).to_pylist()[0]
    loss = list(row["train_loss"])
    loss[3] *= 0.5
    return parts | {name: edit_record(parts[name], train_loss=loss)}


def one_hash_changed(parts: dict[str, bytes]) -> dict[str, bytes]:
    m = json.loads(parts[MANIFEST])
    name = first_record(parts)
    m["files"][name] = "0" * 64
    return parts | {MANIFEST: json.dumps(m).encode()}


def manifest_edit(**changes):
    def edit(parts: dict[str, bytes]) -> dict[str, bytes]:
        return parts | {MANIFEST: json.dumps(json.loads(parts[MANIFEST]) | changes).encode()}
    return edit


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


TAMPERED = {
    # name: (make the bundle's parts, rehash, extra zip members, text of the one error line)
    "one loss changed": (one_loss_changed, False, [], "the bundle was altered"),
    "one hash changed": (one_hash_changed, False, [], "its manifest says 0000000000000000"),
    "another suite version": (manifest_edit(suite_version="2"), False, [], "suite 'smoke' version 2"),
    "another engine version": (manifest_edit(engine_version="0"), False, [], "engine version 0"),
    "a seed changed with its hash": (lambda p: p | {first_record(p): edit_record(p[first_record(p)], seed=7)},
                                     True, [], "does not match its key"),
    "a path escaping its folder": (lambda p: p | {"submission/../../evil.py": b"print(1)"}, False, [],
                                   "escapes the bundle's folder"),
    "an absolute path": (lambda p: p | {"/tmp/evil.py": b"print(1)"}, False, [], "an absolute path"),
    "a symbolic link": (lambda p: p, False, [symlink("submission/link")], "a symbolic link"),
    "a record left out": (lambda p: {n: d for n, d in p.items() if n != first_record(p)}, True, [],
                          "has no record file"),
    "not its plan": (manifest_edit(plan={"steps": 20, "seeds": 2, "execution": {}, "backend": "cpu"}), False, [],
                     "not in this installation's plan"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_import_refuses_a_tampered_bundle_in_one_line_and_changes_nothing(case, made, tmp_path, monkeypatch, capsys):
    edit, rehash, extra, text = TAMPERED[case]
    bundle = rezip(tmp_path / "bad.zip", edit(members(made["bundle"])), rehash=rehash, extra=extra)
    results = tmp_path / "results"
    shutil.copytree(made["results"], results)
    (results / made["bundle"].name).write_bytes(b"")  # any file: the store must stay byte for byte
    before = snapshot(results)
    code, out, errors = cli(monkeypatch, capsys, "import", str(bundle), "--results", str(results))
    assert code == 2 and len(errors) == 1, (case, out, errors)
    assert errors[0].startswith(f"error: bundle {bundle} refused: ") and text in errors[0], (case, errors[0])
    assert snapshot(results) == before, case


def test_import_refuses_what_is_not_a_bundle(tmp_path, monkeypatch, capsys):
    junk = tmp_path / "junk.zip"
    junk.write_text("not a zip")
    code, _, errors = cli(monkeypatch, capsys, "import", str(junk), "--results", str(tmp_path / "r"))
    assert code == 2 and len(errors) == 1 and "not a zip file" in errors[0]
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- import
def test_export_import_round_trip_keeps_records_and_folder(made, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    code, out, errors = cli(monkeypatch, capsys, "import", str(made["bundle"]), "--results", str(results))
    assert code == 0 and not errors, out
    assert "imported 8 runs" in out
    mine, theirs = Store(results).read(), Store(made["results"]).read()
    assert len(mine) == 8
    for col in ("key", "seed", "hparam_id", "status", "config", "provenance"):
        assert mine[col].tolist() == theirs[col].tolist(), col
    assert all(np.array_equal(a, b) for a, b in zip(mine["train_loss"], theirs["train_loss"], strict=True))
    kept = results / ".submissions" / NAME
    assert (kept / "optimizer.py").read_text() == CODE and (kept / "submission.toml").read_text() == TOML
    info = json.loads((kept / "bundle.json").read_text())
    assert info["bundle_sha256"] == hashlib.sha256(made["bundle"].read_bytes()).hexdigest()
    assert info["suite"] == "smoke" and len(info["runs"]) == 8 and info["environments"][0]["device"] == "cpu"
    assert [s.name for s in stored.kept(results)[0]] == [NAME]  # the leaderboard finds it

    before = snapshot(results)
    code, out, _ = cli(monkeypatch, capsys, "import", str(made["bundle"]), "--results", str(results))
    assert code == 0 and "imported 0 runs" in out and "8 were stored already" in out
    assert {k: v for k, v in snapshot(results).items() if not k.endswith("bundle.json")} == {
        k: v for k, v in before.items() if not k.endswith("bundle.json")}


def test_import_notes_a_task_whose_records_come_from_another_environment(made, tmp_path):
    """The store's Adam ran on a GPU, the bundle's runs on a CPU: imported, with the scoring rule's note."""
    results = tmp_path / "results"
    adam = Store(results)
    row = Store(made["results"]).read().iloc[0]
    adam.write(RunRecord(key="a" * 24, suite="smoke", suite_version="1", task=row["task"], optimizer="adam",
                         optimizer_kind="handcrafted", hparams={"learning_rate": 0.01}, hparam_id="adam[learning_rate=0.01]",
                         seed=0, num_steps=10, status="ok", train_loss=np.ones(11, np.float32), config="{}",
                         provenance={"device": "NVIDIA H100", "backend": "gpu", "jax": "0.0-test",
                                     "jaxlib": "0.0-test", "optax": "0", "flax": "0"}))
    res = import_bundle(made["bundle"], results=results)
    assert res.imported == 8 and len(res.notes) == 1
    assert res.notes[0].startswith(f"task {row['task']}: device kind") and "--allow-mixed-environments" in res.notes[0]


def test_import_refuses_runs_stored_with_other_values(made, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    import_bundle(made["bundle"], results=results)
    store = Store(results)
    row = store.read().iloc[0].to_dict()
    path = store.path(row["task"], NAME, row["key"])
    record = pq.read_table(path).to_pylist()[0]
    record["train_loss"] = [x + 1.0 for x in record["train_loss"]]
    store.write(record)
    before = snapshot(results)
    code, _, errors = cli(monkeypatch, capsys, "import", str(made["bundle"]), "--results", str(results))
    assert code == 2 and len(errors) == 1 and f"run {row['key']}" in errors[0] and "another train_loss" in errors[0]
    assert snapshot(results) == before


def test_import_never_runs_the_bundles_code(tmp_path, monkeypatch, capsys):
    """An optimizer.py that writes a file and exits at import: import and export never run it."""
    marker = tmp_path / "ran.txt"
    code = MARKER_CODE.format(marker=str(marker))
    folder = write_submission(tmp_path / "sub", code)
    source = tmp_path / "source"
    fake_records(folder, source)
    bundle = export_bundle(folder, suite="smoke", results=source, out=tmp_path / "b.zip", **FAST).path
    res = import_bundle(bundle, results=tmp_path / "results")
    assert res.imported == 8 and not marker.exists()
    assert json.loads((res.folder / "bundle.json").read_text())["source_sha256"] == hashlib.sha256(code.encode()).hexdigest()


def test_import_refuses_a_name_the_store_keeps_with_other_code(made, tmp_path):
    results = tmp_path / "results"
    import_bundle(made["bundle"], results=results)
    other = write_submission(tmp_path / "other", CODE + "\n# edited\n")
    source = tmp_path / "source"
    fake_records(other, source)
    bundle = export_bundle(other, suite="smoke", results=source, out=tmp_path / "other.zip", **FAST).path
    before = snapshot(results)
    with pytest.raises(BundleRefused, match="keeps another submission named 'tiny_bundle'"):
        import_bundle(bundle, results=results)
    assert snapshot(results) == before


def test_export_refuses_an_incomplete_grid_with_the_command_that_trains_it(made, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    shutil.copytree(made["results"], results)
    next(results.rglob("*.parquet")).unlink()
    code, _, errors = cli(monkeypatch, capsys, "export", str(made["folder"]), "--suite", "smoke", "--steps", "10",
                          "--seeds", "2", "--results", str(results), "--out", str(tmp_path / "x.zip"))
    assert code == 2 and len(errors) == 1 and "1 of the 8 planned runs" in errors[0]
    assert "celo-bench submit" in errors[0] and not (tmp_path / "x.zip").exists()


def test_export_by_kept_name_and_with_execution_settings(made, tmp_path):
    """A kept submission exports by name; records made with --xla-opt-level keep their keys."""
    results = tmp_path / "results"
    import_bundle(made["bundle"], results=results)
    again = export_bundle(NAME, suite="smoke", results=results, out=tmp_path / "again.zip", **FAST)
    assert again.runs == 8 and open_bundle(again.path).name == NAME

    source = tmp_path / "o1"
    keys = fake_records(made["folder"], source, execution={"xla_opt_level": 1})
    b = export_bundle(made["folder"], suite="smoke", results=source, out=tmp_path / "o1.zip",
                      execution={"xla_opt_level": 1}, **FAST)
    opened = open_bundle(b.path)
    assert sorted(opened.rows) == sorted(keys) and not set(keys) & set(open_bundle(made["bundle"]).rows)
    assert all(plan.record_key(row) == key for key, row in opened.rows.items())


def test_a_small_checkpoint_in_the_folder_travels_with_the_bundle(tmp_path):
    """A learned submission's theta.state (relative, small) is bundled, checked and kept on import."""
    theta = b"not really msgpack: export and import never decode it"
    sha = hashlib.sha256(theta).hexdigest()
    toml = TOML.replace('kind = "handcrafted"', 'kind = "learned"') + (
        f'\n[checkpoint]\nsource = "weights/theta.state"\nsha256 = "{sha}"\n'
        '\n[meta_training]\ntasks = ["nothing"]\ncompute = "none"\n')
    folder = write_submission(tmp_path / "sub", CODE.replace("(*, learning_rate", "(meta_params, *, learning_rate"),
                              toml)
    (folder / "weights").mkdir()
    (folder / "weights" / "theta.state").write_bytes(theta)
    fake_records(folder, tmp_path / "source")
    res = export_bundle(folder, suite="smoke", results=tmp_path / "source", out=tmp_path / "l.zip", **FAST)
    assert res.checkpoint == {"source": "weights/theta.state", "sha256": sha, "included": True,
                              "file": "submission/weights/theta.state"}
    assert members(res.path)["submission/weights/theta.state"] == theta
    kept = import_bundle(res.path, results=tmp_path / "results").folder
    assert (kept / "weights" / "theta.state").read_bytes() == theta

    (folder / "weights" / "theta.state").write_bytes(b"other bytes")
    with pytest.raises(CeloBenchError, match="submission.toml promises"):
        export_bundle(folder, suite="smoke", results=tmp_path / "source", out=tmp_path / "m.zip", **FAST)
    assert not (tmp_path / "m.zip").exists()


# --------------------------------------------------------------------------- verify (no training)
def test_verify_picks_each_tasks_tuned_point_and_a_seeded_sample_in_their_job_shape(made):
    b = open_bundle(made["bundle"])
    chosen = choose(b, sample=2, seed=0)
    assert list(chosen.values()).count("tuned") == 2 and list(chosen.values()).count("sample") == 2
    assert chosen == choose(b, sample=2, seed=0) and choose(b, sample=6, seed=1) != chosen
    tuned = [b.rows[k] for k, why in chosen.items() if why == "tuned"]
    assert {r["task"] for r in tuned} == {"smoke_digits_mlp", "smoke_digits_ae"}
    assert all(r["seed"] == 0 and json.loads(r["hparams"])["learning_rate"] == 0.1 for r in tuned)  # lowest loss
    jobs = rerun_jobs(b, chosen)
    assert sorted(len(j["keys"]) for j in jobs) == [4, 4]  # each vmap job whole: 2 points x 2 seeds
    assert all(j["keys"] == [k for k in b.rows if b.rows[k]["task"] == j["task"]] for j in jobs)  # plan order


def test_relative_difference_of_curves():
    assert max_rel_diff([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert max_rel_diff([1.0, 2.2], [1.0, 2.0]) == pytest.approx(0.1)
    assert max_rel_diff([1.0, np.nan], [1.0, np.nan]) == 0.0
    assert max_rel_diff([1.0, np.nan], [1.0, 2.0]) == np.inf
    assert max_rel_diff([1.0], [1.0, 2.0]) == np.inf
    assert max_rel_diff(None, []) == 0.0


# --------------------------------------------------------------------------- end to end (trains)
@pytest.mark.slow
def test_export_verify_import_end_to_end_and_verify_fails_an_altered_loss(tmp_path, monkeypatch, capsys):
    """Train the smoke suite (10 steps, 1 seed) for a copy of the Adan example, then export,
    verify (reruns in a separate process: bit-identical on the same CPU) and import it; a
    bundle whose loss was changed with its hashes updated passes every check of import but
    fails verify, in one line."""
    from celo_bench.runner import RunConfig, run
    from celo_bench.submission import loader

    folder = tmp_path / "adan_small"
    shutil.copytree(REPO / "submissions" / "examples" / "adan_cosine", folder)
    toml = (folder / "submission.toml").read_text().replace('name = "adan_cosine"', 'name = "adan_small"')
    (folder / "submission.toml").write_text(toml.replace("{ low = 1e-4, high = 1e-1, num = 7 }", "[1e-3, 1e-2]"))
    sub = parse_submission(folder)
    reg = load_registry().with_optimizer(loader.register_submission(sub))
    source = tmp_path / "source"
    summary = run(RunConfig(suite="smoke", optimizers=[sub.name], steps=10, seeds=1, results=source, registry=reg,
                            provenance={sub.name: loader.provenance(sub)}))
    assert summary.executed == 4 and summary.failed == 0

    bundle = tmp_path / "adan_small.zip"
    code, out, errors = cli(monkeypatch, capsys, "export", str(folder), "--suite", "smoke", "--steps", "10",
                            "--seeds", "1", "--results", str(source), "--out", str(bundle))
    assert code == 0 and not errors and "4 runs of 'adan_small'" in out
    results = tmp_path / "results"
    code, out, errors = cli(monkeypatch, capsys, "verify", str(bundle), "--sample", "1", "--results", str(results),
                            "--format", "json")
    assert code == 0 and not errors, out
    v = json.loads(out)
    assert v["verified"] and v["sample_size"] == 4 and v["max_relative_difference"] == 0.0 and v["same_device"]
    assert sorted(r["why"] for r in v["runs"]) == ["job", "sample", "tuned", "tuned"]
    code, out, errors = cli(monkeypatch, capsys, "import", str(bundle), "--results", str(results))
    assert code == 0 and not errors and "imported 4 runs" in out and "with its verification" in out
    kept = json.loads((results / ".submissions" / "adan_small" / "verification.json").read_text())
    assert kept["verified"] and kept["bundle_sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert not list((results / ".submissions" / ".verifications").iterdir())  # moved beside the submission
    assert [s.name for s in stored.kept(results)[0]] == ["adan_small"]

    forged = rezip(tmp_path / "forged.zip", one_loss_changed(members(bundle)), rehash=True)
    open_bundle(forged)  # every check of import passes: only a rerun can tell
    elsewhere = tmp_path / "elsewhere"
    code, out, errors = cli(monkeypatch, capsys, "verify", str(forged), "--sample", "0", "--results", str(elsewhere))
    assert code == 2 and len(errors) == 1 and "differs from its rerun by" in errors[0], errors
    failed = json.loads(next((elsewhere / ".submissions" / ".verifications").glob("adan_small-*.json")).read_text())
    assert failed["verified"] is False and failed["sample_size"] == 4 and failed["max_relative_difference"] > 0.1
    assert not (elsewhere / ".submissions" / "adan_small").exists()  # kept nowhere until imported
