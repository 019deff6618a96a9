"""rliable aggregation: matrix layout, intervals, seeding, probability of improvement."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _score_fixtures import grid_records, record, registry, write
from rliable import library as rly
from rliable import metrics
from typer.testing import CliRunner

from celo_bench.aggregate import (
    ScoreMatrix,
    aggregate_table,
    check_matrix,
    interval_estimates,
    metric_vector,
    performance_profiles,
    poi_matrix,
    probability_of_improvement,
    score_distribution,
    score_matrices,
)
from celo_bench.errors import CeloBenchError
from celo_bench.results import score_results
from celo_bench.suite import load_registry

TASKS3 = ("a", "b", "c")


def mat(values, name="x"):
    values = np.asarray(values, dtype=float)
    return ScoreMatrix(values, tuple(f"t{i}" for i in range(values.shape[1])),
                       tuple(range(values.shape[0])), name)


def test_transposed_matrix_is_rejected_clearly():
    good = np.ones((2, 3))
    assert check_matrix(good, TASKS3).shape == (2, 3)
    with pytest.raises(CeloBenchError, match=r"looks transposed.*\(2, 3\)"):
        check_matrix(good.T, TASKS3)
    with pytest.raises(CeloBenchError, match="2-D"):
        check_matrix(np.ones(3), TASKS3)
    with pytest.raises(CeloBenchError, match="non-finite"):
        check_matrix([[1.0, np.nan, 1.0]], TASKS3)
    with pytest.raises(CeloBenchError, match="4 columns"):
        check_matrix(np.ones((2, 4)), TASKS3)


def test_point_estimates_by_hand():
    # 4 runs x 2 tasks, values 1..8: IQM drops 1,2 and 7,8 -> mean(3..6) = 4.5
    m = mat(np.arange(1, 9).reshape(4, 2))
    est = interval_estimates({"x": m}, reps=50, seed=0).set_index("metric")["point"]
    assert est["iqm"] == pytest.approx(4.5)
    assert est["median"] == pytest.approx(4.5)
    assert est["mean"] == pytest.approx(4.5)
    # optimality gap (gamma=1): every score >= 1 -> 0
    assert est["optimality_gap"] == pytest.approx(0.0)
    m = mat([[0.5, 2.0], [0.0, 1.0]])
    est = interval_estimates({"x": m}, reps=50, seed=0).set_index("metric")["point"]
    assert est["optimality_gap"] == pytest.approx(1 - (0.5 + 1 + 0 + 1) / 4)


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (5, 7), (2, 2)])
def test_metric_vector_equals_rliable(shape):
    x = np.random.default_rng(shape[1]).lognormal(size=shape)
    x[0, 0] = x.flat[-1]  # a tie
    want = [metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x),
            metrics.aggregate_optimality_gap(x, 1.0)]
    np.testing.assert_allclose(metric_vector(x), want, rtol=1e-12)


def test_intervals_contain_point_and_are_seeded():
    rng = np.random.default_rng(1)
    mats = {f"o{i}": mat(rng.lognormal(size=(3, 5)), f"o{i}") for i in range(4)}
    state = np.random.get_state()
    a = interval_estimates(mats, reps=200, seed=7)
    after = np.random.get_state()
    assert all(np.array_equal(x, y) for x, y in zip(state[1:2], after[1:2], strict=True))
    assert ((a["low"] <= a["point"]) & (a["point"] <= a["high"])).all()
    assert (a["high"] > a["low"]).any()
    pd.testing.assert_frame_equal(a, interval_estimates(mats, reps=200, seed=7))
    assert not a.equals(interval_estimates(mats, reps=200, seed=8))
    # an optimizer's interval does not depend on which others are aggregated with it
    alone = interval_estimates({"o2": mats["o2"]}, reps=200, seed=7)
    pd.testing.assert_frame_equal(alone.reset_index(drop=True),
                                  a[a["optimizer"] == "o2"].reset_index(drop=True))


def test_constant_scores_have_a_point_interval():
    est = interval_estimates({"x": mat(np.ones((3, 4)))}, reps=50, seed=0)
    est = est.set_index("metric").loc["iqm"]
    assert est["point"] == est["low"] == est["high"] == 1.0


def test_probability_of_improvement_matches_rliable():
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(3, 4)), 1)
    y = np.round(rng.normal(size=(5, 4)), 1)
    y[:, 0] = x[0, 0]  # ties count one half
    mx, my = mat(x), mat(y)
    p, lo, hi = probability_of_improvement(mx, my, reps=300, seed=0)
    assert p == pytest.approx(metrics.probability_of_improvement(x, y))
    assert lo <= p <= hi
    assert (p, lo, hi) == probability_of_improvement(mx, my, reps=300, seed=0)
    # P(X > X) = 1/2; P(X > Y) + P(Y > X) = 1
    assert probability_of_improvement(mx, mx, reps=10)[0] == pytest.approx(0.5)
    q = probability_of_improvement(my, mx, reps=10)[0]
    assert p + q == pytest.approx(1.0)
    full = poi_matrix({"x": mx, "y": my})
    assert full.loc["x", "y"] == pytest.approx(p)
    assert full.loc["x", "x"] == pytest.approx(0.5)


def test_probability_of_improvement_uses_common_tasks():
    x = ScoreMatrix(np.array([[2.0, 0.0]]), ("a", "b"), (0,))
    y = ScoreMatrix(np.array([[1.0, 5.0]]), ("a", "c"), (0,))
    assert probability_of_improvement(x, y, reps=5)[0] == 1.0  # only task a is common


def test_performance_profile_by_hand():
    m = mat([[0.5, 1.5], [2.0, 3.0]])
    prof = performance_profiles({"x": m}, [0.0, 1.0, 2.5], reps=50, seed=0)
    # fraction of scores strictly above tau
    np.testing.assert_allclose(prof["fraction"], [1.0, 0.75, 0.25])
    taus = np.linspace(0, 3, 7)
    np.testing.assert_allclose(score_distribution(m.values, taus),
                               rly.score_distributions(m.values, taus))
    assert ((prof["low"] <= prof["fraction"] + 1e-12) & (prof["fraction"] <= prof["high"] + 1e-12)).all()


def test_score_matrices_layout_and_incomplete_seeds():
    scores = pd.DataFrame({
        "optimizer": ["o"] * 5, "task": ["a", "a", "b", "b", "a"], "seed": [0, 1, 0, 1, 2],
        "final_loss_score": [1.0, 2.0, 3.0, 4.0, 9.0],
    })
    m = score_matrices(scores, "final_loss_score")["o"]
    assert m.tasks == ("a", "b") and m.seeds == (0, 1)  # seed 2 is missing on task b
    np.testing.assert_array_equal(m.values, [[1.0, 3.0], [2.0, 4.0]])


def test_aggregate_table_on_fixture_grid(tmp_path):
    opts = {"adam": ("handcrafted", 1.0), "good": ("extra", 0.6), "bad": ("handcrafted", 1.4),
            "lo": ("learned", 0.8)}
    write(tmp_path, grid_records(["t1", "t2", "t3"], opts, seeds=3))
    reg = registry(["t1", "t2", "t3"], opts, steps=100)
    res = score_results(tmp_path, "fx", registry=reg, reps=100)
    agg = res.aggregate.set_index("optimizer")
    assert list(res.aggregate["optimizer"]) == ["good", "lo", "adam", "bad"]
    assert list(res.aggregate["rank"]) == [1, 2, 3, 4]
    assert (agg["tasks"] == 3).all() and (agg["runs"] == 3).all()
    assert agg.loc["adam", "final_loss_iqm"] == 1.0 and agg.loc["adam", "speedup_iqm"] >= 1.0
    assert agg.loc["good", "final_loss_iqm"] > 1.0 and agg.loc["bad", "final_loss_iqm"] < 1.0
    assert agg.loc["adam", "poi_vs_reference"] == 0.5 and agg.loc["good", "poi_vs_top"] == 0.5
    assert agg.loc["good", "poi_vs_reference"] == 1.0
    for crit in ("final_loss", "speedup"):
        for m in ("iqm", "median", "mean", "optimality_gap"):
            c = f"{crit}_{m}"
            assert (agg[f"{c}_low"] <= agg[c]).all() and (agg[c] <= agg[f"{c}_high"]).all()
    assert set(res.poi["versus"]) == {"adam", "good"}
    assert len(res.tasks) == 12 and (res.tasks["edge"] == "").all()


def test_other_horizons_are_ignored_and_counted(tmp_path):
    reg = registry(["t"], ["adam"], steps=20)
    write(tmp_path, [record("t", "adam", 0, [4, 2, 1]), record("t", "adam", 0, [4, 2, 1, 0.5])])
    res = score_results(tmp_path, "fx", registry=reg, reps=10)
    assert res.ignored == 1
    assert any(n.startswith("ignored 1 stored records not in the current plan") and "1 at other horizons" in n
               and f"`celo-bench prune --suite fx --results {tmp_path}`" in n for n in res.notes)  # the same store
    assert (res.runs["num_steps"] == 20).all()
    # the plan of `--steps 30` holds the other record instead
    res30 = score_results(tmp_path, "fx", registry=reg, reps=10, steps=30)
    assert (res30.runs["num_steps"] == 30).all() and res30.ignored == 1


def test_an_older_suite_versions_records_are_noted_not_scored(tmp_path):
    """Records of version 1 of a suite now at version 2 (the quick tier's redesign): counted, never mixed."""
    reg = registry(["t"], ["adam"], steps=20, version="2")
    write(tmp_path, [record("t", "adam", 0, [4, 2, 1], version="1"), record("t", "adam", 1, [4, 3, 2], version="1"),
                     record("t", "adam", 0, [4, 2, 1.5], version="2")])
    res = score_results(tmp_path, "fx", registry=reg, reps=10)
    assert res.ignored == 2 and len(res.runs) == 1
    alone = score_results(write(tmp_path / "v2", [record("t", "adam", 0, [4, 2, 1.5], version="2")]), "fx",
                          registry=reg, reps=10)
    assert res.runs["final_loss"].tolist() == alone.runs["final_loss"].tolist()  # the version-2 run only
    assert any(n.startswith("ignored 2 stored records not in the current plan") and "older versions" in n
               for n in res.notes), res.notes


def test_cli_score_json(tmp_path, monkeypatch):
    # records under the real smoke suite's name, so the CLI finds the suite in the registry
    opts = {"adam": ("handcrafted", 1.0), "sgd": ("handcrafted", 1.3)}
    tasks = ["smoke_digits_mlp", "smoke_digits_ae"]
    write(tmp_path, grid_records(tasks, opts, seeds=2, n=6, suite="smoke", version="1"), load_registry())
    from celo_bench.cli import app

    res = CliRunner().invoke(app, ["score", "--suite", "smoke", "--results", str(tmp_path),
                                   "--reps", "50", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    # sgd's fixture point lr=1e-3 is not in the smoke grid: 4 records not in the plan
    assert doc["ignored_records"] == 4 and doc["missing_runs"] == {"sgd": 4}
    assert doc["coverage_rule"] == "rank-complete-first"
    rows = doc["rows"]
    assert [r["optimizer"] for r in rows] == ["adam", "sgd"]
    for r in rows:
        assert {"optimizer", "final_loss_iqm", "final_loss_ci", "speedup_iqm", "speedup_ci",
                "tasks", "runs"} <= set(r)
        assert r["final_loss_ci"][0] <= r["final_loss_iqm"] <= r["final_loss_ci"][1]
        assert r["tasks"] == 2 and r["runs"] == 2 and r["coverage"] == 1.0 and r["complete"]
    text = CliRunner().invoke(app, ["score", "--suite", "smoke", "--results", str(tmp_path), "--reps", "20"])
    assert text.exit_code == 0 and "sgd" in text.output
    assert any(line.startswith("note: ignored 4 stored records not in the current plan") and
               line.endswith(f"`celo-bench prune --suite smoke --results {tmp_path}` moves aside those of edited "
                             "specs and older versions")
               for line in text.output.splitlines())


def _coverage_case() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Issue 15 case 4: A beats Adam on both tasks (1.10, 1.05); B has one task only (1.20)."""
    cells = {"adam": {"t1": 1.0, "t2": 1.0}, "A": {"t1": 1.10, "t2": 1.05}, "B": {"t1": 1.20}}
    scores = pd.DataFrame([
        {"task": t, "optimizer": o, "optimizer_kind": "handcrafted", "seed": s,
         "final_loss_score": v, "speedup_score": v}
        for o, by_task in cells.items() for t, v in by_task.items() for s in range(3)])
    tasks = pd.DataFrame([
        {"task": t, "optimizer": o, "optimizer_kind": "handcrafted", "runs": 3, "diverged": 0, "failed": 0,
         "tuned_diverged": 0, "tuned_failed": 0, "edge": ""}
        for o, by_task in cells.items() for t in by_task])
    return scores, tasks


def test_partial_coverage_never_outranks_full_coverage():
    scores, tasks = _coverage_case()
    table, _, _ = aggregate_table(scores, tasks, reps=20, suite_tasks=["t1", "t2"])
    assert list(table["optimizer"]) == ["A", "adam", "B"] and list(table["rank"]) == [1, 2, 3]
    row = table.set_index("optimizer")
    assert row.loc["B", "final_loss_iqm"] == pytest.approx(1.20)  # over its one task, shown as is
    assert not row.loc["B", "complete"] and row.loc["A", "complete"] and row.loc["adam", "complete"]
    assert row.loc["B", "coverage"] == 0.5 and row.loc["B", "tasks"] == 1 and row.loc["B", "tasks_total"] == 2
    # AlgoPerf's rule: the missing task scores 0 -> IQM of (1.2 x3, 0 x3) = mean of the middle four
    assert row.loc["B", "final_loss_iqm_zero_filled"] == pytest.approx(0.6)
    assert row.loc["A", "final_loss_iqm_zero_filled"] == pytest.approx(row.loc["A", "final_loss_iqm"])
    assert table["top"].iloc[0] == "A"


def test_coverage_rule_is_a_named_setting():
    scores, tasks = _coverage_case()
    ignore, _, _ = aggregate_table(scores, tasks, reps=20, suite_tasks=["t1", "t2"], coverage_rule="ignore")
    assert list(ignore["optimizer"]) == ["B", "A", "adam"]  # the old, misleading order, on request only
    zf, _, _ = aggregate_table(scores, tasks, reps=20, suite_tasks=["t1", "t2"], coverage_rule="zero-fill")
    assert list(zf["optimizer"]) == ["A", "adam", "B"]
    with pytest.raises(CeloBenchError, match="coverage rule must be one of rank-complete-first"):
        aggregate_table(scores, tasks, reps=20, coverage_rule="best")
    # without the suite's task list, the tasks present are the suite
    default, _, _ = aggregate_table(scores, tasks, reps=20)
    assert list(default["tasks_total"]) == [2, 2, 2]


def test_wall_clock_speedup_is_aggregated_only_where_every_task_is_timed():
    rows = []
    for task in ("t1", "t2"):
        for opt, su in (("adam", 1.0), ("a", 2.0), ("b", 1.5)):
            for seed in range(3):
                timed = not (opt == "b" and task == "t2")  # b has no timing on t2
                rows.append({"task": task, "optimizer": opt, "optimizer_kind": "handcrafted", "seed": seed,
                             "final_loss_score": 1.0, "speedup_score": su,
                             "wall_clock_speedup_score": su * 0.5 if timed else np.nan})
    scores = pd.DataFrame(rows)
    tasks = scores.groupby(["task", "optimizer"], as_index=False).first()[["task", "optimizer", "optimizer_kind"]]
    tasks = tasks.assign(runs=3, diverged=0, failed=0, tuned_diverged=0, tuned_failed=0, edge="")
    assert set(score_matrices(scores, "wall_clock_speedup_score")) == {"adam", "a"}
    table, _, mats = aggregate_table(scores, tasks, reps=20)
    t = table.set_index("optimizer")
    assert t.loc["a", "wall_clock_speedup_iqm"] == pytest.approx(1.0)
    assert t.loc["adam", "wall_clock_speedup_iqm"] == pytest.approx(0.5)
    assert np.isnan(t.loc["b", "wall_clock_speedup_iqm"])  # never a partial aggregate
    assert t.loc["b", "speedup_iqm"] == pytest.approx(1.5)
    # a scores frame without the column (older callers) gives no wall-clock matrices
    assert score_matrices(scores.drop(columns="wall_clock_speedup_score"), "wall_clock_speedup_score") == {}
