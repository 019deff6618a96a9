"""Submissions: the format, `celo-bench validate`, `celo-bench submit`, provenance.

Broken folders must each fail with their own one-line message and a non-zero exit while
the results folder stays byte-for-byte unchanged; the hand-crafted example must add
exactly its runs and a marked leaderboard row, and a second submit must train nothing.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from celo_bench import weights
from celo_bench.cli import app
from celo_bench.errors import CeloBenchError, SpecError
from celo_bench.optimizers import checkpoint as ckpt
from celo_bench.store import Store
from celo_bench.submission import parse_submission, validate_submission
from celo_bench.submission.schema import parse_search_space

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "submissions" / "examples" / "adan_cosine"
FAST = ["--suite", "smoke", "--steps", "10", "--seeds", "1"]

GOOD_CODE = """
import optax

def make_optimizer(*, learning_rate, num_steps):
    return optax.sgd(learning_rate)
"""
TOML = """
name = "{name}"
authors = ["Test Author"]
description = "A test submission."
kind = "{kind}"
license = "MIT"

[search_space]
learning_rate = [0.01, 0.1]
"""


def write_submission(root: Path, name: str, code: str = GOOD_CODE, *, kind: str = "handcrafted",
                     extra: str = "", toml: str | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text((toml or TOML.format(name=name, kind=kind)) + extra)
    (folder / "optimizer.py").write_text(textwrap.dedent(code))
    return folder


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `root` (the store's before/after state).

    The runner's job-claim locks (``.claims/``) are bookkeeping, not records: left out."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.relative_to(root).parts[0] != ".claims"}


# --------------------------------------------------------------------------- format
def test_log_range_is_geometric_with_both_ends():
    pts = parse_search_space(Path("s.toml"), {"learning_rate": {"low": 1e-4, "high": 1e-1, "num": 4}})
    lr = np.array(pts["learning_rate"])
    assert lr[0] == 1e-4 and lr[-1] == 1e-1 and len(lr) == 4
    np.testing.assert_allclose(lr[1:] / lr[:-1], 10.0, rtol=1e-12)


@pytest.mark.parametrize("table, key", [
    ({"lr": {"low": 0.0, "high": 1.0, "num": 3}}, "search_space.lr.low"),
    ({"lr": {"low": 1.0, "high": 0.1, "num": 3}}, "search_space.lr"),
    ({"lr": {"low": 1e-3, "high": 1.0, "num": 1}}, "search_space.lr.num"),
    ({"lr": {"low": 1e-3, "high": 1.0}}, "search_space.lr"),
    ({"lr": []}, "search_space.lr"),
    ({"lr": [0.1, 0.1]}, "search_space.lr"),
    ({"lr": [0.1, float("nan")]}, "search_space.lr"),
    ({"lr": "0.1"}, "search_space.lr"),
    ({"a": [1.0] * 1, "b": list(range(1, 9)), "c": list(range(1, 10))}, "search_space"),
])
def test_malformed_search_spaces_name_their_key(table, key):
    with pytest.raises(SpecError) as e:
        parse_search_space(Path("s.toml"), table)
    assert e.value.key == key


def test_learned_submission_needs_checkpoint_and_card(tmp_path):
    folder = write_submission(tmp_path, "lrn", kind="learned")
    with pytest.raises(SpecError, match="checkpoint"):
        parse_submission(folder)


def test_learned_submission_without_checkpoint_and_card_names_both(tmp_path):
    folder = write_submission(tmp_path, "lrn", kind="learned")
    with pytest.raises(SpecError) as e:
        parse_submission(folder)
    assert [p.key for p in e.value.problems] == ["checkpoint", "meta_training"]


def test_validate_reports_every_missing_key_on_its_own_line(tmp_path):
    toml = "\n".join(ln for ln in TOML.format(name="two_gone", kind="handcrafted").splitlines()
                     if not ln.startswith(("license", "kind")))
    folder = write_submission(tmp_path, "two_gone", toml=toml)
    with pytest.raises(SpecError) as e:
        parse_submission(folder)
    assert [(p.key, p.problem) for p in e.value.problems] == [
        ("kind", "is required but missing"), ("license", "is required but missing")]
    report = validate_submission(folder)
    assert [f.check for f in report.failures] == ["metadata", "metadata"]
    lines = report.lines()
    assert "key 'kind': is required but missing" in lines[0] and "key 'license': is required but missing" in lines[1]
    res = CliRunner().invoke(app, ["validate", str(folder)])
    assert res.exit_code == 2
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2 and "'kind'" in errors[0] and "'license'" in errors[1], res.output


def test_validate_reports_every_invalid_key_and_file(tmp_path):
    toml = "lisence = 1\n" + TOML.format(name="Bad Name", kind="handcrafted").replace(
        "learning_rate = [0.01, 0.1]", "learning_rate = [0.1, 0.1]\nmomentum = \"0.9\"")
    folder = write_submission(tmp_path, "bad_keys", toml=toml)
    (folder / "optimizer.py").unlink()
    report = validate_submission(folder)
    got = [(f.check, f.problem.split(": ")[1] if f.check != "files" else "<file>") for f in report.failures]
    assert got == [("files", "<file>"), ("metadata", "key 'lisence'"), ("metadata", "key 'name'"),
                   ("search_space", "key 'search_space.learning_rate'"), ("search_space", "key 'search_space.momentum'")]
    assert report.failures[0].fix == "copy optimizer.py from submissions/template/"


@pytest.mark.parametrize("make", ["missing", "file"])
def test_validate_a_path_that_is_no_folder_says_to_make_one_not_to_edit_it(tmp_path, make):
    path = tmp_path / "nonexistent-sub"
    if make == "file":
        path.write_text("not a submission")
    report = validate_submission(path)
    assert [f.check for f in report.failures] == ["files"]
    line = report.lines()[0]
    assert "edit submission.toml" not in line and line.count(" -- fix: ") == 1
    assert "copying submissions/template/" in line
    assert ("does not exist" if make == "missing" else "is a file, not a folder") in line
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "edit submission.toml" not in res.output
    assert "copying submissions/template/" in res.output


# --------------------------------------------------------------------------- broken folders
@pytest.fixture(scope="module")
def baseline_store(tmp_path_factory) -> Path:
    """Adam on the smoke suite at 10 steps, 1 seed: the reference every submission needs."""
    from celo_bench.runner import RunConfig, run

    root = tmp_path_factory.mktemp("baselines") / "results"
    summary = run(RunConfig(suite="smoke", optimizers=["adam"], steps=10, seeds=1, results=root))
    assert summary.executed == 6 and summary.failed == 0
    return root


def _tiny_checkpoint(folder: Path, data: bytes | None = None) -> str:
    data = data if data is not None else ckpt.encode({"scale": np.ones((3,), np.float32)})
    (folder / "theta.state").write_bytes(data)
    return hashlib.sha256(data).hexdigest()


LEARNED = """
import optax

