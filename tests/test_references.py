"""Reference results that ship: built from a store, checked against the plan, read beside the store.

A smoke grid is trained once (10 steps, 1 seed: 12 runs of adam and sgd) and packed into a
ship-like folder (``<root>/smoke/{results.parquet, manifest.json}``). The tests then score,
report and submit against that folder with an empty or partial store, the way a user with a
fresh clone uses the references that ship with the package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from celo_bench import environment, fileio, references
from celo_bench.cli import app
from celo_bench.errors import CeloBenchError
from celo_bench.plan import expand
from celo_bench.references import ReferencesError
from celo_bench.results import remember_reference_intervals, score_results
from celo_bench.score import ScoreConfig
from celo_bench.store import Store
from celo_bench.submission import parse_submission
from celo_bench.suite import load_registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "submissions" / "examples" / "adan_cosine"
PACKAGE_REFERENCES = Path(references.__file__).resolve().parent
"""Where references ship inside the package (``celo_bench/references/<suite>/``)."""
PLAN = ["--suite", "smoke", "--steps", "10", "--seeds", "1"]
TASKS = ("smoke_digits_ae", "smoke_digits_mlp")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The smoke grid trained at 10 steps and 1 seed: adam and sgd, 3 learning rates, 2 tasks."""
    from celo_bench.runner import RunConfig, run

    root = tmp_path_factory.mktemp("trained") / "results"
    summary = run(RunConfig(suite="smoke", steps=10, seeds=1, results=root))
    assert summary.executed == 12 and summary.failed == 0
    return root


@pytest.fixture(scope="module")
def shipped(trained, tmp_path_factory) -> Path:
    """The trained store packed the way the package ships references."""
    root = tmp_path_factory.mktemp("package") / "references"
    built = references.build("smoke", trained, out=root, steps=10, seeds=1)
    assert built.folder == root / "smoke"
    return root


