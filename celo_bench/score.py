"""Per-run and per-task scoring against learning-rate-tuned Adam (the Celo paper's protocol).

The pipeline, each step a pure function of pandas frames read from the store:

1. **Smooth** the chosen loss series of every run with a NaN-safe EMA and take its
   **final loss** ``L`` (the last finite smoothed value).
2. **Tune**: for each (task, optimizer) pick the best hyper-parameter point by a rule
   (``mean_over_seeds``: lowest final loss averaged over seeds; ``per_seed``: each seed
   its own best point). Learned optimizers (``optimizer_kind == "learned"``) are not tuned.
3. **Score** each tuned (task, optimizer, seed) against the tuned reference (Adam) of the
   same task and seed:

   .. math::

       \\mathrm{FL} = L_\\mathrm{Adam} / L_o, \\qquad
       \\mathrm{SU} = T / t_o, \\quad t_o = \\min\\{t \\in \\text{eval steps}:
       \\tilde y_o(t) \\le L_\\mathrm{Adam}\\}

   with ``\\tilde y_o`` the smoothed curve and ``T`` the horizon. Both are > 1 when the
   optimizer beats tuned Adam; Adam scored against itself gets FL = 1 and SU >= 1.
4. **Wall-clock speedup** (optional, when per-step timings of one run are given):

   .. math::

       \\mathrm{SU_{time}} = \\frac{T \\cdot c_\\mathrm{Adam}}{t_o \\cdot c_o}
       = \\mathrm{SU} \\cdot c_\\mathrm{Adam} / c_o

   with ``c`` the seconds per training step of one run of that optimizer on that task,
   measured on one device kind (``celo-bench bench step-time``). SU_time is NaN where a
   timing is missing, 0 where SU is 0.

Conventions for runs that do not produce a usable number (all tested):

- **failed** runs (the job raised; no curve) have final loss NaN: FL = 0, SU = 0.
- **diverged** runs: with ``diverged="zero"`` (default) their final loss is +inf, so FL = 0
  and SU = 0, even if the curve reached the target before it blew up. With
  ``diverged="truncate"`` (the literal [3P] reading) the curve up to divergence is scored
  like any other: the last finite smoothed value is the final loss.
- Non-finite points inside an ``ok`` run are skipped by the EMA (a NaN keeps the previous
  smoothed value); a run whose series is entirely non-finite has final loss NaN (FL = 0).
- FL = 0 whenever ``L_Adam`` or ``L_o`` is non-finite or ``L_o <= 0``.
- SU = 0 when the target is never reached; SU = T when it is reached at step 0 (the
  degenerate case of a target above the initial loss); no cap unless ``speedup_cap`` is set.
- When tuned Adam itself has no finite final loss for a (task, seed), every optimizer gets
  FL = SU = 0 there and ``reference_ok`` is False (the target is undefined).
- Tuning ranks a non-finite final loss as +inf: with ``mean_over_seeds`` a point that
  diverged or failed on any seed loses to every point finite on all seeds. Ties go to the
  point that sorts first by its hyper-parameter values (e.g. the smaller learning rate).

Because every score is relative to tuned Adam only, adding an optimizer to the results
never changes another optimizer's scores.

References:
  Moudgil, Knyazev, Lajoie & Belilovsky, "Celo: Training Versatile Learned Optimizers on a
  Compute Diet", TMLR 2025, arXiv:2501.12670 (final-loss and speedup scores against tuned
  Adam, EMA smoothing). Dahl et al., "Benchmarking Neural Network Training Algorithms"
  (AlgoPerf), arXiv:2306.07179 (time-to-target scoring).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from celo_bench.errors import CeloBenchError
from celo_bench.suite import SELECTION_RULES, SuiteSpec

SERIES = ("eval_train_loss", "eval_valid_loss", "eval_test_loss", "train_loss")
DIVERGED_RULES = ("zero", "truncate")
UNTUNED_KINDS = ("learned",)


@dataclass(frozen=True)
class ScoreConfig:
    """Every scoring choice the paper leaves open, as a named setting.

    Attributes:
        series: Loss curve scored: ``eval_train_loss`` (paper: eval loss on the train split,
            every ``eval_every`` steps), ``eval_valid_loss``, ``eval_test_loss`` or
            ``train_loss`` (the minibatch loss at every step).
        ema_alpha: EMA constant: ``y[i] = a*y[i-1] + (1-a)*x[i]`` ([3P]: 0.9).
        selection: ``mean_over_seeds`` or ``per_seed`` (see module docstring).
        reference: The optimizer every score is relative to.
        diverged: ``zero`` or ``truncate`` (see module docstring).
        speedup_cap: Upper bound on SU, or None for no cap ([3P] applies none).
        average_seeds: Average the raw curves over seeds before smoothing (the protocol's
            optional variant): each (task, optimizer, point) then has one pseudo-run, seed 0.
    """

    series: str = "eval_train_loss"
    ema_alpha: float = 0.9
    selection: str = "mean_over_seeds"
    reference: str = "adam"
    diverged: str = "zero"
    speedup_cap: float | None = None
    average_seeds: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.series in SERIES, f"series must be one of {SERIES}, got '{self.series}'"),
            (0.0 <= self.ema_alpha < 1.0, f"ema_alpha must be in [0, 1), got {self.ema_alpha}"),
            (self.selection in SELECTION_RULES, f"selection must be one of {SELECTION_RULES}"),
            (self.diverged in DIVERGED_RULES, f"diverged must be one of {DIVERGED_RULES}"),
            (self.speedup_cap is None or self.speedup_cap > 0, "speedup_cap must be > 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise CeloBenchError(f"score settings: {msg}")

    @classmethod
    def for_suite(cls, suite: SuiteSpec, **overrides) -> ScoreConfig:
        """The suite's ``ema_alpha`` and ``selection``; None-valued overrides are ignored."""
        base = cls(ema_alpha=suite.ema_alpha, selection=suite.selection)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