def make_optimizer(meta_params, *, learning_rate, num_steps):
    return optax.sgd(learning_rate * meta_params["scale"][0])
"""
CARD = """
[checkpoint]
source = "theta.state"
sha256 = "{sha}"

[meta_training]
tasks = ["nothing"]
compute = "none"
"""


def broken_wrong_hash(root: Path) -> Path:
    folder = write_submission(root, "wrong_hash", LEARNED, kind="learned", extra=CARD.format(sha="0" * 64))
    _tiny_checkpoint(folder)
    return folder


def broken_pickle(root: Path) -> Path:
    folder = write_submission(root, "pickled", LEARNED, kind="learned", extra="")
    sha = _tiny_checkpoint(folder, pickle.dumps({"scale": np.ones(3)}))
    with open(folder / "submission.toml", "a") as f:
        f.write(CARD.format(sha=sha))
    return folder


BROKEN = {
    # name: (code or builder, expected check, distinctive text)
    "syntax": ("def make_optimizer(*, learning_rate, num_steps)\n    return None\n", "syntax", "line 1"),
    "no_factory": ("import optax\n\ndef make_opt(*, learning_rate, num_steps):\n    return optax.sgd(learning_rate)\n",
                   "factory", "make_optimizer"),
    "wrong_type": ("def make_optimizer(*, learning_rate, num_steps):\n    return (lambda p: p, lambda g, s, p=None: (g, s))\n",
                   "return_type", "tuple"),
    "wrong_shape": ("""
        import jax, jax.numpy as jnp, optax

        def make_optimizer(*, learning_rate, num_steps):
            def update(g, s, params=None, **kw):
                return jax.tree.map(lambda x: -learning_rate * jnp.sum(x), g), s
            return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)
        """, "shape", "shape ()"),
    "nan_updates": ("""
        import jax, jax.numpy as jnp, optax

        def make_optimizer(*, learning_rate, num_steps):
            def update(g, s, params=None, **kw):
                return jax.tree.map(lambda x: x / jnp.zeros_like(x) * 0.0, g), s
            return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)
        """, "finite", "NaN"),
    "infinite_loop": ("""
        import optax

        def make_optimizer(*, learning_rate, num_steps):
            while True:
                pass
        """, "timeout", "did not finish"),
    "bad_space": (None, "search_space", "low"),
    "wrong_hash": (broken_wrong_hash, "checkpoint", "sha256"),
    "pickled": (broken_pickle, "checkpoint", "pickle"),
}


def _make_broken(root: Path, name: str) -> Path:
    code, _, _ = BROKEN[name]
    if callable(code):
        return code(root)
    if name == "bad_space":
        toml = TOML.format(name=name, kind="handcrafted").replace(
            "learning_rate = [0.01, 0.1]", "learning_rate = { low = -1.0, high = 0.1, num = 3 }")
        return write_submission(root, name, toml=toml)
    return write_submission(root, name, code)


def test_broken_submissions_fail_with_their_own_message_and_touch_nothing(tmp_path, baseline_store):
    results = tmp_path / "results"
    shutil.copytree(baseline_store, results)
    before = snapshot(results)
    reports = tmp_path / "reports"
    lines = {}
    for name, (_, check, text) in BROKEN.items():
        folder = _make_broken(tmp_path / "subs", name)
        res = CliRunner().invoke(app, ["submit", str(folder), *FAST, "--results", str(results),
                                       "--out", str(reports), "--timeout", "5" if check == "timeout" else "150"])
        assert res.exit_code == 2, (name, res.output)
        errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1, (name, res.output)
        assert errors[0].startswith(f"error: {check}: "), (name, errors[0])
        assert text in errors[0] and " -- fix: " in errors[0], (name, errors[0])
        lines[name] = errors[0]
        assert snapshot(results) == before, name
        assert not reports.exists(), name
        assert not list(folder.rglob("__pycache__")), name
    assert len(set(lines.values())) == len(BROKEN)


def test_validate_reports_json_and_exit_code(tmp_path):
    folder = _make_broken(tmp_path, "bad_space")
    res = CliRunner().invoke(app, ["validate", str(folder), "--format", "json"])
    assert res.exit_code == 2
    report = json.loads(res.stdout)
    assert report["ok"] is False and [f["check"] for f in report["failures"]] == ["search_space"]


def test_learned_submission_validates_and_registers(tmp_path):
    """A tiny learned submission: checkpoint read by key, bound to the factory, buildable."""
    import jax.numpy as jnp

    from celo_bench import optimizers
    from celo_bench.submission.loader import register_submission

    folder = write_submission(tmp_path, "tiny_learned", LEARNED, kind="learned", extra="")
    sha = _tiny_checkpoint(folder)
    with open(folder / "submission.toml", "a") as f:
        f.write(CARD.format(sha=sha))
    report = validate_submission(folder, timeout=120)
    assert report.ok, report.lines()
    assert report.checkpoint_sha256 == sha and {"checkpoint", "vmap", "deterministic"} <= set(report.passed)
    spec = register_submission(report.submission)
    assert spec.kind == "submission" and spec.checkpoint["sha256"] == sha
    opt = optimizers.builder(spec, num_steps=3)({"learning_rate": 0.5})
    params = {"w": jnp.ones((2,))}
    updates, _ = opt.update({"w": jnp.ones((2,))}, opt.init(params), params, loss=jnp.float32(1.0))
    np.testing.assert_allclose(updates["w"], -0.5)  # sgd: -lr * scale * g with scale = 1


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_submit_example_adds_exactly_its_runs_then_nothing(tmp_path, baseline_store):
    results, reports = tmp_path / "results", tmp_path / "reports"
    shutil.copytree(baseline_store, results)
    before = snapshot(results)
    runner = CliRunner()
    args = ["submit", str(EXAMPLE), *FAST, "--results", str(results), "--out", str(reports),
            "--reps", "200", "--format", "json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    sub = parse_submission(EXAMPLE)
    n_points = len(sub.search_space["learning_rate"])
    assert out["executed"] == 2 * n_points and out["skipped"] == 0 and out["failed"] == 0
    assert out["missing_baselines"] == {"sgd": 6} and out["rank"] in (1, 2) and out["of"] == 2

    after = snapshot(results)
    assert {k: v for k, v in after.items() if k in before} == before  # baselines untouched
    new = Store(results).read(curves=False)
    new = new[~new["key"].isin({Path(k).stem for k in before})]
    added = sorted(set(after) - set(before))
    kept = [k for k in added if k.startswith(".submissions/adan_cosine/")]  # its folder, kept for the leaderboard
    assert len(new) == len(added) - len(kept) == 2 * n_points
    assert {Path(k).name for k in kept} == {"submission.toml", "optimizer.py"}
    assert set(new["optimizer"]) == {"adan_cosine"} and set(new["optimizer_kind"]) == {"submission"}
    src = hashlib.sha256((EXAMPLE / "optimizer.py").read_bytes()).hexdigest()
    assert {json.loads(p)["submission_source_sha256"] for p in new["provenance"]} == {src}
    assert sorted(new["learning_rate"].unique()) == sorted(sub.search_space["learning_rate"])

    board = (reports / "leaderboard.md").read_text()
    marked = [ln for ln in board.splitlines() if "◀ new" in ln]
    assert len(marked) == 1 and "adan_cosine" in marked[0] and "| submission · not verified |" in marked[0]
    assert src in board  # provenance in the row's footnote
    page = (reports / "index.html").read_text()  # index.html marks the same row
    rows = [ln for ln in page.splitlines() if "◀ new" in ln]
    assert len(rows) == 2 and all('data-optimizer="adan_cosine"' in ln for ln in rows)  # ranking and full table

    second = runner.invoke(app, args[:-2] + ["--no-report", "--format", "json"])
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert again["executed"] == 0 and again["skipped"] == 2 * n_points
    assert snapshot(results) == after


def test_submit_refuses_without_reference_runs(tmp_path):
    """No Adam runs for this suite version: nothing is trained, the message says what to run."""
    results = tmp_path / "results"
    rec = {"key": "old", "suite": "smoke", "suite_version": "0", "task": "smoke_digits_mlp",
           "optimizer": "adam", "optimizer_kind": "handcrafted", "status": "ok", "num_steps": 10,
           "seed": 0, "hparams": "{}", "hparam_id": "adam[]"}
    Store(results).write(rec)
    before = snapshot(results)
    res = CliRunner().invoke(app, ["submit", str(EXAMPLE), *FAST, "--results", str(results), "--no-report"])
    assert res.exit_code != 0
    message = str(res.exception)
    assert "version 0 only" in message and "--run-baselines" in message
    assert snapshot(results) == before


@pytest.mark.slow
def test_learned_example_validates_with_published_celo(monkeypatch):
    # the package's weights folder holds the published celo/theta.state (what a user has)
    shipped = Path(weights.__file__).parent
    monkeypatch.setenv("CELO_BENCH_CHECKPOINTS", str(shipped))
    report = validate_submission(REPO / "submissions" / "examples" / "celo_scaled", timeout=170)
    assert report.ok, report.lines()
    assert report.checkpoint_sha256 == hashlib.sha256((shipped / "celo" / "theta.state").read_bytes()).hexdigest()


# --------------------------------------------------------------------------- one path with `run`
def _spy_runner(monkeypatch) -> list:
    """Record every RunConfig that `submit` hands to the runner (and run it for real)."""
    from celo_bench.submission import pipeline

    calls, real = [], pipeline.run

    def spy(config, **kwargs):
        calls.append(config)
        return real(config, **kwargs)

    monkeypatch.setattr(pipeline, "run", spy)
    return calls


@pytest.mark.slow
def test_submit_with_baselines_is_one_runner_call_and_stores_nothing_unavailable(tmp_path, baseline_store,
                                                                                  monkeypatch):
    """--run-baselines: the suite's baselines and the submission go through one `runner.run`;
    a learned baseline whose checkpoint cannot be found stores nothing and the result says so."""
    from dataclasses import replace

    from celo_bench.submission import pipeline
    from celo_bench.suite import load_registry

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = load_registry()
    gone = replace(base.optimizer("celo"), name="celo_unreachable",
                   checkpoint={"source": "hf://celo-bench-tests/does-not-exist", "sha256": "0" * 64})
    reg = base.with_optimizer(gone)
    smoke = replace(reg.suite("smoke"), optimizers=(*reg.suite("smoke").optimizers, "celo_unreachable"))
    reg = replace(reg, suites={**reg.suites, "smoke": smoke})
    monkeypatch.setattr(pipeline, "load_registry", lambda: reg)
    calls = _spy_runner(monkeypatch)
    results = tmp_path / "results"
    shutil.copytree(baseline_store, results)

    res = pipeline.submit(EXAMPLE, suite="smoke", results=results, out=None, steps=10, seeds=1,
                          run_baselines=True, reps=200)
    n = 2 * len(parse_submission(EXAMPLE).search_space["learning_rate"])
    assert len(calls) == 1
    assert list(calls[0].optimizers) == [*smoke.optimizers, "adan_cosine"]
    assert calls[0].registry.optimizer("adan_cosine").kind == "submission"
    assert res.summary.executed == n and res.baselines_run == 6  # sgd's runs, adam's were stored
    assert "celo_unreachable" in res.summary.unavailable
    assert any(note.startswith("'celo_unreachable' not run (nothing stored)") for note in res.notes)
    stored = Store(results).read(curves=False)
    assert "celo_unreachable" not in set(stored["optimizer"])
    assert (stored["optimizer"] == "sgd").sum() == 6 and set(stored["status"]) == {"ok"}
    sub_prov = [json.loads(p) for p in stored.loc[stored["optimizer"] == "adan_cosine", "provenance"]]
    assert len(sub_prov) == n and all("submission_source_sha256" in p for p in sub_prov)
    base_prov = [json.loads(p) for p in stored.loc[stored["optimizer"] == "sgd", "provenance"]]
    assert not any("submission" in p for p in base_prov)  # submission provenance stays on its runs


def test_submit_rejects_an_unknown_executor_before_training(tmp_path, baseline_store):
    """The runner's up-front checks apply to submit: a bad --executor is one line, nothing stored."""
    results = tmp_path / "results"
    shutil.copytree(baseline_store, results)
    before = snapshot(results)
    res = CliRunner().invoke(app, ["submit", str(EXAMPLE), *FAST, "--results", str(results), "--no-report",
                                   "--executor", "slurm"])
    assert res.exit_code != 0
    assert "unknown executor 'slurm'" in str(res.exception)
    assert snapshot(results) == before


