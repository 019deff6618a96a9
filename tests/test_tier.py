"""The default tier's regime check: each task's tuned-Adam loss fraction against its family's band.

`celo-bench bench tier` must flag a task that memorises its data (the fault of quick v1: its
8x8-digit MLPs reached a loss of 0.0000 at the paper's horizon), so one test builds such a task
and trains it for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from celo_bench.regime import PAPER_ADAM_LOSS, family_bands
from celo_bench.suite import load_registry

ROOT = Path(__file__).resolve().parent.parent


def test_bands_are_half_the_smallest_and_twice_the_largest_paper_fraction():
    bands = family_bands()
    assert set(bands) == {"image_mlp", "conv", "vit", "autoencoder", "transformer_lm", "rnn_lm", "lopt"}
    lo, hi = bands["autoencoder"]  # MNIST AE 0.011133/0.231205 = 0.048; CIFAR-10 AE 0.3021
    assert lo == pytest.approx(0.0481505 / 2, rel=1e-4) and hi == pytest.approx(2 * 0.302081, rel=1e-4)
    lo, hi = bands["image_mlp"]  # Fashion-MNIST MLP 0.1303 ... CIFAR-10 tanh MLP 0.6392
    assert lo == pytest.approx(0.130269 / 2, rel=1e-4) and hi == pytest.approx(2 * 0.639233, rel=1e-4)


def test_the_table_names_the_paper_tasks_with_their_spec_families():
    reg = load_registry()
    paper = reg.suite("paper")
    assert set(PAPER_ADAM_LOSS) == set(paper.tasks)
    for task, (family, _, _) in PAPER_ADAM_LOSS.items():
        assert reg.task(task).family == family, task


def test_quick_tier_tasks_have_a_band_real_offline_data_and_say_why_they_are_short():
    reg = load_registry()
    quick = reg.suite("quick")
    assert quick.version == "3"
    tasks = [reg.task(t) for t in quick.tasks]
    # one task per family of the paper, but learned-optimizer training (its own suite, quick_lopt)
    assert {t.family for t in tasks} == set(family_bands()) - {"lopt"}
    assert [reg.task(t).family for t in reg.suite("quick_lopt").tasks] == ["lopt"]
    for t in tasks:
        assert t.dataset in {"fashion_mnist_14", "pydoc_text", "digits"}, t.name
        if t.steps < 2000:
            assert "(paper 2,000)" in t.horizon_reason and "10 minutes" in t.horizon_reason, t.name
        else:
            assert not t.horizon_reason
    images = [t for t in tasks if t.dataset == "fashion_mnist_14"]
    assert len(images) >= 4  # image MLP, convnet, ViT, autoencoder on the shipped real data


MEMO = """name = "{name}"
family = "image_mlp"
dataset = "digits"
batch_size = 64
steps = {steps}
eval_every = 10

[model]
kind = "mlp"
hidden = [256]
activation = "relu"
"""


@pytest.mark.slow
def test_bench_tier_flags_a_task_that_memorises_its_data(tmp_path):
    """A wide MLP trained long on the 1,437 training digits drives tuned Adam's loss to ~0:
    below the image-MLP band, flagged; the same task stopped early is in the band."""
    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "baselines", specs / "baselines")
    (specs / "tasks" / "probe").mkdir(parents=True)
    (specs / "tasks" / "probe" / "memorises.toml").write_text(MEMO.format(name="memorises", steps=1500))
    (specs / "tasks" / "probe" / "early.toml").write_text(MEMO.format(name="early", steps=20))
    (specs / "tasks" / "suites").mkdir()
    (specs / "tasks" / "suites" / "probe.toml").write_text(
        'name = "probe"\nversion = "1"\ndescription = "regime probe"\ntasks = ["memorises", "early"]\n'
        'optimizers = ["adam"]\nseeds = 1\n[grids.adam]\nlearning_rate = [3e-3]\n')
    env = {**os.environ, "CELO_BENCH_SPECS": str(specs), "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}
    cli = [sys.executable, "-m", "celo_bench.cli"]
    results = tmp_path / "results"
    run = subprocess.run([*cli, "run", "--suite", "probe", "--results", str(results), "--no-report"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    tier = subprocess.run([*cli, "bench", "tier", "--suite", "probe", "--results", str(results),
                           "--out", str(tmp_path / "bench"), "--format", "json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert tier.returncode == 1, tier.stderr  # a task out of its band
    rows = {r["task"]: r for r in json.loads(tier.stdout)}
    assert set(rows["memorises"]) >= {"task", "fraction", "band", "in_band", "steps", "zero_speedup_share"}
    assert rows["memorises"]["steps"] == 1500 and rows["memorises"]["band"] == list(family_bands()["image_mlp"])
    assert rows["memorises"]["fraction"] < family_bands()["image_mlp"][0] and not rows["memorises"]["in_band"]
    assert rows["early"]["in_band"] and rows["early"]["fraction"] > 0.3
    assert json.loads((tmp_path / "bench" / "tier-probe.json").read_text())["rows"] == json.loads(tier.stdout)
    text = subprocess.run([*cli, "bench", "tier", "--suite", "probe", "--results", str(results),
                           "--out", str(tmp_path / "bench")], env={**env, "COLUMNS": "80"}, capture_output=True,
                          text=True, timeout=300)
    assert "memorises" in text.stdout and "NO" in text.stdout
    # redirected at 80 columns: every cell whole (the quick tier's longest names fit too)
    assert "…" not in text.stdout and all(len(line) <= 80 for line in text.stdout.splitlines()[1:])
