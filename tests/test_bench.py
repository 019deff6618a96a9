"""The bench/ package: results files, the grid benchmark's arithmetic and its command end to end."""

from __future__ import annotations

import json
import math
import os

import pandas as pd
import pytest
from typer.testing import CliRunner

from celo_bench import paths
from celo_bench.bench import results
from celo_bench.bench.grid import GridBench, job_timings, share_by_kind
from celo_bench.cli import app
from celo_bench.errors import CeloBenchError
from celo_bench.store import Store


def test_results_write_read_round_trip_and_replace(tmp_path):
    path = results.write(tmp_path / "b", "engine", settings={"steps": 20}, machine={"jax": "x"},
                         result={"ratio": 3.0})
    assert path == tmp_path / "b" / "engine.json"
    got = results.read(tmp_path / "b", "engine")
    assert got["benchmark"] == "engine" and got["settings"] == {"steps": 20}
    assert got["result"] == {"ratio": 3.0} and "rows" not in got and got["created"]
    results.write(tmp_path / "b", "engine", settings={}, machine={}, result={"ratio": 4.0})
    assert results.read(tmp_path / "b", "engine")["result"]["ratio"] == 4.0
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["engine.json"]  # no temporary left
    assert results.read(tmp_path / "b", "overhead") is None


def test_results_unwritable_folder_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CeloBenchError, match=r"cannot write benchmark results to .*a-file.*--out"):
        results.write(blocker / "sub", "grid-smoke", settings={}, machine={}, result={})


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_results_file_gets_the_mode_of_a_normal_file(tmp_path, mask, mode):
    old = os.umask(mask)
    paths.new_file_mode.cache_clear()
    try:
        file = results.write(tmp_path, "overhead", settings={}, machine={}, rows=[])
    finally:
        os.umask(old)
        paths.new_file_mode.cache_clear()
    assert file.stat().st_mode & 0o777 == mode  # what open() gives, not mkstemp's 0o600
    if mask == 0o022:  # group and others can read a shared folder of results
        assert file.stat().st_mode & 0o044 == 0o044


