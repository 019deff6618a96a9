"""Sample-efficiency curves: the IQM of the final-loss score along training, with 95% CIs.

rliable plots an aggregate score against training progress with stratified-bootstrap bands
("sample-efficiency curves"); here the score at a fraction ``p`` of the horizon is the
final-loss score of the run stopped there:

.. math::

    \\mathrm{FL}(p) = L_\\mathrm{Adam} / \\tilde y_o(t_p), \\qquad
    t_p = \\max\\{t \\in \\text{eval steps}: t \\le p \\cdot T\\}

with ``L_Adam`` the tuned reference's final loss on the same task and seed (the target of
:mod:`celo_bench.score`), ``\\tilde y_o`` the tuned run's smoothed curve and ``T`` the task's
horizon. Progress is a fraction of each task's horizon because tasks have different horizons.
At ``p = 1`` it is the final-loss score, so each curve ends at the optimizer's final-loss
IQM (up to the bootstrap); tuned Adam's curve ends at 1, and a curve that reaches 1 earlier
trains faster than tuned Adam. The conventions of :mod:`celo_bench.score` hold at every point:
a failed run scores 0 throughout, a diverged run (``diverged="zero"``) scores 0 from its
divergence on (at the end at least), and so does every point without a finite positive value.

:func:`progress_scores` gives the per-(task, optimizer, seed) scores (pure function of the
scored frames), :func:`sample_efficiency` their IQM per fraction with percentile
stratified-bootstrap intervals from ``rliable.library.get_interval_estimates`` over
``[num_runs x num_tasks x num_fractions]`` arrays, seeded as in :mod:`celo_bench.aggregate`.

References:
  Agarwal et al., "Deep Reinforcement Learning at the Edge of the Statistical Precipice",
  NeurIPS 2021, arXiv:2108.13264 (sample-efficiency curves of IQM with stratified-bootstrap
  CIs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from rliable import library as rly

from celo_bench.aggregate import DEFAULT_REPS, DEFAULT_SEED, seeded
from celo_bench.score import final_loss_score

FRACTIONS = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))
"""Fractions of the horizon the curves are drawn at (every 5%)."""


def _curve_scores(steps: np.ndarray, y: np.ndarray, horizon: int, l_ref: float, fractions: np.ndarray,
                  status: str, diverged_step: float | None, diverged_rule: str) -> np.ndarray:
    """FL(p) of one tuned run at each fraction (see the module docstring)."""
    out = np.zeros(fractions.size)
    if status == "failed" or not np.isfinite(l_ref) or not np.size(y):
        return out
    steps = np.asarray(steps)
    for i, p in enumerate(fractions):
        idx = np.searchsorted(steps, p * horizon + 1e-9, side="right") - 1
        out[i] = final_loss_score(l_ref, float(y[idx])) if idx >= 0 else 0.0
    if status == "diverged" and diverged_rule == "zero":
        out[-1] = 0.0 if fractions[-1] >= 1.0 else out[-1]
        if diverged_step is not None and np.isfinite(diverged_step):
            out[fractions * horizon >= diverged_step] = 0.0
    return out


def progress_scores(runs: pd.DataFrame, scores: pd.DataFrame, *, fractions: Sequence[float] = FRACTIONS,
                    optimizers: Sequence[str] | None = None, diverged: str = "zero") -> pd.DataFrame:
    """One row per scored (task, optimizer, seed): ``scores``, FL at each of `fractions`.

    Args:
        runs: :attr:`celo_bench.results.Results.runs` (smoothed curves, ``selected``).
        scores: :attr:`celo_bench.results.Results.scores` (the tuned runs and their ``reference_loss``).
        fractions: Fractions of the horizon, ascending, in [0, 1].
        optimizers: Only these (default: every scored one).
        diverged: The scoring rule for diverged runs (:attr:`celo_bench.score.ScoreConfig.diverged`).
    """
    fr = np.asarray(fractions, dtype=np.float64)
    sc = scores if optimizers is None else scores[scores["optimizer"].isin(list(optimizers))]
    tuned = runs[runs["selected"]].set_index(["task", "optimizer", "seed", "hparam_id"])
    rows = []
    for r in sc.itertuples(index=False):
        key = (r.task, r.optimizer, r.seed, r.hparam_id)
        if key not in tuned.index:
            continue
        run = tuned.loc[key]
        run = run.iloc[0] if isinstance(run, pd.DataFrame) else run
        div = run.get("diverged_step")
        div = float(div) if div is not None and pd.notna(div) else None
        rows.append({"task": r.task, "optimizer": r.optimizer, "seed": int(r.seed), "scores": _curve_scores(
            run["steps"], run["smoothed"], int(r.num_steps), float(r.reference_loss) if r.reference_ok else np.nan,
            fr, str(run["status"]), div, diverged)})
    return pd.DataFrame(rows, columns=["task", "optimizer", "seed", "scores"])


def iqm_per_fraction(scores: np.ndarray) -> np.ndarray:
    """IQM over runs and tasks of ``[num_runs x num_tasks x num_fractions]`` scores, one per fraction
    (rliable's ``aggregate_iqm`` of ``scores[..., j]`` for each j, vectorized)."""
    x = np.asarray(scores, dtype=np.float64)
    x = x.reshape(-1, x.shape[-1])
    n = x.shape[0]
    cut = int(0.25 * n)
    part = np.sort(x, axis=0)
    return part[cut : n - cut].mean(axis=0)


def sample_efficiency(frame: pd.DataFrame, *, fractions: Sequence[float] = FRACTIONS, reps: int = DEFAULT_REPS,
                      seed: int = DEFAULT_SEED, confidence: float = 0.95) -> pd.DataFrame:
    """IQM of :func:`progress_scores` at each fraction with stratified-bootstrap intervals.

    Each optimizer's array is ``[seeds x tasks x fractions]`` over the tasks it covers, keeping
    the seeds scored on all of them (as :func:`celo_bench.aggregate.score_matrices` does), and
    is bootstrapped in its own seeded call. Returns tidy rows ``optimizer, fraction, iqm, low,
    high``.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    rows = []
    for opt, g in frame.groupby("optimizer", sort=True):
        tasks = sorted(set(g["task"]))
        seeds = sorted(set.intersection(*(set(g.loc[g["task"] == t, "seed"]) for t in tasks)))
        if not seeds:
            continue
        cell = {(t, s): v for t, s, v in zip(g["task"], g["seed"], g["scores"], strict=True)}
        arr = np.stack([np.stack([cell[(t, s)] for t in tasks]) for s in seeds])  # seeds x tasks x fractions
        with seeded(seed):
            point, ci = rly.get_interval_estimates({opt: arr}, iqm_per_fraction, reps=reps,
                                                   confidence_interval_size=confidence)
        for j, p in enumerate(fr):
            v = float(point[opt][j])
            rows.append({"optimizer": opt, "fraction": float(p), "iqm": v,
                         "low": min(float(ci[opt][0, j]), v), "high": max(float(ci[opt][1, j]), v)})
    return pd.DataFrame(rows, columns=["optimizer", "fraction", "iqm", "low", "high"])


__all__ = ["FRACTIONS", "iqm_per_fraction", "progress_scores", "sample_efficiency"]