# ---- per-curve formulas ---------------------------------------------------------------


def ema(x: np.ndarray, alpha: float) -> np.ndarray:
    """NaN-safe EMA along the last axis: ``y[0]=x[0]``, ``y[i]=a*y[i-1]+(1-a)*x[i]``.

    A non-finite ``x[i]`` keeps ``y[i-1]``; values before the first finite one are NaN.
    Hand-written (a loop over evaluations, vectorized over runs) because scipy's
    ``lfilter`` would propagate NaNs.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.empty_like(x)
    prev = np.full(x.shape[:-1], np.nan)
    for i in range(x.shape[-1]):
        xi = x[..., i]
        new = np.where(np.isnan(prev), xi, alpha * prev + (1.0 - alpha) * xi)
        prev = np.where(np.isfinite(xi), new, prev)
        y[..., i] = prev
    return y


def final_value(y: np.ndarray) -> float:
    """Last finite value of a 1-D curve, NaN if it has none."""
    finite = np.flatnonzero(np.isfinite(y))
    return float(y[finite[-1]]) if finite.size else float("nan")


def first_hit(y: np.ndarray, steps: np.ndarray, target: float) -> int | None:
    """First step whose smoothed value is <= target (None if never or target non-finite)."""
    if not np.isfinite(target):
        return None
    hit = np.flatnonzero(np.asarray(y) <= target)  # NaN compares False
    return int(steps[hit[0]]) if hit.size else None


def final_loss_score(l_ref: float, l_opt: float) -> float:
    """FL = L_ref / L_opt; 0 if either is non-finite or L_opt <= 0."""
    if not (np.isfinite(l_ref) and np.isfinite(l_opt)) or l_opt <= 0:
        return 0.0
    return float(l_ref / l_opt)


def speedup_score(num_steps: int, t_hit: int | None, cap: float | None = None) -> float:
    """SU = T / t_hit; 0 if never reached, T if reached at step 0; optionally capped."""
    if t_hit is None:
        return 0.0
    su = float(num_steps) if t_hit == 0 else num_steps / t_hit
    return min(su, cap) if cap is not None else su


# ---- per-run frame --------------------------------------------------------------------


def _series(row: pd.Series, series: str) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(row[series], dtype=np.float64)
    if series == "train_loss":
        return np.arange(values.size, dtype=np.int64), values
    return np.asarray(row["eval_steps"], dtype=np.int64), values


def _average_seeds(df: pd.DataFrame, series: str) -> pd.DataFrame:
    rows = []
    for _, g in df.groupby(["task", "optimizer", "hparam_id"], sort=True):
        first = g.iloc[0].copy()
        curves = [np.asarray(v, np.float64) for v, s in zip(g[series], g["status"], strict=True)
                  if s != "failed"]
        sizes = {c.size for c in curves}
        if curves and len(sizes) == 1:
            with warnings.catch_warnings():  # all-NaN columns are expected after divergence
                warnings.simplefilter("ignore", RuntimeWarning)
                first[series] = np.nanmean(np.stack(curves), axis=0)
        statuses = set(g["status"])
        first["status"] = "failed" if statuses == {"failed"} else ("diverged" if "diverged" in statuses else "ok")
        first["seed"] = 0
        rows.append(first)
    return pd.DataFrame(rows).reset_index(drop=True)


def run_frame(records: pd.DataFrame, config: ScoreConfig) -> pd.DataFrame:
    """One row per run: identity columns, status, smoothed curve and final loss.

    Columns added: ``steps`` and ``smoothed`` (arrays), ``final_loss`` (float; +inf for a
    diverged run under ``diverged="zero"``, NaN for a failed run) and ``point`` (a tuple of
    the hyper-parameter values in name order, used to sort and to find grid edges).
    """
    keep = ["task", "optimizer", "optimizer_kind", "hparams", "hparam_id", "learning_rate",
            "seed", "num_steps", "status", "message", "diverged_step", config.series]
    if config.series != "train_loss":
        keep.append("eval_steps")
    df = records[[c for c in dict.fromkeys(keep) if c in records.columns]].copy()
    if config.average_seeds and len(df):
        df = _average_seeds(df, config.series)
    df = df.reset_index(drop=True)
    status = df["status"].to_numpy()
    pairs = [(np.zeros(0, np.int64), np.zeros(0)) if st == "failed" else _series(row, config.series)
             for st, (_, row) in zip(status, df.iterrows(), strict=True)]
    smoothed: list[np.ndarray] = [np.zeros(0)] * len(df)
    by_len: dict[int, list[int]] = {}
    for i, (_, x) in enumerate(pairs):
        by_len.setdefault(x.size, []).append(i)
    for idx in by_len.values():  # one vectorized EMA per curve length
        ys = ema(np.stack([pairs[i][1] for i in idx]), config.ema_alpha)
        for i, y in zip(idx, ys, strict=True):
            smoothed[i] = y
    final = [
        float("nan") if st == "failed"
        else float("inf") if st == "diverged" and config.diverged == "zero"
        else final_value(y)
        for st, y in zip(status, smoothed, strict=True)
    ]
    df["steps"], df["smoothed"], df["final_loss"] = [p[0] for p in pairs], smoothed, final
    df["point"] = [_point(h) for h in df["hparams"]]
    return df.drop(columns=[c for c in (config.series, "eval_steps") if c in df.columns])


def _point(hparams: str | None) -> tuple[float, ...]:
    d = json.loads(hparams) if isinstance(hparams, str) and hparams else {}
    return tuple(float(d[k]) for k in sorted(d))


# ---- tuning ---------------------------------------------------------------------------


def _rank_loss(x: pd.Series) -> pd.Series:
    return x.where(np.isfinite(x), np.inf)


def select(runs: pd.DataFrame, selection: str) -> pd.DataFrame:
    """Mark the tuned runs: adds boolean ``selected`` (see module docstring for the rules)."""
    runs = runs.copy()
    runs["_rank"] = _rank_loss(runs["final_loss"])
    chosen: set[int] = set()
    for (_, _), g in runs.groupby(["task", "optimizer"], sort=False):
        untuned = g["optimizer_kind"].iloc[0] in UNTUNED_KINDS
        if untuned:
            # not tuned: no choice by results; the first stored point, deterministically
            first = min(g["point"])
            chosen.update(g.index[g["point"] == first])
        elif selection == "mean_over_seeds":
            means = g.groupby("point")["_rank"].mean()
            best = sorted(means.items(), key=lambda kv: (kv[1], kv[0]))[0][0]
            chosen.update(g.index[g["point"] == best])
        else:
            for _, gs in g.groupby("seed"):
                best = sorted(zip(gs["_rank"], gs["point"], gs.index, strict=True))[0]
                chosen.add(best[2])
    runs["selected"] = runs.index.isin(sorted(chosen))
    return runs.drop(columns="_rank")


def grid_edges(runs: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(task, optimizer) -> e.g. ``"learning_rate=max"`` when a tuned pick is at a grid edge.

    The grid is the set of stored values of each hyper-parameter; axes with one value and
    untuned optimizers are never flagged. Several flags are joined with ``", "``.
    """
    out = {}
    for (task, opt), g in runs.groupby(["task", "optimizer"], sort=True):
        if g["optimizer_kind"].iloc[0] in UNTUNED_KINDS:
            continue
        names = sorted(json.loads(g["hparams"].iloc[0] or "{}"))
        flags = []
        for i, name in enumerate(names):
            values = sorted({p[i] for p in g["point"]})
            if len(values) < 2:
                continue
            picked = {p[i] for p in g.loc[g["selected"], "point"]}
            flags += [f"{name}={end}" for end, v in (("min", values[0]), ("max", values[-1]))
                      if v in picked]
        if flags:
            out[(task, opt)] = ", ".join(flags)
    return out


