"""Weights meta-trained here are better than where they started (issue 10's acceptance).

The cpu-diet Celo trains quick tasks, and the 8x8 Fashion-MNIST meta-training task at
T=2000, to a lower loss than the random initialisation its meta-training started from. The weights ship as package data (``celo_bench/weights/celo_cpu_diet``,
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
def test_cpu_celo_beats_its_random_initialisation_on_the_8x8_meta_training_task(random_init):
    """T=2000, 3 seeds, the task Celo was meta-trained on (in distribution).

    Tuned Adam is not the bar here: at the equal budget of issue 27 (2,000 outer steps for
    all four architectures) the cpu-diet Celo reaches 0.83 where tuned Adam reaches 0.50
    (the 9,500-step weights it replaced beat Adam; docs/metatrain.md).
    """
    task, seeds = "ImageMLP_FashionMnist8_Relu32", [0, 1, 2]
    trained = _final_losses(task, "celo_cpu_diet", seeds)
    start = _final_losses(task, "celo", seeds, checkpoint=random_init)
    assert np.isfinite(trained).all()
    assert trained.mean() < 0.8 * start.mean(), (trained, start)