def _copy(src: Path, dest: Path, drop=lambda task, optimizer: False) -> Path:
    """A copy of store `src` without the records `drop(task, optimizer)` selects."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".claims", ".logs"))
    for p in list(dest.glob("*/*/*.parquet")):
        if drop(p.parent.parent.name, p.parent.name):
            p.unlink()
    return dest


def _rewrite_environment(store: Path, change: dict, which=lambda row: True) -> None:
    """Rewrite the records `which` selects as if made in another environment (`change`: provenance fields)."""
    s = Store(store)
    for row in s.read().to_dict("records"):
        if which(row):
            row = {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}  # NaN: no value
            row["provenance"] = json.dumps({**json.loads(row["provenance"]), **change})
            row.pop("schema_version")
            s.write(row)


def _planned(suite: str = "smoke", registry=None) -> dict[str, set[str]]:
    reg = registry or load_registry()
    out: dict[str, set[str]] = {}
    for j in expand(reg, reg.suite(suite), steps=10, seeds=1):
        out.setdefault(j.optimizer.name, set()).update(r.key for r in j.runs)
    return out


# --------------------------------------------------------------------------- (1) the manifest
def test_the_manifest_holds_the_run_keys_plan_computes_now(trained, shipped):
    m = references.manifest("smoke", shipped)
    assert {o: set(k) for o, k in m.keys.items()} == _planned()
    assert references.check("smoke", shipped) == []
    folder = shipped / "smoke"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "results.parquet"]
    data = folder / "results.parquet"
    assert m.sha256 == fileio.sha256_file(data) and m.bytes == data.stat().st_size <= references.MAX_BYTES
    assert (m.suite, m.suite_version, m.records, m.plan) == ("smoke", "1", 12, {"steps": 10, "seeds": 1,
                                                                                 "execution": {}})
    assert m.left_out == {} and m.statuses == {"adam": {"ok": 6}, "sgd": {"ok": 6}}
    assert m.command.startswith("celo-bench references build --suite smoke")
    # the environment is the records' own; only what scoring and the report read is kept
    stored = Store(trained).read()
    assert {json.dumps(environment.of(p), sort_keys=True) for p in stored["provenance"]} == {
        json.dumps(dict(m.environment), sort_keys=True)}
    names = pq.read_schema(data).names
    assert "train_loss" not in names and "config" not in names
    assert {"key", "status", "eval_steps", *references.SERIES} <= set(names)
    # the curves read back are the stored ones, bit for bit
    loaded = references.load("smoke", shipped).records.set_index("key")
    for _, r in stored.iterrows():
        for c in ("eval_steps", *references.SERIES):
            assert loaded.loc[r["key"], c].tobytes() == r[c].tobytes()


def test_check_names_what_no_longer_matches_the_plan(shipped):
    reg = load_registry()
    bumped = dataclasses.replace(reg.suite("smoke"), version="2")
    lines = references.check("smoke", shipped, dataclasses.replace(reg, suites={**reg.suites, "smoke": bumped}))
    assert lines[0] == "suite version: the references are of v1, the suite is v2 now"
    assert any(line.startswith("adam: 6 of its 6 shipped run keys are not planned now") for line in lines)
    more = dataclasses.replace(reg.suite("smoke"), optimizers=("adam", "sgd", "lion"))
    lines = references.check("smoke", shipped, dataclasses.replace(reg, suites={**reg.suites, "smoke": more}))
    assert lines == ["lion: an optimizer of suite 'smoke' neither in the references nor listed as left out"]


def test_build_keeps_only_complete_optimizers_that_run_offline(trained, tmp_path):
    reg = load_registry()
    wider = dataclasses.replace(reg.suite("smoke"), optimizers=("adam", "sgd", "velo_4000"))
    reg = dataclasses.replace(reg, suites={**reg.suites, "smoke": wider})
    one_short = _copy(trained, tmp_path / "results")
    next((one_short / "smoke_digits_ae" / "sgd").glob("*.parquet")).unlink()
    m = references.build("smoke", one_short, out=tmp_path / "refs", registry=reg, steps=10, seeds=1).manifest
    assert list(m.keys) == ["adam"] and m.records == 6
    assert m.left_out["sgd"] == f"5 of its 6 planned runs are stored in {one_short}"
    assert m.left_out["velo_4000"].startswith("its weights are not available offline")
    no_adam = _copy(trained, tmp_path / "no_adam", drop=lambda t, o: o == "adam")
    with pytest.raises(CeloBenchError, match="the reference optimizer 'adam' is left out"):
        references.build("smoke", no_adam, out=tmp_path / "refs2", steps=10, seeds=1)
    assert not (tmp_path / "refs2" / "smoke").exists()


def test_the_references_that_ship_match_the_current_plan():
    shipped = references.suites(PACKAGE_REFERENCES)
    if not shipped:
        pytest.skip("no reference results ship yet: make them with `celo-bench references build --suite quick` "
                    "on the release store (docs/references.md)")
    for suite in shipped:
        assert references.check(suite, PACKAGE_REFERENCES) == [], suite
        assert references.manifest(suite, PACKAGE_REFERENCES).bytes <= references.MAX_BYTES


# --------------------------------------------------------------------------- (2) the sha256 check
def test_a_changed_byte_fails_the_sha256_check_in_one_line(shipped, tmp_path):
    damaged = tmp_path / "references"
    shutil.copytree(shipped, damaged)
    data = damaged / "smoke" / "results.parquet"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(ReferencesError) as e:
        references.load("smoke", damaged)
    message = str(e.value)
    assert "\n" not in message and "are damaged" in message and "sha256" in message
    assert "reinstall celo-bench" in message and "celo-bench references build --suite smoke" in message
    assert references.check("smoke", damaged) == [message]
    res = CliRunner().invoke(app, ["score", *PLAN, "--results", str(tmp_path / "empty")],
                             env={references.ENV: str(damaged)})
    # the command stops on the same one line (the console script prints it as "error: ..." and exits 2)
    assert isinstance(res.exception, ReferencesError) and str(res.exception) == message


# --------------------------------------------------------------------------- (3) report, empty store
def test_report_with_an_empty_store_renders_the_reference_leaderboard(shipped, tmp_path):
    empty, out = tmp_path / "results", tmp_path / "report"
    env = {references.ENV: str(shipped)}
    runner = CliRunner()
    t0 = time.perf_counter()
    res = runner.invoke(app, ["report", *PLAN, "--results", str(empty), "--out", str(out), "--reps", "200"], env=env)
    seconds = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    print(f"report of the smoke references with an empty store: {seconds:.1f}s")
    board = (out / "leaderboard.md").read_text()
    assert "**† Reference results**: every row comes from the reference results" in board
    assert "made on device kind `cpu`" in board
    rows = [ln for ln in board.splitlines() if ln.startswith("| 1 ") or ln.startswith("| 2 ")]
    assert len(rows) == 2 and all("†" in r for r in rows)
    page = (out / "index.html").read_text()
    assert "Reference results" in page and "adam †" in page
    assert not empty.exists()  # read beside the store, never written into it
    doc = json.loads(runner.invoke(app, ["score", *PLAN, "--results", str(empty), "--reps", "200",
                                         "--format", "json"], env=env).stdout)
    label = references.manifest("smoke", shipped).label
    assert {r["optimizer"]: r["source"] for r in doc["rows"]} == {"adam": label, "sgd": label}
    assert doc["references"]["runs"] == {"adam": 6, "sgd": 6}
    alone = runner.invoke(app, ["score", *PLAN, "--results", str(empty), "--no-references"], env=env)
    assert isinstance(alone.exception, CeloBenchError) and "no records of the current plan" in str(alone.exception)


# --------------------------------------------------------------------------- (4) never mixed
def test_an_optimizer_takes_all_its_runs_from_one_source(trained, shipped, tmp_path):
    store = _copy(trained, tmp_path / "results",
                  drop=lambda t, o: o == "adam" or (o == "sgd" and t == "smoke_digits_ae"))
    before = {p: p.read_bytes() for p in store.rglob("*.parquet")}
    res = score_results(store, "smoke", steps=10, seeds=1, reps=200, references=shipped)
    label = references.manifest("smoke", shipped).label
    assert dict(zip(res.aggregate["optimizer"], res.aggregate["source"], strict=True)) == {
        "adam": label, "sgd": "store"}
    assert res.from_references == {"adam": 6}
    # sgd has store records, so the references' sgd runs of the other task are not used
    assert set(res.tasks.loc[res.tasks["optimizer"] == "sgd", "task"]) == {"smoke_digits_mlp"}
    assert set(res.tasks.loc[res.tasks["optimizer"] == "adam", "task"]) == set(TASKS)
    assert dict(res.missing) == {"sgd": 3}
    assert {p: p.read_bytes() for p in store.rglob("*.parquet")} == before
    full = score_results(trained, "smoke", steps=10, seeds=1, reps=200, references=shipped)
    assert full.from_references == {} and set(full.aggregate["source"]) == {"store"}
    # a series the references do not keep is scored from the store alone, with a note
    no_sgd = _copy(trained, tmp_path / "no_sgd", drop=lambda t, o: o == "sgd")
    per_step = score_results(no_sgd, "smoke", steps=10, seeds=1, reps=200, references=shipped,
                             config=ScoreConfig(series="train_loss"))
    assert per_step.from_references == {} and list(per_step.aggregate["optimizer"]) == ["adam"]
    assert any(n.startswith("the reference results of suite 'smoke' hold the series") for n in per_step.notes)


def test_references_from_another_environment_are_scored_and_noted(trained, tmp_path):
    other = _copy(trained, tmp_path / "other")
    _rewrite_environment(other, {"device": "NVIDIA H100 80GB HBM3", "backend": "gpu", "jax": "0.0.other"})
    refs = tmp_path / "refs"
    references.build("smoke", other, out=refs, steps=10, seeds=1)
    mine = _copy(trained, tmp_path / "mine", drop=lambda t, o: o == "adam")
    res = score_results(mine, "smoke", steps=10, seeds=1, reps=200, references=refs)
    assert res.from_references == {"adam": 6}
    note = [n for n in res.notes if n.startswith("reference results and this store's records")]
    assert len(note) == 1 and list(res.mixed_environments) == note
    assert "device kind cpu (this store) vs NVIDIA H100 80GB HBM3 (references)" in note[0]
    assert "jax " in note[0] and "backend cpu vs gpu" in note[0] and "smoke_digits_ae, smoke_digits_mlp" in note[0]
    # the rule still holds inside the store: one of sgd's records made with another jax is refused
    one = next((mine / "smoke_digits_ae" / "sgd").glob("*.parquet")).stem
    _rewrite_environment(mine, {"jax": "0.0.another"}, lambda row: row["key"] == one)
    with pytest.raises(environment.MixedEnvironmentsError, match="task smoke_digits_ae .*jax"):
        score_results(mine, "smoke", steps=10, seeds=1, reps=200, references=refs)


# --------------------------------------------------------------------------- (5) submit
@pytest.mark.slow
def test_submit_trains_only_the_submissions_runs_when_references_cover_the_baselines(shipped, tmp_path):
    results, reports = tmp_path / "results", tmp_path / "reports"
    env = {references.ENV: str(shipped)}
    runner = CliRunner()
    args = ["submit", str(EXAMPLE), *PLAN, "--results", str(results), "--out", str(reports), "--reps", "200"]
    refused = runner.invoke(app, [*args, "--no-references", "--no-report"], env=env)
    assert refused.exit_code != 0 and "runs of the reference 'adam'" in str(refused.exception)
    assert not list(results.rglob("*.parquet"))
    t0 = time.perf_counter()
    first = runner.invoke(app, [*args, "--format", "json"], env=env)
    seconds = time.perf_counter() - t0
    assert first.exit_code == 0, first.output
    print(f"submit of adan_cosine against the smoke references, empty store: {seconds:.1f}s")
    out = json.loads(first.stdout)
    n = 2 * len(parse_submission(EXAMPLE).search_space["learning_rate"])
    assert out["executed"] == n and out["baselines_run"] == 0 and out["missing_baselines"] == {}
    assert out["from_references"] == {"adam": 6, "sgd": 6} and out["rank"] is not None and out["of"] == 3
    stored = Store(results).read(curves=False)
    assert len(stored) == n and set(stored["optimizer"]) == {"adan_cosine"}
    board = (reports / "leaderboard.md").read_text()
    assert "the 2 rows marked † come from the reference results" in board
    names = sorted(ln.split("|")[2].strip() for ln in board.splitlines() if re.match(r"\| \d+ \|", ln))
    assert names == ["**adam** †", "**adan_cosine** ◀ new", "sgd †"]
    # a second submit trains nothing and changes no record; the ranking is printed before the report
    before = _digests(results)
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 0, again.output
    text = again.output
    assert f"executed 0, skipped {n}" in text and text.index("ranks") < text.index("report:")
    assert _digests(results) == before


# --------------------------------------------------------------------------- remembered intervals
def test_remembered_intervals_are_the_ones_scoring_computes(shipped, tmp_path):
    """``intervals.json`` serves the references' bootstrap intervals; scoring them again gives the same table."""
    refs_root = tmp_path / "refs"
    shutil.copytree(shipped, refs_root)
    path = remember_reference_intervals("smoke", refs_root, steps=10, seeds=1)
    loaded = references.load("smoke", refs_root)
    assert path == refs_root / "smoke" / "intervals.json" and len(loaded.intervals) >= 2  # equal matrices share one
    empty = tmp_path / "empty"
    served = score_results(empty, "smoke", steps=10, seeds=1, references=refs_root)
    fresh = score_results(empty, "smoke", steps=10, seeds=1, references=refs_root, memo={})
    assert served.aggregate.equals(fresh.aggregate)
    # they are used: an edited entry shows up ...
    doc = json.loads(path.read_text())
    key = next(iter(doc["intervals"]))
    doc["intervals"][key] = [[123.0, 122.0, 124.0]] * 4
    path.write_text(json.dumps(doc))
    edited = score_results(empty, "smoke", steps=10, seeds=1, references=refs_root).aggregate
    assert (edited.filter(like="_iqm").to_numpy() == 123.0).any()
    # ... unless they were made for another results file, and none is used for other settings
    doc["results_sha256"] = "0" * 64
    path.write_text(json.dumps(doc))
    assert references.load("smoke", refs_root).intervals == {}
    assert score_results(empty, "smoke", steps=10, seeds=1, references=refs_root).aggregate.equals(fresh.aggregate)


