"""Tier agreement: Kendall's tau / Spearman's rho between two suites' IQM rankings, with CIs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from _score_fixtures import grid_records, registry, write
from typer.testing import CliRunner

from celo_bench import results as results_module
from celo_bench.aggregate import ScoreMatrix
from celo_bench.compare import agreement, boot_iqms, compare, kendall_spearman, text, top_k
from celo_bench.errors import CeloBenchError
from celo_bench.suite import SuiteSpec

TASKS = ("t1", "t2", "t3", "t4")


def matrices(means, seeds=8, noise=0.0, seed=0) -> dict[str, ScoreMatrix]:
    rng = np.random.default_rng(seed)
    out = {}
    for i, mean in enumerate(means):
        name = f"opt{i}"
        values = mean + noise * rng.standard_normal((seeds, len(TASKS)))
        out[name] = ScoreMatrix(values, TASKS, tuple(range(seeds)), name)
    return out


def test_identical_rankings_give_one():
    a = matrices([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], noise=0.05)
    b = matrices([10.0, 20.0, 30.0, 40.0, 50.0, 60.0], noise=0.05, seed=1)  # same order, other scale
    g = agreement("final_loss", a, b, reps=200)
    assert g.kendall[0] == pytest.approx(1.0) and g.spearman[0] == pytest.approx(1.0)
    assert g.k == 5 and g.top_overlap == 5
    assert g.kendall[1] <= 1.0 <= g.kendall[2]


def test_reversed_rankings_give_minus_one():
    a = matrices([1.0, 2.0, 3.0, 4.0, 5.0], noise=0.05)
    b = matrices([5.0, 4.0, 3.0, 2.0, 1.0], noise=0.05, seed=1)
    g = agreement("final_loss", a, b, reps=200)
    assert g.kendall[0] == pytest.approx(-1.0) and g.spearman[0] == pytest.approx(-1.0)
    assert g.kendall[2] == pytest.approx(-1.0)  # the optimizers are far apart: every resample agrees
    assert top_k(g.optimizers, g.iqm_a, 2) == ("opt4", "opt3")


def test_ci_covers_the_true_tau_on_a_synthetic_case():
    # true IQM orders: A = 0 < 1 < 2 < 3 < 4, B swaps two adjacent pairs: true tau = (10 - 2*2)/10 = 0.6
    true_a = [1.0, 2.0, 3.0, 4.0, 5.0]
    true_b = [1.0, 3.0, 2.0, 5.0, 4.0]
    tau_true, rho_true = kendall_spearman(np.array(true_a), np.array(true_b))
    assert tau_true == pytest.approx(0.6) and rho_true == pytest.approx(0.8)
    g = agreement("final_loss", matrices(true_a, noise=2.0, seed=2), matrices(true_b, noise=2.0, seed=3), reps=500)
    low, high = g.kendall[1], g.kendall[2]
    assert low <= tau_true <= high
    assert low < g.kendall[0] or g.kendall[0] < high  # a real interval, not a point
    assert g.spearman[1] <= rho_true <= g.spearman[2]
    assert g.top_overlap == 5


def test_bootstrap_iqm_resamples_seeds_within_tasks():
    # every task column holds one value per seed: a resample keeps each column's values
    m = ScoreMatrix(np.tile(np.array([1.0, 2.0, 3.0, 4.0]), (3, 1)), TASKS, (0, 1, 2), "x")
    boot = boot_iqms(m, 50, np.random.default_rng(0))
    assert boot.shape == (50,) and np.allclose(boot, 2.5)


def fake(suite, mats, suite_tasks=TASKS):
    rows = [{"optimizer": n, "final_loss_iqm_low": 0.0, "final_loss_iqm_high": 1.0} for n in mats]
    return SimpleNamespace(suite=suite, matrices={"final_loss": mats, "speedup": {}}, reps=50, seed=0,
                           confidence=0.95, aggregate=pd.DataFrame(rows), device_kind="cpu",
                           suite_tasks=tuple(suite_tasks))


def test_suites_with_no_common_optimizer_are_a_clear_error():
    a = matrices([1.0, 2.0])
    b = {f"other{i}": ScoreMatrix(m.values, m.tasks, m.seeds, f"other{i}") for i, m in enumerate(a.values())}
    with pytest.raises(CeloBenchError, match="suites 'quick' and 'fmnist' have no scored optimizer in common") as e:
        compare(fake("quick", a), fake("fmnist", b))
    assert "\n" not in str(e.value)
    with pytest.raises(CeloBenchError, match="no optimizer has final loss scores in both suites"):
        agreement("final_loss", a, b)


def test_cli_compare_suites(tmp_path, monkeypatch):
    opts = {"adam": ("handcrafted", 1.0), "sgd": ("handcrafted", 1.4), "lion": ("extra", 0.9)}
    reg = registry(["t1", "t2"], opts, steps=50, lrs=(1e-3, 1e-2, 1e-1), seeds=2)
    fy = SuiteSpec(name="fy", version="1", tasks=("t1", "t2"), optimizers=tuple(opts), steps=50, seeds=2)
    reg = type(reg)(tasks=reg.tasks, optimizers=reg.optimizers, suites={**reg.suites, "fy": fy})
    for suite in ("fx", "fy"):
        write(tmp_path / "r", grid_records(["t1", "t2"], opts, seeds=2, n=6, suite=suite), reg)
    monkeypatch.setattr(results_module, "load_registry", lambda: reg)
    from celo_bench.cli import app

    res = CliRunner().invoke(app, ["compare-suites", "fx", "fy", "--results", str(tmp_path / "r"), "--reps", "50",
                                   "--format", "json", "--out", str(tmp_path / "o"), "--bench", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    fl = next(c for c in doc["criteria"] if c["criterion"] == "final_loss")
    assert fl["optimizers"] == ["adam", "lion", "sgd"]
    assert fl["kendall_tau"]["point"] == pytest.approx(1.0)  # the same records rank alike
    assert fl["top_k"] == 3 and fl["top_k_overlap"] == 3
    assert {c["criterion"] for c in doc["criteria"]} == {"final_loss", "speedup"}  # no timings: no wall clock
    for ext in ("png", "pdf"):
        assert (tmp_path / "o" / f"tier_agreement_fx_fy.{ext}").stat().st_size > 1000
    assert json.loads((tmp_path / "o" / "comparison_fx_fy.json").read_text())["suite_b"] == "fy"
    plain = CliRunner().invoke(app, ["compare-suites", "fx", "fy", "--results", str(tmp_path / "r"),
                                     "--reps", "50", "--bench", str(tmp_path)])
    assert plain.exit_code == 0 and "Kendall tau" in plain.stdout and "top-3 by final loss" in plain.stdout
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    blocked = CliRunner().invoke(app, ["compare-suites", "fx", "fy", "--results", str(tmp_path / "r"),
                                       "--reps", "50", "--bench", str(tmp_path), "--out", str(blocker / "o")])
    assert isinstance(blocked.exception, CeloBenchError), blocked.output
    assert f"{blocker} is a file; choose another --out" in str(blocked.exception)


def test_text_summary_names_suites_and_rows():
    a, b = matrices([1.0, 2.0, 3.0]), matrices([1.0, 3.0, 2.0], seed=1)
    c = compare(fake("quick", a), fake("fmnist", b), reps=50)
    out = text(c)
    assert "'quick' vs 'fmnist'" in out and "final loss" in out and "+0.333" in out


def test_partial_coverage_and_few_optimizers_come_with_caveats():
    """A suite scored on some of its tasks, or too few common optimizers, is said, not hidden."""
    many = matrices([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    full = compare(fake("quick", many), fake("fmnist", many), reps=20)
    assert full.caveats() == [] and full.coverage == {"quick": (4, 4), "fmnist": (4, 4)}
    part = compare(fake("quick", many), fake("fmnist", many, suite_tasks=(*TASKS, "t5", "t6")), reps=20)
    assert part.caveats() == ["'fmnist' has scores on 4 of its 6 tasks: its IQMs cover those tasks only"]
    assert "caveat: 'fmnist' has scores on 4 of its 6 tasks" in text(part)
    assert part.as_json()["coverage"]["fmnist"] == {"tasks_scored": 4, "tasks": 6}
    few = compare(fake("quick", matrices([1.0, 2.0])), fake("fmnist", matrices([1.0, 2.0])), reps=20)
    assert few.caveats() == ["only 2 common optimizers: an agreement over so few says little"]
