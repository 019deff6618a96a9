"""Scoring formulas against values computed by hand (protocol §4.2)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _score_fixtures import decaying, record, registry, write

from celo_bench import timings
from celo_bench.errors import CeloBenchError
from celo_bench.results import score_results
from celo_bench.score import (
    ScoreConfig,
    ema,
    final_loss_score,
    final_value,
    first_hit,
    score_records,
    speedup_score,
    wall_clock_speedup,
)
from celo_bench.store import Store

NAN = float("nan")


def frame(records):
    """Store records go through parquet exactly as in production."""
    return pd.DataFrame(records)


def scored(tmp_path, records, **cfg):
    write(tmp_path, records)
    return score_records(Store(tmp_path).read(), ScoreConfig(**cfg))


def one(scores, task, opt, seed):
    row = scores[(scores["task"] == task) & (scores["optimizer"] == opt) & (scores["seed"] == seed)]
    assert len(row) == 1
    return row.iloc[0]


# ---- formulas -------------------------------------------------------------------------


def test_ema_by_hand():
    # a=0.5: y0=1, y1=.5*1+.5*3=2, y2 keeps 2 (NaN), y3=.5*2+.5*5=3.5, y4 keeps (inf)
    np.testing.assert_allclose(ema([1.0, 3.0, NAN, 5.0, np.inf], 0.5), [1, 2, 2, 3.5, 3.5])
    # leading NaN stays NaN; the first finite value starts the average
    np.testing.assert_allclose(ema([NAN, 2.0, 4.0], 0.5), [NAN, 2, 3])
    # a=0 is the identity; a=0.9 on a constant is the constant
    np.testing.assert_array_equal(ema([4.0, 2.0, 1.0], 0.0), [4, 2, 1])
    np.testing.assert_allclose(ema(np.full(20, 0.7), 0.9), 0.7)
    # vectorized over leading axes
    both = ema(np.array([[1.0, 3.0], [2.0, NAN]]), 0.5)
    np.testing.assert_allclose(both, [[1, 2], [2, 2]])


def test_final_value_and_first_hit():
    assert final_value(np.array([3.0, 2.0, NAN])) == 2.0
    assert np.isnan(final_value(np.array([NAN, NAN])))
    steps = np.array([0, 10, 20, 30])
    y = np.array([3.0, 2.0, 1.0, 1.0])
    assert first_hit(y, steps, 1.0) == 20  # a tie counts as reached
    assert first_hit(y, steps, 0.5) is None
    assert first_hit(y, steps, 5.0) == 0
    assert first_hit(y, steps, NAN) is None
    assert first_hit(np.array([NAN, 0.1]), np.array([0, 10]), 1.0) == 10


def test_final_loss_score_conventions():
    assert final_loss_score(2.0, 4.0) == 0.5
    assert final_loss_score(3.0, 3.0) == 1.0
    for bad in [(NAN, 1.0), (1.0, NAN), (np.inf, 1.0), (1.0, np.inf), (1.0, 0.0), (1.0, -2.0)]:
        assert final_loss_score(*bad) == 0.0


def test_speedup_score_conventions():
    assert speedup_score(100, 25) == 4.0
    assert speedup_score(100, 100) == 1.0
    assert speedup_score(100, None) == 0.0
    assert speedup_score(100, 0) == 100.0  # degenerate: reached at step 0 -> T
    assert speedup_score(100, 10, cap=5.0) == 5.0


def test_bad_settings_are_clear():
    with pytest.raises(CeloBenchError, match="series"):
        ScoreConfig(series="valid")
    with pytest.raises(CeloBenchError, match="ema_alpha"):
        ScoreConfig(ema_alpha=1.0)


# ---- scoring runs ---------------------------------------------------------------------


def test_adam_against_itself_scores_one(tmp_path):
    recs = []
    for task in ("a", "b"):
        for lr in (1e-3, 1e-2):
            for s in range(3):
                curve = decaying(11, 2.0, 0.5 + lr * 10 + 0.01 * s)
                curve[5] += 0.3  # a bump: smoothed curve is not monotone
                recs.append(record(task, "adam", s, curve, lr=lr))
    res = scored(tmp_path, recs)
    adam = res.scores[res.scores["optimizer"] == "adam"]
    assert len(adam) == 6
    assert (adam["final_loss_score"] == 1.0).all()
    assert (adam["speedup_score"] >= 1.0).all()
    assert set(adam["hparam_id"]) == {"adam[learning_rate=0.001]"}


@pytest.mark.parametrize("k", [1, 3])
def test_shifted_curve_speedup_by_hand(tmp_path, k):
    adam = decaying(11, 2.0, 0.5)  # evals at 0..100, strictly decreasing
    shifted = np.concatenate([adam[k:], np.full(k, adam[-1])])  # k evaluations earlier
    res = scored(tmp_path, [record("t", "adam", 0, adam), record("t", "fast", 0, shifted)],
                 ema_alpha=0.0)
    row = one(res.scores, "t", "fast", 0)
    # adam's final loss adam[10] is reached by `shifted` at index 10 - k -> step 10 * (10 - k)
    assert row["t_hit"] == 10 * (10 - k)
    assert row["speedup_score"] == pytest.approx(100 / (10 * (10 - k)))
    assert row["final_loss_score"] == pytest.approx(1.0)


def test_smoothed_scores_by_hand(tmp_path):
    # a = 0.5. adam: x=[4,2,2] -> y=[4,3,2.5], L_adam=2.5
    # opt:  x=[4,1,1] -> y=[4,2.5,1.75]: L=1.75, FL=2.5/1.75, hits 2.5 at step 10 -> SU=20/10
    res = scored(tmp_path, [record("t", "adam", 0, [4, 2, 2]), record("t", "o", 0, [4, 1, 1])],
                 ema_alpha=0.5)
    row = one(res.scores, "t", "o", 0)
    assert row["final_loss"] == pytest.approx(1.75)
    assert row["reference_loss"] == pytest.approx(2.5)
    assert row["final_loss_score"] == pytest.approx(2.5 / 1.75)
    assert row["speedup_score"] == pytest.approx(2.0)


def test_never_reached_and_degenerate_step_zero(tmp_path):
    recs = [record("t", "adam", 0, [4, 2, 1]), record("t", "slow", 0, [4, 3, 2]),
            record("t", "low", 0, [0.5, 0.5, 0.5])]
    res = scored(tmp_path, recs, ema_alpha=0.0)
    slow = one(res.scores, "t", "slow", 0)
    assert slow["speedup_score"] == 0.0 and pd.isna(slow["t_hit"])
    assert slow["final_loss_score"] == pytest.approx(0.5)
    low = one(res.scores, "t", "low", 0)
    assert low["t_hit"] == 0 and low["speedup_score"] == 20.0  # T / t_hit with t_hit = 0 -> T
    assert low["final_loss_score"] == pytest.approx(2.0)


def test_nan_inside_an_ok_run_is_skipped(tmp_path):
    # a=0.5: x=[4,NaN,2] -> y=[4,4,3]; the NaN keeps the previous value
    res = scored(tmp_path, [record("t", "adam", 0, [4, 2, 2]), record("t", "o", 0, [4, NAN, 2])],
                 ema_alpha=0.5)
    assert one(res.scores, "t", "o", 0)["final_loss"] == pytest.approx(3.0)


def test_diverged_run_rules(tmp_path):
    adam = record("t", "adam", 0, [4, 2, 1, 1])
    # reaches adam's final loss 1 at step 10, then blows up
    div = record("t", "o", 0, [4, 0.5, NAN, NAN], status="diverged", diverged_step=20)
    res = scored(tmp_path / "zero", [adam, div], ema_alpha=0.0)
    row = one(res.scores, "t", "o", 0)
    assert row["final_loss"] == np.inf
    assert row["final_loss_score"] == 0.0 and row["speedup_score"] == 0.0
    task = res.tasks.set_index("optimizer").loc["o"]
    assert task["diverged"] == 1 and task["tuned_diverged"] == 1
    res = scored(tmp_path / "trunc", [adam, div], ema_alpha=0.0, diverged="truncate")
    row = one(res.scores, "t", "o", 0)
    assert row["final_loss"] == pytest.approx(0.5)  # last finite value before divergence
    assert row["final_loss_score"] == pytest.approx(2.0)
    assert row["speedup_score"] == pytest.approx(30 / 10)


def test_failed_runs_score_zero_and_are_counted(tmp_path):
    recs = [record("t", "adam", s, [4, 2, 1]) for s in (0, 1)]
    recs += [record("t", "o", 0, [4, 1, 0.5]), record("t", "o", 1, [0], status="failed")]
    res = scored(tmp_path, recs)
    assert one(res.scores, "t", "o", 1)["final_loss_score"] == 0.0
    assert one(res.scores, "t", "o", 1)["speedup_score"] == 0.0
    assert one(res.scores, "t", "o", 0)["final_loss_score"] > 1.0
    task = res.tasks.set_index("optimizer").loc["o"]
    assert (task["failed"], task["tuned_failed"], task["runs"]) == (1, 1, 2)


def test_reference_without_finite_loss_zeroes_that_seed(tmp_path):
    recs = [record("t", "adam", 0, [4, 2, 1]),
            record("t", "adam", 1, [4, NAN, NAN], status="diverged", diverged_step=10),
            record("t", "o", 0, [4, 1, 0.5]), record("t", "o", 1, [4, 1, 0.5])]
    res = scored(tmp_path, recs)
    row = one(res.scores, "t", "o", 1)
    assert not row["reference_ok"]
    assert row["final_loss_score"] == 0.0 and row["speedup_score"] == 0.0
    assert res.tasks.set_index("optimizer").loc["o", "reference_missing"] == 1


def test_tuning_rules_and_ties(tmp_path):
    # final losses (a=0): lr 0.01 -> seeds (1.0, 3.0) mean 2.0; lr 0.1 -> (2.0, 1.5) mean 1.75
    recs = [record("t", "adam", s, [4, 2], lr=1e-3) for s in (0, 1)]
    recs += [record("t", "o", 0, [4, 1.0], lr=0.01), record("t", "o", 1, [4, 3.0], lr=0.01),
             record("t", "o", 0, [4, 2.0], lr=0.1), record("t", "o", 1, [4, 1.5], lr=0.1),
             record("t", "o", 0, [4, 9.0], lr=1.0), record("t", "o", 1, [4, 9.0], lr=1.0)]
    res = scored(tmp_path / "m", recs, ema_alpha=0.0)
    sel = res.runs[res.runs["selected"] & (res.runs["optimizer"] == "o")]
    assert set(sel["learning_rate"]) == {0.1}
    assert res.tasks.set_index("optimizer").loc["o", "edge"] == ""
    res = scored(tmp_path / "p", recs, ema_alpha=0.0, selection="per_seed")
    sel = res.runs[res.runs["selected"] & (res.runs["optimizer"] == "o")].set_index("seed")
    assert sel.loc[0, "learning_rate"] == 0.01 and sel.loc[1, "learning_rate"] == 0.1
    assert res.tasks.set_index("optimizer").loc["o", "edge"] == "learning_rate=min"
    # a tie goes to the smaller learning rate
    tie = [record("t", "adam", 0, [4, 2], lr=1e-3),
           record("t", "o", 0, [4, 1.0], lr=0.1), record("t", "o", 0, [4, 1.0], lr=0.01)]
    res = scored(tmp_path / "tie", tie, ema_alpha=0.0)
    assert res.runs[res.runs["selected"] & (res.runs["optimizer"] == "o")]["learning_rate"].item() == 0.01


def test_a_point_diverging_on_one_seed_is_not_chosen(tmp_path):
    recs = [record("t", "adam", s, [4, 2]) for s in (0, 1)]
    recs += [record("t", "o", 0, [4, 0.1], lr=1.0),
             record("t", "o", 1, [4, NAN], lr=1.0, status="diverged", diverged_step=10),
             record("t", "o", 0, [4, 1.0], lr=0.1), record("t", "o", 1, [4, 1.0], lr=0.1)]
    res = scored(tmp_path, recs, ema_alpha=0.0)
    assert set(res.runs[res.runs["selected"] & (res.runs["optimizer"] == "o")]["learning_rate"]) == {0.1}
    assert res.tasks.set_index("optimizer").loc["o", "edge"] == "learning_rate=min"


def test_edge_of_grid_max(tmp_path):
    recs = [record("t", "adam", 0, [4, 3], lr=1e-3), record("t", "adam", 0, [4, 2], lr=1e-2)]
    res = scored(tmp_path, recs)
    assert res.tasks.set_index("optimizer").loc["adam", "edge"] == "learning_rate=max"


def test_learned_optimizers_are_not_tuned(tmp_path):
    recs = [record("t", "adam", 0, [4, 2]),
            record("t", "lo", 0, [4, 1], lr=None, kind="learned")]
    res = scored(tmp_path, recs, ema_alpha=0.0)
    task = res.tasks.set_index("optimizer").loc["lo"]
    assert not task["tuned"] and task["edge"] == ""
    assert one(res.scores, "t", "lo", 0)["final_loss_score"] == pytest.approx(2.0)


def test_other_series_and_seed_average(tmp_path):
    recs = [record("t", "adam", s, [4, 2, 1 + s]) for s in (0, 1)]
    recs += [record("t", "o", s, [4, 1, 0.5 + s]) for s in (0, 1)]
    write(tmp_path, recs)
    df = Store(tmp_path).read()
    # eval_valid_loss is the curve + 0.1 in the fixture; a=0 -> final = last value
    res = score_records(df, ScoreConfig(series="eval_valid_loss", ema_alpha=0.0))
    assert one(res.scores, "t", "o", 0)["final_loss_score"] == pytest.approx(1.1 / 0.6)
    # train_loss: every step (linear interpolation of the eval curve in the fixture)
    res = score_records(df, ScoreConfig(series="train_loss", ema_alpha=0.0))
    assert one(res.scores, "t", "o", 0)["t_hit"] == 10  # 1.0 reached at step 10
    # average over seeds first: adam final (1+2)/2, o final (0.5+1.5)/2
    res = score_records(df, ScoreConfig(average_seeds=True, ema_alpha=0.0))
    assert len(res.scores) == 2
    assert one(res.scores, "t", "o", 0)["final_loss_score"] == pytest.approx(1.5 / 1.0)


def test_adding_an_optimizer_changes_no_other_score(tmp_path):
    base = [record(t, o, s, decaying(6, 3.0, q + 0.1 * s), lr=lr)
            for t in ("a", "b") for o, q in (("adam", 1.0), ("sgd", 1.3))
            for lr in (0.01, 0.1) for s in range(2)]
    reg = registry(["a", "b"], ["adam", "sgd"], steps=50)
    write(tmp_path, base)
    before = score_results(tmp_path, "fx", registry=reg, reps=50)
    write(tmp_path, [record(t, "new", s, decaying(6, 3.0, 0.2)) for t in ("a", "b") for s in range(2)])
    after = score_results(tmp_path, "fx", registry=reg, reps=50)
    old = before.scores
    new = after.scores[after.scores["optimizer"] != "new"].reset_index(drop=True)
    pd.testing.assert_frame_equal(old, new)
    cols = [c for c in before.aggregate.columns if c.startswith(("final_loss_", "speedup_"))]
    a = before.aggregate.set_index("optimizer").loc[["adam", "sgd"], cols]
    b = after.aggregate.set_index("optimizer").loc[["adam", "sgd"], cols]
    pd.testing.assert_frame_equal(a, b)


def test_score_results_errors_and_notes(tmp_path):
    reg = registry(["t"], ["adam", "o"], steps=20)
    with pytest.raises(CeloBenchError, match="no records of the current plan of suite 'fx'"):
        score_results(tmp_path, "fx", registry=reg)
    write(tmp_path, [record("t", "o", 0, [4, 2, 1])])
    with pytest.raises(CeloBenchError, match="reference optimizer 'adam'"):
        score_results(tmp_path, "fx", registry=reg)
    write(tmp_path, [record("t", "adam", 0, [4, 2, 1]), record("t", "adam", 0, [4, 2], version="0")])
    res = score_results(tmp_path, "fx", registry=reg, reps=20)
    assert res.ignored == 1
    assert any("ignored 1 stored records not in the current plan" in n and "1 of older suite versions" in n
               for n in res.notes)
    new = registry(["t"], ["adam"], steps=20, version="2")
    with pytest.raises(CeloBenchError, match=r"not in the current plan \(v2; they are v0 at 10 steps, v1 at 20"):
        score_results(tmp_path, "fx", registry=new)
    assert json.loads(res.runs["hparams"].iloc[0]) == {"learning_rate": 0.001}


def test_duplicate_reference_records_are_a_clear_error(tmp_path):
    # two records of one tuned grid point (not one plan's records) fed to the scorer directly
    a = record("t", "adam", 0, [4, 2, 1])
    b = {**record("t", "adam", 0, [4, 2, 0.5]), "key": "other"}
    write(tmp_path, [a, b])
    with pytest.raises(CeloBenchError, match="more than one tuned 'adam' record for task t, seed 0"):
        score_records(Store(tmp_path).read(), ScoreConfig())


def test_wall_clock_speedup_formula():
    assert wall_clock_speedup(2.0, 0.01, 0.01) == pytest.approx(2.0)
    assert wall_clock_speedup(2.0, 0.01, 0.02) == pytest.approx(1.0)  # twice the cost per step
    assert wall_clock_speedup(0.0, 0.01, 0.02) == 0.0  # never reached the target
    for c_ref, c_opt in ((None, 0.01), (0.01, None), (0.01, 0.0), (NAN, 0.01)):
        assert np.isnan(wall_clock_speedup(2.0, c_ref, c_opt))


def test_wall_clock_speedup_equals_speedup_at_equal_cost_and_scales_by_the_cost_ratio(tmp_path):
    adam = decaying(11, 2.0, 0.5)
    fast = np.concatenate([adam[2:], np.full(2, adam[-1])])  # reaches adam's final loss at step 80
    write(tmp_path, [record("t", "adam", s, adam) for s in range(2)]
          + [record("t", "fast", s, fast) for s in range(2)])
    frame = Store(tmp_path).read()
    cfg = ScoreConfig(ema_alpha=0.0)
    same = score_records(frame, cfg, {("t", "adam"): 0.004, ("t", "fast"): 0.004}).scores
    np.testing.assert_allclose(same["wall_clock_speedup_score"], same["speedup_score"])
    assert one(same, "t", "fast", 0)["speedup_score"] == pytest.approx(100 / 80)
    dear = score_records(frame, cfg, {("t", "adam"): 0.004, ("t", "fast"): 0.010}).scores
    row = one(dear, "t", "fast", 0)
    assert row["wall_clock_speedup_score"] == pytest.approx(row["speedup_score"] * 0.4)  # (T c_ref)/(t c_opt)
    assert row["wall_clock_speedup_score"] == pytest.approx(100 * 0.004 / (80 * 0.010))
    ref = one(dear, "t", "adam", 0)
    assert ref["wall_clock_speedup_score"] == pytest.approx(ref["speedup_score"])
    # a missing timing (of the optimizer or of the reference) is NaN, never a guess
    part = score_records(frame, cfg, {("t", "adam"): 0.004}).scores
    assert np.isnan(one(part, "t", "fast", 0)["wall_clock_speedup_score"])
    assert not np.isnan(one(part, "t", "adam", 0)["wall_clock_speedup_score"])
    assert score_records(frame, cfg).scores["wall_clock_speedup_score"].isna().all()


def test_score_results_reads_the_timings_of_one_device_kind_only(tmp_path):
    reg = registry(["t"], ["adam", "fast"], steps=100)
    adam = decaying(11, 2.0, 0.5)
    fast = np.concatenate([adam[2:], np.full(2, adam[-1])])
    write(tmp_path / "r", [record("t", "adam", 0, adam), record("t", "fast", 0, fast)])
    bench = tmp_path / "b"
    bench.mkdir()
    for kind, c_fast in (("kind-a", 0.002), ("kind-b", 0.008)):
        doc = {"settings": {"device_kind": kind}, "rows": [
            {"task": "t", "optimizer": "adam", "seconds_per_step": 0.004},
            {"task": "t", "optimizer": "fast", "seconds_per_step": c_fast}]}
        timings.path(bench, kind).write_text(json.dumps(doc))
    cfg = ScoreConfig(ema_alpha=0.0)
    for kind, ratio in (("kind-a", 2.0), ("kind-b", 0.5)):
        res = score_results(tmp_path / "r", "fx", registry=reg, reps=20, config=cfg, bench_dir=bench,
                            device_kind=kind)
        row = one(res.scores, "t", "fast", 0)
        assert res.device_kind == kind
        assert row["wall_clock_speedup_score"] == pytest.approx(row["speedup_score"] * ratio)
        assert res.timings_missing == ()
    res = score_results(tmp_path / "r", "fx", registry=reg, reps=20, config=cfg, bench_dir=bench,
                        device_kind="kind-c")
    assert res.scores["wall_clock_speedup_score"].isna().all()
    assert res.timings_missing == (("t", "adam"), ("t", "fast"))
    note = next(n for n in res.notes if "wall-clock speedup" in n)
    assert "'kind-c'" in note and "t/adam, t/fast" in note
    assert f"celo-bench bench step-time --suite fx --out {bench}" in note
    # a file whose recorded kind is another one is not read under this name
    timings.path(bench, "kind-c").write_text(timings.path(bench, "kind-a").read_text())
    assert timings.read_step_times(bench, "kind-c") == {}