def test_submit_checks_its_report_folder_before_training(tmp_path, baseline_store):
    """An unwritable --out is one line before any training, like `run`'s; nothing is stored."""
    results = tmp_path / "results"
    shutil.copytree(baseline_store, results)
    before = snapshot(results)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = CliRunner().invoke(app, ["submit", str(EXAMPLE), *FAST, "--results", str(results),
                                   "--out", str(blocker / "rep")])
    assert res.exit_code != 0 and isinstance(res.exception, CeloBenchError), res.output
    assert f"report folder {blocker / 'rep'} cannot be written ({blocker} is a file)" in str(res.exception)
    assert snapshot(results) == before and blocker.read_text() == "not a folder"


@pytest.mark.slow
@pytest.mark.ray
def test_submit_runs_on_ray_workers(tmp_path, baseline_store):
    """--executor ray: the workers register the submission's factory themselves (its module
    travels by value), so its runs train there and carry the Ray provenance."""
    pytest.importorskip("ray")
    results = tmp_path / "results"
    shutil.copytree(baseline_store, results)
    res = CliRunner().invoke(app, ["submit", str(EXAMPLE), *FAST, "--results", str(results), "--no-report",
                                   "--executor", "ray", "--reps", "200", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    n = 2 * len(parse_submission(EXAMPLE).search_space["learning_rate"])
    assert out["executed"] == n and out["failed"] == 0, out
    stored = Store(results).read(optimizers=["adan_cosine"], curves=False)
    prov = [json.loads(p) for p in stored["provenance"]]
    assert len(prov) == n and {p["executor"] for p in prov} == {"ray"}
    assert all("submission_source_sha256" in p for p in prov)


def test_a_refused_submission_creates_no_folder(tmp_path):
    """A submission that fails validation leaves no results or report folder behind."""
    sub = tmp_path / "broken"
    shutil.copytree(EXAMPLE, sub)
    (sub / "optimizer.py").write_text("def build(:\n")
    results = tmp_path / "new" / "results"
    res = CliRunner().invoke(app, ["submit", str(sub), "--suite", "smoke", "--results", str(results)])
    assert res.exit_code != 0 and "optimizer.py" in res.output
    assert not (tmp_path / "new").exists()


def test_an_unwritable_results_folder_is_named_before_the_report_folder(tmp_path, monkeypatch):
    """submit checks --results first: the one line names the folder the user must change."""
    monkeypatch.setattr("celo_bench.paths.unwritable_reason", lambda folder: f"no permission to write in {folder}")
    res = CliRunner().invoke(app, ["submit", str(EXAMPLE), "--suite", "smoke", "--results", str(tmp_path / "r")])
    assert res.exit_code != 0
    assert str(res.exception).startswith(f"results folder {tmp_path / 'r'} cannot be written")
