"""``bench step-time``: per-step time of one run, written with its device kind."""

from __future__ import annotations

import json

import jax
import pytest
from typer.testing import CliRunner

from celo_bench import timings
from celo_bench.bench.step_time import device_kind, measure, write
from celo_bench.errors import CeloBenchError


def test_probe_writes_timings_with_the_device_kind(tmp_path):
    from celo_bench.cli import app

    res = CliRunner().invoke(app, ["bench", "step-time", "--suite", "smoke", "-t", "smoke_digits_mlp",
                                   "-o", "sgd,adam", "--repeats", "2", "--unroll", "2", "--out", str(tmp_path),
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    kind = jax.devices()[0].device_kind
    path = timings.path(tmp_path, kind)
    assert path.name == f"step_time-{timings.slug(kind)}.json" and path.is_file()
    doc = json.loads(path.read_text())
    assert doc["settings"]["device_kind"] == kind and doc["settings"]["platform"] == jax.devices()[0].platform
    assert doc["machine"]["device_kind"] == kind
    rows = {(r["task"], r["optimizer"]): r for r in doc["rows"]}
    assert set(rows) == {("smoke_digits_mlp", "adam"), ("smoke_digits_mlp", "sgd")}
    assert all(0 < r["seconds_per_step"] < 5 and r["samples"] == 2 for r in rows.values())
    assert json.loads(res.stdout)["device_kind"] == kind
    got = timings.read_step_times(tmp_path, kind)
    assert got == {k: r["seconds_per_step"] for k, r in rows.items()}
    assert timings.read_step_times(tmp_path, "another kind") == {}  # kinds are never combined


def test_rows_of_other_pairs_are_kept(tmp_path):
    kind, _ = device_kind()
    old = {"settings": {"device_kind": kind}, "rows": [
        {"task": "other_task", "optimizer": "adam", "seconds_per_step": 0.5},
        {"task": "smoke_digits_ae", "optimizer": "adam", "seconds_per_step": 9.0}]}
    timings.path(tmp_path, kind).write_text(json.dumps(old))
    rows = measure("smoke", tasks=["smoke_digits_ae"], optimizers_=["adam"], repeats=1, unroll=1)
    assert rows[0].seconds_per_step is not None and rows[0].error == ""
    write(rows, tmp_path, suite="smoke")
    got = timings.read_step_times(tmp_path, kind)
    assert got[("other_task", "adam")] == 0.5  # kept
    assert got[("smoke_digits_ae", "adam")] == rows[0].seconds_per_step  # replaced by the new measurement


def test_a_task_outside_the_suite_is_a_clear_error():
    with pytest.raises(CeloBenchError, match="task quick_fmnist_conv not in suite 'smoke'"):
        measure("smoke", tasks=["quick_fmnist_conv"])


def test_scoring_and_the_probe_share_the_default_folder():
    from celo_bench.bench.results import DEFAULT_OUT

    assert timings.DEFAULT_OUT == DEFAULT_OUT