@pytest.mark.slow
def test_the_shipped_intervals_are_the_ones_scoring_computes(tmp_path):
    for suite in references.suites(PACKAGE_REFERENCES):
        loaded = references.load(suite, PACKAGE_REFERENCES)
        assert loaded.intervals, f"{suite}: no intervals.json: `celo-bench references build` writes it"
        served = score_results(tmp_path, suite, references=PACKAGE_REFERENCES)
        fresh = score_results(tmp_path, suite, references=PACKAGE_REFERENCES, memo={})
        assert served.aggregate.equals(fresh.aggregate), suite


def test_submit_starts_the_longest_jobs_first(shipped, tmp_path):
    """The manifest's task_seconds order a submission's jobs, longest first (its rank comes sooner)."""
    from celo_bench.runner import RunConfig, run

    m = references.manifest("smoke", shipped)
    assert set(m.task_seconds) == set(TASKS) and all(v > 0 for v in m.task_seconds.values())
    seen = []
    for order in ({TASKS[0]: 1.0, TASKS[1]: 9.0}, {TASKS[0]: 9.0, TASKS[1]: 1.0}):
        cfg = RunConfig(suite="smoke", steps=10, seeds=1, optimizers=["adam"], results=tmp_path / str(len(seen)),
                        job_seconds=order)
        run(cfg, on_plan=lambda todo: seen.append([j.task.name for j in todo]))
    assert seen == [list(reversed(TASKS)), list(TASKS)]


