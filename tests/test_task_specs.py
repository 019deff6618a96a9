"""Task specs and suites: the paper's 17 tasks, the offline quick tier, and that they train.

Paper tasks train on small generated datasets in the cache format (uint8 images, int32
labels, int32 token rows with padding); quick tasks train on their real offline data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from celo_bench.assembly import build_model_only, build_task
from celo_bench.optimizers import REGISTERED_FACTORIES
from celo_bench.suite import load_registry
from tests.test_models import EXPECTED, paper_info

PAPER = {  # name: (family, dataset, batch size), paper-protocol.md §1.2
    "ImageMLP_FashionMnist_Relu128x128": ("image_mlp", "fashion_mnist", 128),
    "ImageMLP_Cifar10_128x128x128_LayerNorm_Relu": ("image_mlp", "cifar10", 128),
    "ImageMLP_Cifar10_128x128x128_Tanh_bs128": ("image_mlp", "cifar10", 128),
    "Conv_Cifar10_32x64x64": ("conv", "cifar10", 128),
    "Conv_Cifar10_32x64x64_batchnorm": ("conv", "cifar10", 128),
    "Conv_Cifar10_32x64x64_layernorm": ("conv", "cifar10", 128),
    "Conv_Cifar100_32x64x64": ("conv", "cifar100", 128),
    "VIT_Cifar100_wideshallow": ("vit", "cifar100", 128),
    "VIT_Cifar100_skinnydeep": ("vit", "cifar100", 128),
    "TransformerLM_LM1B_MultiRuntime_0": ("transformer_lm", "lm1b_32k", 4),
    "TransformerLM_LM1B_MultiRuntime_2": ("transformer_lm", "lm1b_32k", 8),
    "TransformerLM_LM1B_MultiRuntime_5": ("transformer_lm", "lm1b_32k", 8),
    "ImageMLPAE_Cifar10_128x32x128_bs256": ("autoencoder", "cifar10", 256),
    "ImageMLPAE_Mnist_128x32x128_bs128": ("autoencoder", "mnist", 128),
    "RNNLM_lm1b32k_Patch32_LSTM256_Embed128": ("rnn_lm", "lm1b_32k", 128),
    "RNNLM_wikipediaen32k_Patch32_LSTM256_Embed128": ("rnn_lm", "wikipedia_en_32k", 128),
    "LOpt_AdafacMLPLOpt_FashionMnist_50": ("lopt", "fashion_mnist", 50 * 128),
}
QUICK_FAMILIES = {"image_mlp", "conv", "vit", "autoencoder", "transformer_lm", "rnn_lm", "lopt"}
OFFLINE = {"fashion_mnist_14", "digits", "pydoc_text"}  # shipped with the package or scikit-learn


@pytest.fixture(scope="module")
def reg():
    return load_registry()


def test_paper_tasks_are_the_17(reg):
    assert sorted(reg.suite("paper").tasks) == sorted(PAPER)
    assert len(PAPER) == 17
    for name, (family, dataset, batch) in PAPER.items():
        t = reg.task(name)
        assert (t.family, t.dataset, t.batch_size) == (family, dataset, batch), name
        assert (t.steps, t.eval_every, t.eval_batches, t.last_eval_batches) == (2000, 10, 5, 10)
    lm_seq = {n: reg.task(n).data.get("seq_len") for n in PAPER if "LM" in n}
    assert lm_seq == {
        "TransformerLM_LM1B_MultiRuntime_0": 8, "TransformerLM_LM1B_MultiRuntime_2": 8,
        "TransformerLM_LM1B_MultiRuntime_5": 32, "RNNLM_lm1b32k_Patch32_LSTM256_Embed128": 32,
        "RNNLM_wikipediaen32k_Patch32_LSTM256_Embed128": 32,
    }
    assert reg.task("LOpt_AdafacMLPLOpt_FashionMnist_50").data == {"image_size": [8, 8]}
    # Today's Wikipedia snapshot differs from the paper's: the spec says so.
    assert "20231101" in reg.task("RNNLM_wikipediaen32k_Patch32_LSTM256_Embed128").note


def test_suites(reg):
    paper, quick, fmnist = reg.suite("paper"), reg.suite("quick"), reg.suite("fmnist")
    assert (paper.seeds, paper.steps) == (3, 2000)
    assert (quick.version, quick.seeds) == ("3", 3)
    # every task of the quick folder is in the default tier or in the family it leaves out
    in_folder = sorted(n for n, t in reg.tasks.items() if t.path.split("/")[-2] == "quick")
    assert sorted([*quick.tasks, *reg.suite("quick_lopt").tasks]) == in_folder
    assert set(reg.suite("quick_extra").tasks) == set(quick.tasks)
    assert set(fmnist.tasks) == {"ImageMLP_FashionMnist_Relu128x128", "LOpt_AdafacMLPLOpt_FashionMnist_50",
                                 "ImageMLP_FashionMnist8_Relu32"}
    fm8 = reg.task("ImageMLP_FashionMnist8_Relu32")  # the meta-training task shape (§6.1)
    assert (fm8.batch_size, fm8.steps, fm8.data, fm8.model["hidden"]) == (64, 2000, {"image_size": [8, 8]}, [32])
    assert "ImageMLP_FashionMnist8_Relu32" not in reg.suite("paper").tasks
    assert fmnist.steps == 2000
    assert "adam" in quick.optimizers and "adam" in paper.optimizers


def test_quick_tier_is_offline_and_covers_every_family_but_the_one_it_names(reg):
    spec = reg.suite("quick")
    quick = [reg.task(n) for n in spec.tasks]
    assert len(quick) == len(QUICK_FAMILIES) - 1  # one task per family of the paper's 17 ...
    assert {t.dataset for t in quick} <= OFFLINE
    assert {t.family for t in quick} == QUICK_FAMILIES - {"lopt"}
    # ... but learned-optimizer training, which the description names with its cost and its own suite
    assert "quick_digits_lopt" in spec.description and "quick_lopt" in spec.description
    lopt = [reg.task(n) for n in reg.suite("quick_lopt").tasks]
    assert [t.family for t in lopt] == ["lopt"] and {t.dataset for t in lopt} <= OFFLINE
    assert reg.suite("quick_lopt").optimizers == spec.optimizers
    # the image tasks train on real Fashion-MNIST at 14x14, out of Celo's 8x8 meta-training data
    assert all(t.dataset == "fashion_mnist_14" for t in quick if t.family in ("image_mlp", "conv", "vit",
                                                                                 "autoencoder"))


# ---- training: loss decreases under Adam ---------------------------------------------------

def _train(model, batches, lr: float, steps: int, seed: int = 0):
    """Adam on `model`; batches(i) gives the i-th batch. Returns the losses per step."""
    params, state = model.init(jax.random.PRNGKey(seed))
    opt = optax.adam(lr)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, state, opt_state, key, batch):
        (loss, state), g = jax.value_and_grad(model.loss, has_aux=True)(params, state, key, batch)
        updates, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, loss

    losses = []
    for i in range(steps):
        params, state, opt_state, loss = step(params, state, opt_state, jax.random.PRNGKey(i), batches(i))
        losses.append(float(loss))
    return np.array(losses)


def _generated_batch(spec, info, n: int) -> dict:
    """n examples in the cache format: uint8 images / int32 labels, or int32 token rows."""
    rng = np.random.default_rng(0)
    if "vocab_size" in info:
        tokens = rng.integers(1, info["vocab_size"], (n, info["seq_len"] + 1)).astype(np.int32)
        tokens[0, -3:] = 0  # some padding, as cropped/padded sentences have
        return {"tokens": tokens}
    shape = tuple(info["image_shape"])
    return {"image": rng.integers(0, 256, (n, *shape)).astype(np.uint8),
            "label": rng.integers(0, info["num_classes"], n).astype(np.int32)}


def _initial_loss_reference(spec, info) -> float | None:
    if "num_classes" in info and spec.family != "autoencoder":
        return math.log(info["num_classes"])
    if "vocab_size" in info:
        return math.log(info["vocab_size"])
    return None


TRAINABLE = sorted(n for n in PAPER if PAPER[n][0] != "lopt")


@pytest.mark.parametrize("name", TRAINABLE)
def test_paper_task_trains_on_generated_data(reg, name):
    """Start near ln(C) (classifiers, LMs) and memorise a small generated batch under Adam.

    "Near" (within 20%): haiku's initialisation gives initial logits of variance ~0.1-0.8
    with class offsets shared by all inputs (largest behind LayerNorm + ReLU, where hidden
    vectors of different inputs are alike), which raises the loss above ln(C); the ViT's
    zero head gives ln(C) exactly.
    """
    spec = reg.task(name)
    info = paper_info(spec)
    model = build_model_only(spec, info)
    ref = _initial_loss_reference(spec, info)
    if ref is not None:
        params, state = model.init(jax.random.PRNGKey(0))
        loss0, _ = jax.jit(model.loss)(params, state, jax.random.PRNGKey(0), _generated_batch(spec, info, 32))
        assert abs(float(loss0) - ref) < 0.2 * ref, (float(loss0), ref)
    batch = _generated_batch(spec, info, 8)
    losses = _train(model, lambda i: batch, lr=1e-3, steps=12)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.05 * abs(losses[0]), losses


def test_paper_lopt_task_starts_at_mean_inner_loss(reg):
    """A random AdaFac-MLP-LOpt barely moves the inner MLP in 50 steps (steps ~1e-3), so the
    meta-loss starts near the inner classifier's ln(10)."""
    spec = reg.task("LOpt_AdafacMLPLOpt_FashionMnist_50")
    if spec.model["optimizer"] not in REGISTERED_FACTORIES:
        pytest.skip(f"learned optimizer factory '{spec.model['optimizer']}' is not registered yet")
    info = paper_info(spec)
    model = build_model_only(spec, info)
    params, state = model.init(jax.random.PRNGKey(0))
    batch = _generated_batch(spec, info, spec.batch_size)
    loss, _ = jax.jit(model.loss)(params, state, jax.random.PRNGKey(1), batch)
    assert abs(float(loss) - math.log(10)) < 0.25


