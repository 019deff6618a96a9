"""scripts/device_check.py in its tiny CPU mode: the GPU check's code path, on two small tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "device_check.py"


@pytest.mark.slow
def test_device_check_tiny_mode_on_cpu(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    env.pop("OUT", None)
    res = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(tmp_path), "--budget-s", "3600"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((tmp_path / "device_check.json").read_text())
    assert summary["tiny"] is True and summary["platform"] == "cpu" and summary["steps"] == 10
    rows = summary["rows"]
    assert not [r for r in rows if "error" in r]
    tasks = {"ImageMLP_FashionMnist_Relu128x128", "ImageMLPAE_Mnist_128x32x128_bs128"}
    assert {(r["task"], r["optimizer"]) for r in rows} == {(t, o) for t in tasks for o in ("adam", "celo")}
    for r in rows:
        assert r["runs"] == (2 if r["optimizer"] == "adam" else 1)  # 2-point sweep x 1 seed; 1 seed
        assert r["num_steps"] == 10 and r["compile_s"] > 0 and r["run_s"] > 0
        assert r["steps_per_s_per_run"] > 0 and r["runs_per_program"] >= 1
        assert r["grid_task_hours"] > 0  # the task's share of the full 345-run grid
    assert summary["projected_tasks"] == sorted(tasks)
    assert summary["projected_device_hours"] == pytest.approx(
        sum({r["task"]: r["grid_task_hours"] for r in rows}.values()))
    table = (tmp_path / "device_check.md").read_text()
    assert "| ImageMLP_FashionMnist_Relu128x128 | adam | 2 |" in table
    for t in tasks:
        assert t in res.stdout


def test_device_check_orders_tasks_round_robin_by_family():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import device_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    family = {"a1": "mlp", "a2": "mlp", "b1": "conv", "c1": "vit", "b2": "conv"}
    assert device_check._order(["a1", "a2", "b1", "c1", "b2"], family) == ["a1", "b1", "c1", "a2", "b2"]
    args = device_check.parse_args(["--tiny"])
    assert args.tiny and args.budget_s == 420.0