# ---- scores against the reference -----------------------------------------------------

SCORE_COLUMNS = [
    "task", "optimizer", "optimizer_kind", "seed", "hparam_id", "status", "num_steps",
    "final_loss", "reference_loss", "reference_ok", "t_hit", "final_loss_score", "speedup_score",
]
WALL_CLOCK = "wall_clock_speedup_score"


def wall_clock_speedup(speedup: float, c_ref: float | None, c_opt: float | None) -> float:
    """SU_time = SU * c_ref / c_opt = (T * c_ref) / (t_hit * c_opt).

    `c_ref` and `c_opt` are seconds per step of one run (the reference's and the
    optimizer's, on the same task and device kind). NaN when either is missing, not
    finite or not positive; 0 when SU is 0 (the target was never reached).
    """
    ok = all(c is not None and np.isfinite(c) and c > 0 for c in (c_ref, c_opt))
    if not ok:
        return float("nan")
    return 0.0 if speedup == 0 else float(speedup) * float(c_ref) / float(c_opt)


def add_wall_clock(scores: pd.DataFrame, step_seconds: Mapping[tuple[str, str], float] | None,
                   reference: str) -> pd.DataFrame:
    """`scores` with a ``wall_clock_speedup_score`` column (see :func:`wall_clock_speedup`).

    `step_seconds` maps (task, optimizer) to seconds per step of one run, all of one device
    kind; rows whose optimizer or reference has no timing on their task get NaN.
    """
    times = dict(step_seconds or {})
    out = scores.copy()
    out[WALL_CLOCK] = [
        wall_clock_speedup(su, times.get((t, reference)), times.get((t, o)))
        for t, o, su in zip(out["task"], out["optimizer"], out["speedup_score"], strict=True)
    ]
    return out