def _sampler(task, seed: int = 0):
    train = task.dataset.splits["train"]
    n = task.dataset.size("train")
    rng = np.random.default_rng(seed)
    order = [rng.choice(n, task.spec.batch_size, replace=False) for _ in range(200)]
    return lambda i: {k: v[order[i]] for k, v in train.items()}


QUICK_LR = {"lopt": 1e-2, "conv": 1e-2, "vit": 1e-2}  # Adam learning rates that train within 60 steps


def test_quick_tasks_train_on_real_data(reg):
    """Every quick task: Adam lowers the loss on held-out batches of its real offline data."""
    for name in reg.suite("quick").tasks:
        task = build_task(reg.task(name))
        if task.spec.family == "lopt" and task.spec.model["optimizer"] not in REGISTERED_FACTORIES:
            continue
        losses = _train(task.model, _sampler(task), lr=QUICK_LR.get(task.spec.family, 3e-3), steps=60)
        assert np.all(np.isfinite(losses)), name
        first, last = losses[:5].mean(), losses[-5:].mean()
        assert last < 0.9 * first, (name, first, last)
        if task.spec.family in ("image_mlp", "conv"):
            assert abs(losses[0] - math.log(10)) < 0.3, (name, losses[0])


# ---- listing --------------------------------------------------------------------------------

