"""Ties share a rank (standard competition ranking, "1, 1, 3") in `score`, the leaderboard and
the tables, whatever the names; and `score --format json` carries every criterion the
leaderboard shows, the wall-clock speedup included when step timings exist.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _score_fixtures import ENV, decaying, record, registry, write
from typer.testing import CliRunner

from celo_bench import timings
from celo_bench.aggregate import rank
from celo_bench.report import tables
from celo_bench.report.leaderboard import leaderboard_rows
from celo_bench.results import score_results
from celo_bench.suite import load_registry

LRS = (1e-3, 1e-2, 1e-1, 1.0)


def tied_grid(twin_a: str, twin_b: str) -> list[dict]:
    """Two optimizers with identical records on every task, seed and learning rate (so identical
    score matrices), both better than adam."""
    out = []
    for t_i, task in enumerate(("t1", "t2")):
        for s in range(3):
            for j, lr in enumerate(LRS):
                penalty = 1.0 + abs(j - 1) * 0.2 + 0.01 * s + 0.1 * t_i
                out.append(record(task, "adam", s, decaying(11, 2.0, 1.0 * penalty), lr=lr))
                for name in (twin_a, twin_b):
                    out.append(record(task, name, s, decaying(11, 2.0, 0.7 * penalty), lr=lr))
    return out


@pytest.mark.parametrize("twin_a, twin_b", [("beta", "gamma"), ("beta", "alpha"), ("zeta", "gamma")])
def test_two_optimizers_with_identical_scores_share_rank_1_and_the_next_is_3(tmp_path, twin_a, twin_b):
    write(tmp_path, tied_grid(twin_a, twin_b))
    res = score_results(tmp_path, "fx", registry=registry(["t1", "t2"], ["adam", twin_a, twin_b], steps=100,
                                                          lrs=LRS), reps=50)
    a = res.aggregate
    ranks = dict(zip(a["optimizer"], a["rank"], strict=True))
    assert ranks == {twin_a: 1, twin_b: 1, "adam": 3}  # renaming a twin changes no rank
    np.testing.assert_array_equal(res.matrices["final_loss"][twin_a].values,
                                  res.matrices["final_loss"][twin_b].values)
    # the leaderboard and the tables print the same ranks
    _, rows = leaderboard_rows(res)
    assert sorted(r[0] for r in rows) == ["1", "1", "3"]
    assert sorted(r[0] for r in tables.aggregate(res).rows) == ["1", "1", "3"]


def test_rank_is_standard_competition_ranking_and_the_unscored_come_last():
    table = pd.DataFrame({
        "optimizer": ["e", "d", "c", "b", "a", "z"],
        "final_loss_iqm": [1.2, 1.2, 1.0, 1.0, 1.0, np.nan],
        "speedup_iqm": [2.0, 2.0, 1.5, 1.5, 1.4, np.nan],
    })
    out = rank(table, "ignore")
    assert list(out["optimizer"]) == ["d", "e", "b", "c", "a", "z"]  # a name only orders a tie
    assert out["rank"].tolist()[:5] == [1, 1, 3, 3, 5] and pd.isna(out["rank"].iloc[5])
    # a tie on final loss is broken by the speedup (no shared rank then)
    table.loc[table["optimizer"] == "d", "speedup_iqm"] = 2.5
    assert rank(table, "ignore").set_index("optimizer")["rank"][["d", "e"]].tolist() == [1, 2]


LEADERBOARD_CRITERIA = (
    # what `leaderboard.md` shows, as `score --format json` names it
    "final_loss_iqm", "final_loss_ci", "final_loss_iqm_zero_filled", "speedup_iqm", "speedup_ci",
    "wall_clock_speedup_iqm", "wall_clock_speedup_ci", "final_loss_mean", "final_loss_optimality_gap",
    "speedup_mean", "speedup_optimality_gap", "poi_vs_reference", "poi_vs_reference_ci", "diverged", "failed",
    "runs_total", "tasks", "tasks_total", "kind_label",
)


def test_score_json_carries_every_criterion_of_the_leaderboard_with_the_wall_clock_speedup(tmp_path, monkeypatch):
    from celo_bench.cli import app

    tasks = ["smoke_digits_mlp", "smoke_digits_ae"]
    recs = [record(t, opt, s, decaying(6, 2.0, end), lr=lr, suite="smoke")
            for t in tasks for opt, end in (("adam", 1.0), ("sgd", 1.2)) for lr in (1e-3, 1e-2) for s in range(2)]
    write(tmp_path / "r", recs, load_registry())
    monkeypatch.chdir(tmp_path)  # `score` reads timings from ./benchmarks, as `bench step-time` writes them
    kind = ENV["device"]
    timings.DEFAULT_OUT.mkdir()
    timings.path(timings.DEFAULT_OUT, kind).write_text(json.dumps({"settings": {"device_kind": kind}, "rows": [
        {"task": t, "optimizer": o, "seconds_per_step": c} for t in tasks for o, c in (("adam", 0.004),
                                                                                        ("sgd", 0.002))]}))
    res = CliRunner().invoke(app, ["score", "--suite", "smoke", "--results", str(tmp_path / "r"), "--reps", "20",
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["device_kind"] == kind and doc["timings_missing"] == []
    for row in doc["rows"]:
        missing = [c for c in LEADERBOARD_CRITERIA if c not in row]
        assert not missing, missing
        assert row["wall_clock_speedup_iqm"] is not None
        lo, hi = row["wall_clock_speedup_ci"]
        assert lo <= row["wall_clock_speedup_iqm"] <= hi
    sgd = next(r for r in doc["rows"] if r["optimizer"] == "sgd")
    assert sgd["wall_clock_speedup_iqm"] == pytest.approx(2 * sgd["speedup_iqm"])  # half the cost per step
    text = CliRunner().invoke(app, ["score", "--suite", "smoke", "--results", str(tmp_path / "r"), "--reps", "20"])
    assert text.exit_code == 0, text.output
