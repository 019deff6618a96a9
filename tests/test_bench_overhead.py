"""`celo-bench bench overhead`: one JSON object per optimizer, Adam's ratio is 1."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from celo_bench.cli import app


@pytest.mark.slow
def test_overhead_json_lists_optimizers_with_ratios(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(
        app, ["bench", "overhead", "-o", "sgd,celo_adam", "--repeats", "1", "--unroll", "2", "--format", "json"]
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
