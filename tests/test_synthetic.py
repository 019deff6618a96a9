"""Synthetic stand-in data: every paper task's exact shapes, dtypes, vocabulary and classes,
deterministic, no download; synthetic runs are keyed, labelled and stored apart from real ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from celo_bench import data, plan
from celo_bench.data import synthetic
from celo_bench.suite import load_registry

# Stated independently of celo_bench.data: classes, image shapes, vocabulary (T5 32k + 100).
FACTS = {
    "fashion_mnist": {"num_classes": 10, "image_shape": (28, 28, 1)},
    "mnist": {"num_classes": 10, "image_shape": (28, 28, 1)},
    "cifar10": {"num_classes": 10, "image_shape": (32, 32, 3)},
    "cifar100": {"num_classes": 100, "image_shape": (32, 32, 3)},
    "lm1b_32k": {"vocab_size": 32100},
    "wikipedia_en_32k": {"vocab_size": 32100},
}
# 80/10/10 of the published training set + the test set; LM splits capped at 50,000.
SIZES = {
    "fashion_mnist": (48_000, 6_000, 6_000, 10_000),
    "mnist": (48_000, 6_000, 6_000, 10_000),
    "cifar10": (40_000, 5_000, 5_000, 10_000),
    "cifar100": (40_000, 5_000, 5_000, 10_000),
    "lm1b_32k": (50_000, 50_000, 50_000, 50_000),
    "wikipedia_en_32k": (50_000, 50_000, 50_000, 50_000),
}
SPLITS = ("train", "inner_valid", "outer_valid", "test")


@pytest.fixture(scope="module")
def reg():
    return load_registry()


@pytest.fixture(scope="module")
def datasets(reg):
    """Each distinct (dataset, options) of the paper suite, generated once."""
    out = {}
    for name in reg.suite("paper").tasks:
        spec = reg.task(name)
        key = (spec.dataset, json.dumps(spec.data, sort_keys=True))
        if key not in out:
            out[key] = data.load(synthetic.synthetic_name(spec.dataset), spec.data)
    return out


def test_every_paper_task_gets_its_exact_shapes(reg, datasets):
    tasks = reg.suite("paper").tasks
    assert len(tasks) == 17
    for name in tasks:
        spec = reg.task(name)
        ds = datasets[(spec.dataset, json.dumps(spec.data, sort_keys=True))]
        facts = FACTS[spec.dataset]
        assert ds.name == f"synthetic:{spec.dataset}" and ds.info["synthetic"] is True
        assert tuple(ds.size(s) for s in SPLITS) == SIZES[spec.dataset], name
        for split in SPLITS:
            arrays = ds.splits[split]
            if "vocab_size" in facts:
                seq = spec.data["seq_len"]
                tok = arrays["tokens"]
                assert set(arrays) == {"tokens"} and tok.dtype == np.int32 and tok.shape[1] == seq + 1, name
                assert 0 <= tok.min() and tok.max() < facts["vocab_size"]
                assert (tok == 0).any() and (tok[:, 0] != 0).all()  # right padding only
                assert ds.info["vocab_size"] == facts["vocab_size"] and ds.info["seq_len"] == seq
            else:
                img, lab = arrays["image"], arrays["label"]
                h, w, c = facts["image_shape"]
                if "image_size" in spec.data:  # resized like the real loader: float32 in [0, 255]
                    h, w = spec.data["image_size"]
                    assert img.dtype == np.float32, name
                else:
                    assert img.dtype == np.uint8, name
                assert img.shape[1:] == (h, w, c) and 0 <= img.min() and img.max() <= 255, name
                assert lab.dtype == np.int32 and 0 <= lab.min() and lab.max() < facts["num_classes"]
                assert len(np.unique(lab)) == facts["num_classes"]
                assert ds.info["num_classes"] == facts["num_classes"]
                assert tuple(ds.info["image_shape"]) == (h, w, c)


def test_synthetic_facts_match_the_real_facts(reg):
    from celo_bench.data import dataset_info

    for name in reg.suite("paper").tasks:
        spec = reg.task(name)
        real = dict(dataset_info(spec.dataset, spec.data))
        fake = dict(dataset_info(synthetic.synthetic_name(spec.dataset), spec.data))
        assert fake.pop("synthetic") is True
        assert fake == real, name


def test_deterministic_by_seed():
    a = synthetic.paper_dataset("lm1b_32k", {"seq_len": 8}, seed=0)
    b = synthetic.paper_dataset("lm1b_32k", {"seq_len": 8}, seed=0)
    c = synthetic.paper_dataset("lm1b_32k", {"seq_len": 8}, seed=1)
    np.testing.assert_array_equal(a.splits["train"]["tokens"], b.splits["train"]["tokens"])
    assert not np.array_equal(a.splits["train"]["tokens"], c.splits["train"]["tokens"])
    assert not np.array_equal(a.splits["train"]["tokens"], a.splits["test"]["tokens"])


def test_offline_datasets_are_mirrored():
    real = data.load("digits")
    fake = data.load("synthetic:digits")
    for split in real.splits:
        for k, v in real.splits[split].items():
            assert fake.splits[split][k].shape == v.shape and fake.splits[split][k].dtype == v.dtype
    assert not np.array_equal(fake.splits["train"]["image"], real.splits["train"]["image"])
    assert fake.splits["train"]["label"].max() < 10


def test_synthetic_runs_have_their_own_keys_and_label(reg):
    suite = reg.suite("paper")
    kw = {"tasks": ["ImageMLP_FashionMnist_Relu128x128"], "optimizers": ["adam"]}
    real = plan.expand(reg, suite, **kw)
    same = plan.expand(reg, suite, data="real", **kw)
    fake = plan.expand(reg, suite, data="synthetic", **kw)
    real_keys = [r.key for j in real for r in j.runs]
    assert real_keys == [r.key for j in same for r in j.runs]  # the default is real data
    fake_keys = [r.key for j in fake for r in j.runs]
    assert len(fake_keys) == len(real_keys) == 21 and not set(fake_keys) & set(real_keys)
    assert {r.suite for j in real for r in j.runs} == {"paper"}
    assert {r.suite for j in fake for r in j.runs} == {"paper@synthetic"}
    assert fake[0].task.dataset == "synthetic:fashion_mnist" and fake[0].provenance["data"] == "synthetic"
    assert real[0].task.dataset == "fashion_mnist" and "data" not in real[0].provenance
    with pytest.raises(Exception, match="--data must be one of real, synthetic"):
        plan.expand(reg, suite, data="fake", **kw)


def test_synthetic_results_go_to_their_own_folder():
    from celo_bench.runner import RunConfig

    assert RunConfig(data="synthetic").results == Path("results-synthetic")
    assert RunConfig().results == Path("results")
    assert RunConfig(data="synthetic", results=Path("/tmp/x")).results == Path("/tmp/x")


def _run_cli(tmp_path: Path, tasks: list[str], extra: list[str] = ()) -> list[dict]:
    from typer.testing import CliRunner

    from celo_bench.cli import app
    from celo_bench.store import Store

    res = CliRunner().invoke(app, [
        "run", "--suite", "paper", "--data", "synthetic", "--steps", "20", "--seeds", "1", "-o", "adam",
        "--tasks", ",".join(tasks), "--results", str(tmp_path), "--format", "json", *extra,
    ])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["failed"] == 0 and summary["executed"] == 7 * len(tasks), summary
    assert summary["report"] is None  # synthetic runs are never scored
    return Store(tmp_path).read().to_dict("records")


def _check_records(records: list[dict], tasks: list[str]) -> None:
    assert {r["task"] for r in records} == set(tasks)
    for r in records:
        assert r["suite"] == "paper@synthetic"
        prov = r["provenance"] if isinstance(r["provenance"], dict) else json.loads(r["provenance"])
        assert prov.get("data") == "synthetic"
        assert len(r["train_loss"]) == 21 and len(r["eval_train_loss"]) == 3
        assert np.isfinite(r["train_loss"][0])


SMALL = ["ImageMLP_FashionMnist_Relu128x128", "ImageMLPAE_Mnist_128x32x128_bs128"]


def test_two_paper_tasks_train_on_synthetic_data(tmp_path, reg):
    """`celo-bench run --data synthetic` on two small paper tasks; nothing is scored."""
    records = _run_cli(tmp_path, SMALL)
    _check_records(records, SMALL)
    from celo_bench.errors import CeloBenchError
    from celo_bench.results import score_results

    with pytest.raises(CeloBenchError, match="suite 'paper'"):
        score_results(tmp_path, "paper", registry=reg)


PAPER_TASKS = tuple(load_registry().suite("paper").tasks)


@pytest.mark.slow
@pytest.mark.heavy  # 17 tasks x 7 Adam runs: over an hour on 2 cores (the LSTM LMs' 32,100-way logits), past CI's budget
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("task", PAPER_TASKS)
def test_each_paper_task_trains_on_synthetic_data(tmp_path, task):
    """One test per paper task (a failure names its task): 20 steps of 7 Adam runs, every run ok."""
    _check_records(_run_cli(tmp_path, [task]), [task])
