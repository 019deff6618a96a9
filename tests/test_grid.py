"""Store, resume and the run/status CLI on the smoke grid."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from celo_bench.cli import app
from celo_bench.execute import EngineSettings
from celo_bench.runner import RunConfig, run, status
from celo_bench.store import Store

FAST = {"suite": "smoke", "steps": 20, "seeds": 1}


class Killed(Exception):
    pass


def _frame(root) -> pd.DataFrame:
    return Store(root).read().set_index("key").sort_index()


def test_interrupted_grid_resumes_to_the_same_records(tmp_path):
    done_jobs = []

    def kill_after_two(job, records):
        done_jobs.append(job.name)
        if len(done_jobs) == 2:
            raise Killed

    with pytest.raises(Killed):
        run(RunConfig(**FAST, results=tmp_path / "a"), on_job=kill_after_two)
    st = status(RunConfig(**FAST, results=tmp_path / "a"))
    assert st["done"] == 6 and st["missing"] == 6  # two jobs of 3 runs each survived the kill

    resumed = run(RunConfig(**FAST, results=tmp_path / "a"))
    assert resumed.executed == 6 and resumed.skipped == 6

    full = run(RunConfig(**FAST, results=tmp_path / "b"))
    assert full.executed == 12 and full.skipped == 0
    a, b = _frame(tmp_path / "a"), _frame(tmp_path / "b")
    assert list(a.index) == list(b.index)
    for key in a.index:
        np.testing.assert_allclose(a.loc[key, "eval_train_loss"], b.loc[key, "eval_train_loss"], rtol=1e-6)
        assert a.loc[key, "status"] == b.loc[key, "status"]
    assert not list((tmp_path / "a").rglob(".tmp-*"))  # no half-written record


def test_records_carry_config_status_timings_provenance(tmp_path):
    run(RunConfig(**FAST, results=tmp_path, optimizers=["sgd"], tasks=["smoke_digits_mlp"]))
    df = Store(tmp_path).read()
    assert len(df) == 3 and set(df["status"]) <= {"ok", "diverged"}
    row = df.iloc[0]
    assert len(row["train_loss"]) == 21 and list(row["eval_steps"]) == [0, 10, 20]
    assert row["compile_seconds"] > 0 and row["run_seconds"] > 0 and row["job_runs"] == 3
    assert row["strategy"] in {f"{s}+{r}" for s in ("scan", "loop", "split") for r in ("vmap", "sequential")}
    prov = json.loads(row["provenance"])
    assert {"jax", "device", "celo_bench"} <= set(prov)
    cfg = json.loads(row["config"])
    assert cfg["task"]["steps"] == 20 and cfg["optimizer"]["name"] == "sgd"


def test_diverged_runs_are_recorded_with_their_curve_up_to_divergence(tmp_path):
    grids = {"sgd": {"learning_rate": [0.1, 1e30]}}
    s = run(RunConfig(**FAST, results=tmp_path, optimizers=["sgd"], tasks=["smoke_digits_mlp"], grids=grids))
    assert s.executed == 2 and s.diverged == 1
    df = Store(tmp_path).read().set_index("learning_rate")
    bad, good = df.loc[1e30], df.loc[0.1]
    assert bad["status"] == "diverged" and good["status"] == "ok"
    div = int(bad["diverged_step"])
    assert np.isfinite(bad["train_loss"][:div]).all() and np.isnan(bad["train_loss"][div + 1 :]).all()
    assert "non-finite" in bad["message"]


def test_failed_job_is_recorded_not_raised(tmp_path, monkeypatch):
    import celo_bench.optimizers as opts

    def broken(spec, **kw):
        raise RuntimeError("factory exploded")

    monkeypatch.setattr(opts, "builder", broken)
    s = run(RunConfig(**FAST, results=tmp_path, optimizers=["sgd"], tasks=["smoke_digits_mlp"]))
    assert s.failed == 3 and s.executed == 3
    df = Store(tmp_path).read()
    assert set(df["status"]) == {"failed"} and df["message"].str.contains("factory exploded").all()
    # failed runs are kept (not silently re-run) unless asked
    assert run(RunConfig(**FAST, results=tmp_path, optimizers=["sgd"], tasks=["smoke_digits_mlp"])).executed == 0


def test_cli_run_twice_then_status(tmp_path):
    runner = CliRunner()
    args = ["run", "--suite", "smoke", "--results", str(tmp_path), "--format", "json"]
    first = runner.invoke(app, [*args, "--out", str(tmp_path / "reports")])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["executed"] == 24 and summary["skipped"] == 0
    assert {"executed", "skipped", "diverged", "failed"} <= set(summary)
    # the run ends with the report of the real grid
    reports = tmp_path / "reports"
    assert summary["report"] == str(reports)
    for name in ("leaderboard.md", "index.html", "README.md", "figures/main_iqm.png", "figures/main_iqm.pdf"):
        assert (reports / name).stat().st_size > 0, name
    board = (reports / "leaderboard.md").read_text()
    assert "| adam |" in board.replace("**", "") and "| sgd |" in board
    second = json.loads(runner.invoke(app, [*args, "--no-report"]).stdout)
    assert second["executed"] == 0 and second["skipped"] == 24
    status_args = ["status", "--suite", "smoke", "--results", str(tmp_path), "--format", "json"]
    st = json.loads(runner.invoke(app, status_args).stdout)
    assert st["missing"] == 0 and st["total"] == 24 == st["done"]
    assert {"failed", "diverged"} <= set(st)


def test_cli_list_tasks_json_fields():
    out = CliRunner().invoke(app, ["list", "tasks", "--suite", "smoke", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert {r["name"] for r in rows} == {"smoke_digits_mlp", "smoke_digits_ae"}
    mlp = next(r for r in rows if r["name"] == "smoke_digits_mlp")
    assert mlp["n_params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert {"name", "family", "dataset", "batch_size", "steps", "n_params"} <= set(mlp)


def test_cli_unknown_suite_is_one_clear_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "from celo_bench.cli import main; main()", "status", "--suite", "smok",
         "--results", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "unknown suite 'smok'" in proc.stderr and "Did you mean 'smoke'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"engine": EngineSettings(execution={"steps": "fast"})}, "--steps-strategy must be one of scan, loop"),
        ({"engine": EngineSettings(execution={"runs": "pmap"})}, "--runs-strategy must be one of vmap, sequential"),
        ({"engine": EngineSettings(execution={"unroll": 2})}, "unknown execution setting 'unroll'"),
        ({"executor": "slurm"}, "unknown executor 'slurm'"),
    ],
)
def test_bad_run_settings_fail_before_anything_is_written(tmp_path, config, words):
    from celo_bench.errors import CeloBenchError

    with pytest.raises(CeloBenchError, match=words):
        run(RunConfig(**FAST, results=tmp_path / "r", **config))
    assert not (tmp_path / "r").exists()
