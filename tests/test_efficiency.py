"""Sample-efficiency curves: the final-loss score along training, by hand on tiny frames, and its
IQM with bootstrap intervals through rliable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rliable import metrics

from celo_bench.efficiency import iqm_per_fraction, progress_scores, sample_efficiency


def _frames(status: str = "ok", diverged_step=None):
    """One task, one seed: tuned Adam (final loss 2.0) and `o`, eval every 10 of 40 steps."""
    steps = np.arange(0, 41, 10)
    runs = pd.DataFrame([
        {"task": "t", "optimizer": "adam", "seed": 0, "hparam_id": "adam[lr=1]", "selected": True,
         "status": "ok", "diverged_step": None, "steps": steps, "smoothed": np.array([8.0, 6.0, 4.0, 3.0, 2.0])},
        {"task": "t", "optimizer": "o", "seed": 0, "hparam_id": "o[lr=1]", "selected": True,
         "status": status, "diverged_step": diverged_step, "steps": steps,
         "smoothed": np.array([8.0, 4.0, 2.0, 1.0, 1.0])},
        {"task": "t", "optimizer": "o", "seed": 0, "hparam_id": "o[lr=2]", "selected": False,
         "status": "ok", "diverged_step": None, "steps": steps, "smoothed": np.full(5, 100.0)},
    ])
    scores = pd.DataFrame([{"task": "t", "optimizer": n, "seed": 0, "hparam_id": h, "num_steps": 40,
                            "reference_loss": 2.0, "reference_ok": True}
                           for n, h in (("adam", "adam[lr=1]"), ("o", "o[lr=1]"))])
    return runs, scores


def test_scores_along_training_by_hand():
    runs, scores = _frames()
    frame = progress_scores(runs, scores, fractions=(0.0, 0.25, 0.3, 0.5, 1.0)).set_index("optimizer")
    # L_adam(T) = 2 over the tuned run's smoothed value at the last eval step <= f * T
    np.testing.assert_allclose(frame.loc["adam", "scores"], [2 / 8, 2 / 6, 2 / 6, 2 / 4, 1.0])
    np.testing.assert_allclose(frame.loc["o", "scores"], [2 / 8, 2 / 4, 2 / 4, 1.0, 2.0])


@pytest.mark.parametrize("status, diverged_step, want", [
    ("diverged", 20, [0.25, 0.5, 0.0, 0.0]),  # zero from its divergence on
    ("diverged", None, [0.25, 0.5, 1.0, 0.0]),  # unknown step: zero at the end, as its final-loss score
    ("failed", None, [0.0, 0.0, 0.0, 0.0]),
])
def test_failed_and_diverged_runs_score_zero_as_in_scoring(status, diverged_step, want):
    runs, scores = _frames(status, diverged_step)
    frame = progress_scores(runs, scores, fractions=(0.0, 0.25, 0.5, 1.0)).set_index("optimizer")
    np.testing.assert_allclose(frame.loc["o", "scores"], want)


def test_iqm_per_fraction_is_rliables_iqm_of_each_slice():
    x = np.random.default_rng(0).normal(size=(5, 3, 4))
    want = [metrics.aggregate_iqm(x[..., j]) for j in range(4)]
    np.testing.assert_allclose(iqm_per_fraction(x), want)


def test_intervals_contain_the_point_and_are_seeded():
    rng = np.random.default_rng(1)
    rows = [{"task": t, "optimizer": o, "seed": s, "scores": np.linspace(0, 1 + 0.1 * k, 3) + rng.normal(0, .05, 3)}
            for k, o in enumerate(("a", "b")) for t in ("t1", "t2") for s in range(4)]
    frame = pd.DataFrame(rows)
    one = sample_efficiency(frame, fractions=(0.0, 0.5, 1.0), reps=50, seed=3)
    two = sample_efficiency(frame, fractions=(0.0, 0.5, 1.0), reps=50, seed=3)
    pd.testing.assert_frame_equal(one, two)
    assert len(one) == 6 and (one["low"] <= one["iqm"]).all() and (one["iqm"] <= one["high"]).all()
    cell = {(r.task, r.seed): r.scores for r in frame[frame["optimizer"] == "b"].itertuples()}
    arr = np.stack([np.stack([cell[(t, s)] for t in ("t1", "t2")]) for s in range(4)])  # seeds x tasks x fractions
    np.testing.assert_allclose(one.loc[one["optimizer"] == "b", "iqm"], iqm_per_fraction(arr))