def score_against_reference(runs: pd.DataFrame, config: ScoreConfig) -> pd.DataFrame:
    """One row per tuned (task, optimizer, seed): FL and SU vs the tuned reference.

    Tasks without any reference run get no rows (they cannot be scored); seeds whose
    tuned reference is missing are likewise absent. Use :func:`task_frame` to see them.
    """
    tuned = runs[runs["selected"]]
    ref = tuned[tuned["optimizer"] == config.reference].set_index(["task", "seed"])["final_loss"]
    if ref.index.has_duplicates:  # two records for one grid point: not one plan's records
        task, seed = ref.index[ref.index.duplicated()][0]
        raise CeloBenchError(
            f"more than one tuned '{config.reference}' record for task {task}, seed {seed}: the records "
            "are not those of one plan; score through `celo_bench.results.score_results` (selects the "
            "current plan's records by run key) or run `celo-bench prune`"
        )
    rows = []
    for _, r in tuned.iterrows():
        key = (r["task"], r["seed"])
        if key not in ref.index:
            continue
        l_ref = float(ref.loc[key])
        ref_ok = bool(np.isfinite(l_ref))
        t_hit = first_hit(r["smoothed"], r["steps"], l_ref) if ref_ok and np.isfinite(r["final_loss"]) else None
        rows.append({
            "task": r["task"], "optimizer": r["optimizer"], "optimizer_kind": r["optimizer_kind"],
            "seed": int(r["seed"]), "hparam_id": r["hparam_id"], "status": r["status"],
            "num_steps": int(r["num_steps"]), "final_loss": r["final_loss"],
            "reference_loss": l_ref, "reference_ok": ref_ok,
            "t_hit": t_hit if t_hit is not None else pd.NA,
            "final_loss_score": final_loss_score(l_ref, r["final_loss"]) if ref_ok else 0.0,
            "speedup_score": speedup_score(int(r["num_steps"]), t_hit, config.speedup_cap),
        })
    out = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    out["t_hit"] = out["t_hit"].astype("Int64")
    return out.sort_values(["task", "optimizer", "seed"]).reset_index(drop=True)


