"""Weights meta-trained here are better than where they started (issue 10's acceptance).

The cpu-diet Celo trains quick tasks to a lower loss than the random initialisation its
meta-training started from, and beats tuned Adam on the 8x8 Fashion-MNIST meta-training
task at T=2000. The weights ship as package data (``celo_bench/weights/celo_cpu_diet``,
beside the card whose command remakes them), so these tests run everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from celo_bench.assembly import build_task
from celo_bench.engine import Strategy, run_job
from celo_bench.optimizers import builder
from celo_bench.suite import load_registry

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _final_losses(task_name: str, opt_name: str, seeds, *, checkpoint=None, lrs=None) -> np.ndarray:
    """Last eval train loss, (grid points, seeds), of one job (every point and seed vmapped)."""
    reg = load_registry()
    task = build_task(reg.task(task_name))
    steps, seeds = task.spec.steps, np.asarray(seeds)
    points = [None] if lrs is None else list(lrs)
    hparams = {} if lrs is None else {"learning_rate": np.repeat(np.asarray(lrs, np.float32), len(seeds))}
    make = builder(reg.optimizer(opt_name), num_steps=steps, checkpoint=checkpoint)
    res = run_job(task, make, hparams, np.tile(seeds, len(points)), num_steps=steps,
                  strategy=Strategy("scan", "vmap"))
    return res.eval_loss["train"][:, -1].reshape(len(points), len(seeds))


@pytest.fixture(scope="module")
def random_init(tmp_path_factory) -> Path:
    """The meta-parameters `meta-train celo --preset cpu` starts from (phase 1, seed 0)."""
    from celo_bench.metatrain.artifacts import jax_to_numpy
    from celo_bench.metatrain.recipe import plan
    from celo_bench.metatrain.trainer import MetaTrainer
    from celo_bench.optimizers import checkpoint as ck

    out = tmp_path_factory.mktemp("init")
    cfg, _ = plan("celo", preset="cpu", out=out)[0]
    return ck.write(out / "theta.state", jax_to_numpy(MetaTrainer(cfg, out).theta0))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["quick_fmnist_mlp", "quick_fmnist_ae"])
def test_cpu_celo_beats_its_random_initialisation(task, random_init):
    seeds = [0, 1]
    trained = _final_losses(task, "celo_cpu_diet", seeds)
    start = _final_losses(task, "celo", seeds, checkpoint=random_init)
    assert np.isfinite(trained).all()
    assert trained.mean() < 0.8 * start.mean(), (trained, start)


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.is_dir(), reason="needs the real Fashion-MNIST: apt-get install dataset-fashion-mnist")
def test_cpu_celo_beats_tuned_adam_on_the_fashion_mnist_8x8_meta_training_task():
    """T=2000, 3 seeds; Adam tuned over the fmnist suite's grid by the mean over seeds."""
    task, seeds = "ImageMLP_FashionMnist8_Relu32", [0, 1, 2]
    grid = load_registry().optimizer("adam").grid["learning_rate"]
    adam = _final_losses(task, "adam", seeds, lrs=grid).mean(axis=1)  # tuned: best mean over seeds
    celo = _final_losses(task, "celo_cpu_diet", seeds).mean()
    assert np.argmin(adam) not in (0, len(grid) - 1), adam  # Adam's optimum is inside its grid
    adam = adam.min()
    assert celo < adam, (celo, adam)
