"""Submissions stay on their store's leaderboard, and each store has its own default report folder.

The fast tests build the store from hand-made records (no training): the smoke suite's baselines
at their planned keys, plus a submission kept in the store the way ``celo-bench submit`` keeps it
(``<results>/.submissions/<name>/``), with records at the keys its kept folder plans. The slow
test submits for real and then runs ``report`` and ``run``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _score_fixtures import grid_records, make_submission, write
from typer.testing import CliRunner

from celo_bench.cli import app
from celo_bench.defaults import DEFAULT_REPORTS, SUBMISSIONS_FOLDER, report_dir
from celo_bench.submission import parse_submission
from celo_bench.submission.stored import keep, kept, spec, with_stored
from celo_bench.suite import load_registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "submissions" / "examples" / "adan_cosine"
LONG = "momentum_with_a_rather_long_typed_name_2"  # 40 characters: the longest a submission may have
TASKS = ["smoke_digits_mlp", "smoke_digits_ae"]


def smoke_store(root: Path, submission: Path | None) -> Path:
    """Every planned run of the smoke suite (adam, sgd at their grids; 2 seeds, 50 steps) and,
    with `submission`, that submission kept in the store with every run of its grid."""
    results = root / "results"
    reg = load_registry()
    grids = reg.suite("smoke").grids
    recs = []
    for name, quality in (("adam", 1.0), ("sgd", 1.3)):
        recs += grid_records(TASKS, {name: ("handcrafted", quality)}, seeds=2, n=6, suite="smoke",
                             lrs=grids[name]["learning_rate"])
    if submission is not None:
        sub = parse_submission(submission)
        keep(sub, results)
        reg = reg.with_optimizer(spec(sub))
        recs += grid_records(TASKS, {sub.name: ("submission", 0.8)}, seeds=2, n=6, suite="smoke",
                             lrs=sub.search_space["learning_rate"])
    write(results, recs, reg)
    return results


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("stay")
    sub = make_submission(base / "subs", LONG)
    return {"results": smoke_store(base, sub), "submission": sub}


def _rows(leaderboard: Path) -> dict[str, str]:
    return {r.split("|")[2].replace("*", "").split()[0]: r for r in leaderboard.read_text().splitlines()
            if re.match(r"\| \d+ \|", r)}


def test_a_kept_submission_is_planned_from_its_folder_without_running_its_code(store, tmp_path):
    subs, problems = kept(store["results"])
    assert [s.name for s in subs] == [LONG] and problems == []
    assert sorted(p.name for p in (store["results"] / SUBMISSIONS_FOLDER / LONG).iterdir()) == [
        "optimizer.py", "submission.toml"]
    reg, _ = with_stored(load_registry(), store["results"])
    kept_spec, original = reg.optimizers[LONG], spec(parse_submission(store["submission"]))
    assert kept_spec.kind == "submission" and kept_spec.resolved() == original.resolved()  # same run keys
    # a kept folder whose code cannot even be imported is still scored: nothing of it runs
    broken = tmp_path / "results"
    shutil.copytree(store["results"], broken)
    (broken / SUBMISSIONS_FOLDER / LONG / "optimizer.py").write_text("raise SystemExit('ran')\n")
    assert LONG in with_stored(load_registry(), broken)[0].optimizers
    # a folder that is not a submission is left out with one line
    (broken / SUBMISSIONS_FOLDER / "junk").mkdir()
    _, problems = with_stored(load_registry(), broken)
    assert len(problems) == 1 and "junk" in problems[0]


def test_report_and_run_keep_the_submission_row(store, tmp_path, monkeypatch):
    results = tmp_path / "store"  # not ./results, the default store
    shutil.copytree(store["results"], results)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    rep = runner.invoke(app, ["report", "--suite", "smoke", "--results", str(results), "--reps", "20"])
    assert rep.exit_code == 0, rep.output
    out = results / "reports" / "smoke"  # not the default store: its reports live in it
    rows = _rows(out / "leaderboard.md")
    assert set(rows) == {"adam", "sgd", LONG}
    assert "| submission · not verified |" in rows[LONG]
    board = (out / "leaderboard.md").read_text()
    assert f"`{LONG}` (submission): by Your Name (MIT)" in board  # its card
    assert "outside the registry" not in board  # none of its records is left out
    # `run` finds every run stored, trains nothing, and its report still ranks the submission
    (out / ".celo-bench-report").write_text("")  # a stale stamp: `run` rewrites the report
    ran = runner.invoke(app, ["run", "--suite", "smoke", "--results", str(results), "--format", "json"])
    assert ran.exit_code == 0, ran.output
    doc = json.loads(ran.stdout)
    assert doc["executed"] == 0 and doc["report"] == str(out)
    assert set(_rows(out / "leaderboard.md")) == {"adam", "sgd", LONG}
    assert not (tmp_path / DEFAULT_REPORTS).exists()  # the default store's folder is untouched
    score = runner.invoke(app, ["score", "--suite", "smoke", "--results", str(results), "--reps", "20",
                                "--format", "json"])
    assert score.exit_code == 0, score.output
    assert LONG in {r["optimizer"] for r in json.loads(score.stdout)["rows"]}


def test_the_default_report_folder_belongs_to_one_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert report_dir("quick") == report_dir("quick", "results") == Path("reports/quick")
    assert report_dir("quick", tmp_path / "results") == Path("reports/quick")  # the same folder, spelt absolute
    assert report_dir("quick", "elsewhere") == Path("elsewhere/reports/quick")
    assert report_dir("smoke", tmp_path / "b") == tmp_path / "b" / "reports" / "smoke"
    # two stores, each reported without --out: two folders, neither overwritten
    a = smoke_store(tmp_path / "a", None)
    b = smoke_store(tmp_path / "b", None)
    for results in (a, b):
        res = CliRunner().invoke(app, ["report", "--suite", "smoke", "--results", str(results), "--reps", "20",
                                       "--format", "json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["out"] == str(results / "reports" / "smoke")
    assert (a / "reports" / "smoke" / "index.html").is_file() and (b / "reports" / "smoke" / "index.html").is_file()


def test_score_redirected_at_80_columns_keeps_every_name_whole(store, tmp_path):
    target = tmp_path / "score.txt"
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    with open(target, "w") as f:
        proc = subprocess.run([sys.executable, "-m", "celo_bench.cli", "score", "--suite", "smoke", "--results",
                               str(store["results"]), "--reps", "20"], stdout=f, stderr=subprocess.PIPE, text=True,
                              env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = target.read_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    assert "…" not in text
    for name in ("adam", "sgd", LONG):
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", text, flags=re.M), name
    assert len(re.findall(rf"(^|\s){re.escape(LONG)}(\s|$)", text, flags=re.M)) == 2  # both tables


@pytest.mark.slow
def test_after_submit_report_and_run_keep_the_submission_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "store"  # not ./results: its reports go to store/reports/smoke
    runner = CliRunner()
    fast = ["--suite", "smoke", "--steps", "10", "--seeds", "1", "--results", str(results)]
    base = runner.invoke(app, ["run", *fast, "-o", "adam", "--no-report", "--format", "json"])
    assert base.exit_code == 0, base.output
    sub = runner.invoke(app, ["submit", str(EXAMPLE), *fast, "--reps", "50", "--format", "json"])
    assert sub.exit_code == 0, sub.output
    out = results / "reports" / "smoke"
    assert "◀ new" in _rows(out / "leaderboard.md")["adan_cosine"]
    assert (results / SUBMISSIONS_FOLDER / "adan_cosine" / "optimizer.py").read_bytes() == (
        EXAMPLE / "optimizer.py").read_bytes()
    rep = runner.invoke(app, ["report", *fast, "--reps", "50"])
    assert rep.exit_code == 0, rep.output
    row = _rows(out / "leaderboard.md")["adan_cosine"]
    assert "◀ new" not in row and "| submission · not verified |" in row
    ran = runner.invoke(app, ["run", *fast, "-o", "adam", "--format", "json"])
    assert ran.exit_code == 0, ran.output
    assert "adan_cosine" in _rows(out / "leaderboard.md")