def test_list_tasks_json_has_facts_for_every_task(reg):
    from typer.testing import CliRunner

    from celo_bench.cli import app

    res = CliRunner().invoke(app, ["list", "tasks", "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(rows) == set(reg.tasks)
    for name, row in rows.items():
        assert {"name", "family", "dataset", "batch_size", "steps", "n_params"} <= set(row)
        if name in EXPECTED and (PAPER[name][0] != "lopt" or "adafac_mlp_lopt" in REGISTERED_FACTORIES):
            assert row["n_params"] == EXPECTED[name], name
        else:
            assert isinstance(row["n_params"], int) and row["n_params"] > 0, name


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="needs the real Fashion-MNIST: apt-get install dataset-fashion-mnist",
)
def test_fmnist_suite_trains_its_tasks_on_real_data(tmp_path):
    """The tasks whose data ships as a distribution package, through the whole grid path."""
    from celo_bench.runner import RunConfig, run
    from celo_bench.store import Store

    cfg = RunConfig(
        suite="fmnist", steps=20, seeds=1, optimizers=["adam"], results=tmp_path,
        grids={"adam": {"learning_rate": [3e-3]}},
    )
    summary = run(cfg)
    assert summary.executed == 3 and summary.failed == 0 and summary.diverged == 0
    df = Store(tmp_path).read().set_index("task")
    assert set(df.index) == {"ImageMLP_FashionMnist_Relu128x128", "LOpt_AdafacMLPLOpt_FashionMnist_50",
                             "ImageMLP_FashionMnist8_Relu32"}
    for task, row in df.iterrows():
        curve = row["eval_train_loss"]
        assert curve[0] == pytest.approx(np.log(10), rel=0.15), task  # both start near ln(10)
        assert curve[-1] < curve[0] - 0.01, (task, curve)


def test_list_optimizers_says_whose_weights_each_learned_optimizer_runs(reg):
    from typer.testing import CliRunner

    from celo_bench.cli import app

    res = CliRunner().invoke(app, ["list", "optimizers", "--format", "json"])
    assert res.exit_code == 0, res.output
    labels = {r["name"]: r["label"] for r in json.loads(res.stdout)}
    assert labels["adam"] == "hand-crafted" and labels["lion"] == "extra"
    assert labels["celo"] == "learned · published"
    here = {n for n, lab in labels.items() if lab == "learned · meta-trained here (cpu diet)"}
    assert here and all(n.endswith("_cpu_diet") for n in here)
    for suite in ("quick", "fmnist", "paper"):  # listed beside the published weights
        assert here <= set(reg.suite(suite).optimizers) and "celo" in reg.suite(suite).optimizers