def test_results_write_leaves_no_temporary_file_when_the_rename_fails(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(results.os, "replace", refuse)
    with pytest.raises(CeloBenchError, match="Permission denied"):
        results.write(tmp_path, "engine", settings={}, machine={}, result={})
    assert list(tmp_path.iterdir()) == []


def test_job_timings_count_each_job_once():
    # three runs of job A and two of job B carry their job's timings; a failed job has none
    records = pd.DataFrame({
        "task": ["t1", "t1", "t1", "t2", "t2", "t3"],
        "optimizer": ["adam"] * 3 + ["sgd"] * 2 + ["adam"],
        "compile_seconds": [2.0, 2.0, 2.0, 4.0, 4.0, None],
        "run_seconds": [1.0, 1.0, 1.0, 1.0, 1.0, None],
    })
    per_job = job_timings(records)
    assert len(per_job) == 2
    assert per_job["compile_seconds"].sum() == 6.0 and per_job["run_seconds"].sum() == 2.0
    bench = GridBench(suite="s", jobs=3, runs=6, wall_seconds=3.0, compile_seconds=6.0, run_seconds=2.0)
    assert bench.compile_share == pytest.approx(0.75)
    assert bench.runs_per_second == pytest.approx(2.0)
    assert math.isnan(GridBench("s", 0, 0, 0.0, 0.0, 0.0).compile_share)
    assert job_timings(records.iloc[:0]).empty


def test_share_by_kind_splits_the_sums_per_optimizer_kind():
    records = pd.DataFrame({
        "task": ["t1", "t1", "t1", "t2", "t2", "t1"],
        "optimizer": ["adam", "adam", "celo", "adam", "celo", "lion"],
        "optimizer_kind": ["handcrafted", "handcrafted", "learned", "handcrafted", "learned", "extra"],
        "compile_seconds": [1.0, 1.0, 9.0, 3.0, 7.0, 2.0],
        "run_seconds": [3.0, 3.0, 1.0, 1.0, 1.0, 2.0],
    })
    kinds = share_by_kind(job_timings(records))
    assert list(kinds) == ["extra", "handcrafted", "learned"]
    assert kinds["handcrafted"] == {"jobs": 2, "compile_seconds": 4.0, "run_seconds": 4.0, "compile_share": 0.5}
    assert kinds["learned"]["jobs"] == 2 and kinds["learned"]["compile_share"] == pytest.approx(16 / 18, abs=1e-4)
    assert kinds["extra"]["compile_share"] == 0.5
    # the kinds add up to the grid's totals
    per_job = job_timings(records)
    assert sum(k["compile_seconds"] for k in kinds.values()) == per_job["compile_seconds"].sum()
    assert share_by_kind(job_timings(records.drop(columns="optimizer_kind"))) == {}


FAST = ["--suite", "smoke", "--tasks", "smoke_digits_mlp", "--optimizers", "sgd", "--steps", "10",
        "--seeds", "1", "--cache", "warm"]


def test_bench_grid_runs_into_a_fresh_store_and_writes_its_result(tmp_path):
    store = tmp_path / "store"
    out = CliRunner().invoke(app, ["bench", "grid", *FAST, "--results", str(store),
                                   "--out", str(tmp_path / "bench"), "--format", "json"])
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    stored = Store(store).read(curves=False)
    assert res["jobs"] == 1 and res["runs"] == len(stored) > 0 and res["suite"] == "smoke"
    assert set(stored["optimizer"]) == {"sgd"} and set(stored["num_steps"]) == {10}
    share = stored["compile_seconds"].iloc[0] / (stored["compile_seconds"].iloc[0] + stored["run_seconds"].iloc[0])
    assert res["compile_share"] == pytest.approx(share, abs=1e-3)
    assert res["runs_per_second"] == pytest.approx(res["runs"] / res["wall_seconds"], rel=1e-2)
    assert list(res["by_kind"]) == ["handcrafted"] and res["by_kind"]["handcrafted"]["jobs"] == 1
    assert res["by_kind"]["handcrafted"]["compile_share"] == pytest.approx(share, abs=1e-3)
    saved = results.read(tmp_path / "bench", "grid-smoke")
    assert saved["result"] == res and saved["settings"]["optimizers"] == ["sgd"]

    again = CliRunner().invoke(app, ["bench", "grid", *FAST, "--results", str(store),
                                     "--out", str(tmp_path / "bench")])
    assert again.exit_code != 0 and "already holds" in str(again.exception)


def test_bench_grid_default_store_is_temporary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(app, ["bench", "grid", *FAST, "--out", "b"])
    assert out.exit_code == 0, out.output
    assert "compile share" in out.stdout and "runs/s" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no results/ left behind
    assert results.read(tmp_path / "b", "grid-smoke")["result"]["jobs"] == 1


def test_bench_grid_prints_the_compile_share_of_each_optimizer_kind(tmp_path):
    args = [a if a != "sgd" else "sgd,lion" for a in FAST]
    out = CliRunner().invoke(app, ["bench", "grid", *args, "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    lines = {ln.split()[0]: ln for ln in out.stdout.splitlines() if "% compile (1 jobs)" in ln}
    assert set(lines) == {"hand-crafted", "extra"}
    saved = results.read(tmp_path, "grid-smoke")["result"]
    assert saved["jobs"] == 2 and sorted(saved["by_kind"]) == ["extra", "handcrafted"]


def test_bench_grid_rejects_a_bad_cache_mode(tmp_path):
    out = CliRunner().invoke(app, ["bench", "grid", *FAST[:-2], "--cache", "tepid", "--out", str(tmp_path)])
    assert out.exit_code != 0 and "--cache must be one of cold, warm" in str(out.exception)


@pytest.mark.slow
def test_bench_engine_writes_engine_json(tmp_path):
    out = CliRunner().invoke(app, ["bench", "engine", "--steps", "20", "--repeats", "1",
                                   "--out", str(tmp_path), "--format", "json"])
    assert out.exit_code == 0, out.output
    saved = results.read(tmp_path, "engine")
    assert saved["result"] == json.loads(out.stdout) and saved["settings"] == {"steps": 20, "repeats": 1}
    assert saved["result"]["max_abs_diff"] < 1e-4