def task_frame(runs: pd.DataFrame, scores: pd.DataFrame, config: ScoreConfig) -> pd.DataFrame:
    """One row per (task, optimizer): the tuned point, grid-edge flag, score mean/std over
    seeds, and counts of every run by status (nothing is dropped silently).

    ``scored`` is False when the task has no reference run for this optimizer's seeds.
    """
    edges = grid_edges(runs)
    rows = []
    for (task, opt), g in runs.groupby(["task", "optimizer"], sort=True):
        sel = g[g["selected"]]
        sc = scores[(scores["task"] == task) & (scores["optimizer"] == opt)]
        fl, su = sc["final_loss_score"], sc["speedup_score"]
        rows.append({
            "task": task, "optimizer": opt, "optimizer_kind": g["optimizer_kind"].iloc[0],
            "tuned": g["optimizer_kind"].iloc[0] not in UNTUNED_KINDS,
            "hparam_id": ";".join(sorted(set(sel["hparam_id"]))),
            "edge": edges.get((task, opt), ""), "num_steps": int(g["num_steps"].max()),
            "points": g["point"].nunique(), "seeds": int(sc["seed"].nunique()),
            "scored": len(sc) > 0,
            "final_loss_mean": float(sel["final_loss"].mean()) if len(sel) else np.nan,
            "final_loss_score_mean": float(fl.mean()) if len(fl) else np.nan,
            "final_loss_score_std": float(fl.std(ddof=0)) if len(fl) else np.nan,
            "speedup_score_mean": float(su.mean()) if len(su) else np.nan,
            "speedup_score_std": float(su.std(ddof=0)) if len(su) else np.nan,
            "runs": len(g), "ok": int((g["status"] == "ok").sum()),
            "diverged": int((g["status"] == "diverged").sum()),
            "failed": int((g["status"] == "failed").sum()),
            "tuned_diverged": int((sel["status"] == "diverged").sum()),
            "tuned_failed": int((sel["status"] == "failed").sum()),
            "reference_missing": int((~sc["reference_ok"]).sum()) if len(sc) else 0,
        })
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RunScores:
    """Tidy frames of the per-run and per-task stages (see :func:`score_records`)."""

    runs: pd.DataFrame  # one row per stored run (+ smoothed curve, final_loss, selected)
    scores: pd.DataFrame  # one row per tuned (task, optimizer, seed): FL, SU, SU_time
    tasks: pd.DataFrame  # one row per (task, optimizer): summary, edges, failure counts


def score_records(records: pd.DataFrame, config: ScoreConfig,
                  step_seconds: Mapping[tuple[str, str], float] | None = None) -> RunScores:
    """Smooth, tune and score store records (``Store.read()`` frame) against the reference.

    `step_seconds`: (task, optimizer) -> seconds per step of one run on one device kind;
    the scores' ``wall_clock_speedup_score`` is NaN wherever a timing is missing.
    """
    runs = select(run_frame(records, config), config.selection)
    scores = add_wall_clock(score_against_reference(runs, config), step_seconds, config.reference)
    return RunScores(runs=runs, scores=scores, tasks=task_frame(runs, scores, config))