def test_status_counts_the_missing_runs_the_references_hold(shipped, tmp_path, monkeypatch):
    from celo_bench.runner import RunConfig, status

    monkeypatch.setenv(references.ENV, str(shipped))
    st = status(RunConfig(suite="smoke", steps=10, seeds=1, results=tmp_path / "empty"))
    assert st["done"] == 0 and st["missing"] == st["in_references"] == 12
    res = CliRunner().invoke(app, ["status", *PLAN, "--results", str(tmp_path / "empty")], env={references.ENV: str(shipped)})
    assert "12 of the missing runs are in the reference results" in res.output
    # another horizon plans other keys: none of them is in the references
    assert status(RunConfig(suite="smoke", steps=20, seeds=1, results=tmp_path / "empty"))["in_references"] == 0


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.parquet")}


def test_a_store_equal_to_the_references_takes_their_intervals(trained, shipped, tmp_path):
    """Intervals are content-addressed: a store whose runs equal the references' (the README's first
    command on a machine like the one that made them) is served theirs, though it draws no row from
    them; scored without references it bootstraps its own."""
    refs_root = tmp_path / "refs"
    shutil.copytree(shipped, refs_root)
    path = remember_reference_intervals("smoke", refs_root, steps=10, seeds=1)
    doc = json.loads(path.read_text())
    doc["intervals"] = {k: [[123.0, 122.0, 124.0]] * 4 for k in doc["intervals"]}
    path.write_text(json.dumps(doc))
    served = score_results(trained, "smoke", steps=10, seeds=1, references=refs_root)
    assert not served.from_references  # every row is the store's
    assert (served.aggregate.filter(like="_iqm").to_numpy() == 123.0).any()
    alone = score_results(trained, "smoke", steps=10, seeds=1, references=False)
    assert not (alone.aggregate.filter(like="_iqm").to_numpy() == 123.0).any()
