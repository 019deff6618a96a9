"""`celo-bench bench overhead`: one JSON object per optimizer, Adam's ratio is 1, results in <out>/overhead.json."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from celo_bench.bench import results
from celo_bench.bench.overhead import RUNTIME_TASK, runtime_task
from celo_bench.cli import app


def test_runtime_task_is_the_papers_cifar100_mlp_on_generated_batches():
    model, batches = runtime_task(unroll=2)
    assert batches["image"].shape == (2, 128, 32, 32, 3) and batches["image"].dtype == np.uint8
    assert batches["label"].shape == (2, 128) and int(batches["label"].max()) < 100
    params, state = model.init(jax.random.PRNGKey(0))
    sizes = [x.size for x in jax.tree_util.tree_leaves(params)]
    # 3072 -> 128 -> 128 -> 128 -> 100, weights and biases
    assert sum(sizes) == 3072 * 128 + 128 + 2 * (128 * 128 + 128) + 128 * 100 + 100
    loss, _ = model.loss(params, state, jax.random.PRNGKey(1), {k: v[0] for k, v in batches.items()})
    assert np.isfinite(float(loss)) and abs(float(loss) - np.log(100)) < 1.0  # near chance at init
    assert RUNTIME_TASK.batch_size == 128


@pytest.mark.slow
def test_overhead_json_lists_optimizers_with_ratios(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(
        app, ["bench", "overhead", "-o", "sgd,celo_adam", "--repeats", "1", "--unroll", "2",
              "--out", str(tmp_path), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    by_name = {r["optimizer"]: r for r in rows}
    assert list(by_name) == ["adam", "sgd", "celo_adam"]  # Adam is always timed, first
    for r in rows:
        assert set(r) >= {"optimizer", "ms_per_step", "ratio_vs_adam"}
        assert r["ms_per_step"] > 0
    assert by_name["adam"]["ratio_vs_adam"] == pytest.approx(1.0)
    assert by_name["celo_adam"]["meta_params"] in ("checkpoint", "random init")

    saved = results.read(tmp_path, "overhead")  # what the report's runtime table reads
    assert saved["benchmark"] == "overhead" and saved["settings"]["unroll"] == 2
    assert saved["rows"] == rows


def test_overhead_file_keeps_only_timed_rows(monkeypatch, tmp_path):
    """An optimizer that cannot be built is reported on stdout but kept out of overhead.json."""
    from celo_bench.bench import overhead

    def broken(spec, num_steps):
        if spec.name == "sgd":
            raise RuntimeError("cannot build")
        return real(spec, num_steps)

    real = overhead.build_for_timing
    monkeypatch.setattr(overhead, "build_for_timing", broken)
    result = CliRunner().invoke(app, ["bench", "overhead", "-o", "sgd", "--repeats", "1", "--unroll", "1",
                                      "--out", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["optimizer"]: r for r in json.loads(result.stdout)}
    assert rows["sgd"]["ms_per_step"] is None and "cannot build" in rows["sgd"]["error"]
    assert [r["optimizer"] for r in results.read(tmp_path, "overhead")["rows"]] == ["adam"]
