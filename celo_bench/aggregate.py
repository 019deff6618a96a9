"""Aggregate per-(task, seed) scores across tasks with rliable (as the Celo paper does).

Score matrices follow rliable's layout, ``[num_runs x num_tasks]`` per optimizer (one row
per seed, one column per task), and are validated on construction because the two axes
are easy to swap. Point estimates and 95% stratified-bootstrap intervals (resampling runs
within each task) come from ``rliable.library``; the metrics are IQM, median, mean and
optimality gap (gamma = 1).

Reproducibility: rliable 1.2.0 ignores its ``random_state`` argument and draws from
numpy's global generator, so every call is wrapped in :func:`seeded`, which seeds the
global generator and restores its previous state afterwards. Each optimizer is bootstrapped
in its own call with the same seed, so adding an optimizer never moves another's interval.

Probability of improvement is computed here, vectorized, rather than with rliable's
``probability_of_improvement`` under its bootstrap (a Python loop of Mann-Whitney tests,
~30 s per pair at 2000 repetitions on a 2-core CPU). The statistic is the same:
``P(X > Y) = mean_t [#(x > y) + #(x == y) / 2] / (n_x n_y)`` over common tasks, and the
bootstrap resamples the runs of X and of Y independently within each task, as rliable's
``StratifiedIndependentBootstrap`` does.

References:
  Agarwal, Schwarzer, Castro, Courville & Bellemare, "Deep Reinforcement Learning at the Edge
  of the Statistical Precipice", NeurIPS 2021, arXiv:2108.13264 (IQM, optimality gap,
  stratified bootstrap, performance profiles, probability of improvement). Moudgil et al.,
  "Celo: Training Versatile Learned Optimizers on a Compute Diet", arXiv:2501.12670.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from importlib import metadata

import numpy as np
import pandas as pd
from rliable import library as rly

from celo_bench.errors import CeloBenchError

METRICS = ("iqm", "median", "mean", "optimality_gap")
CRITERIA = {"final_loss": "final_loss_score", "speedup": "speedup_score",
            "wall_clock_speedup": "wall_clock_speedup_score"}
"""Criterion -> its score column. Wall-clock speedup (SU_time, see :mod:`celo_bench.score`)
has a matrix only for optimizers timed on every task they cover (with the reference timed
there too); elsewhere its aggregates are NaN. Ranking uses final loss, then speedup."""
DEFAULT_REPS = 2000
DEFAULT_SEED = 0


def check_matrix(values: np.ndarray, tasks: Sequence[str], name: str = "") -> np.ndarray:
    """Validate a score matrix of shape ``[num_runs x num_tasks]``; returns it as float64.

    Raises:
        CeloBenchError: wrong rank, a column count that is not the number of tasks (with a
            specific message when the matrix looks transposed), or non-finite scores.
    """
    m = np.asarray(values, dtype=np.float64)
    label = f"score matrix{' of ' + name if name else ''}"
    n_tasks = len(tasks)
    if m.ndim != 2:
        raise CeloBenchError(f"{label} must be 2-D [runs x tasks], got shape {m.shape}")
    if m.shape[1] != n_tasks:
        if m.shape[0] == n_tasks:
            raise CeloBenchError(
                f"{label} has shape {m.shape} but {n_tasks} tasks were given: it looks transposed. "
                f"rliable expects [runs x tasks] = ({m.shape[1]}, {n_tasks}); pass values.T"
            )
        raise CeloBenchError(f"{label} has {m.shape[1]} columns but {n_tasks} tasks were given")
    if m.shape[0] < 1:
        raise CeloBenchError(f"{label} has no runs")
    if not np.isfinite(m).all():
        raise CeloBenchError(f"{label} has non-finite scores; score failures as 0, never NaN")
    return m


@dataclass(frozen=True)
class ScoreMatrix:
    """Scores of one optimizer: ``values[run, task]``; runs are seeds present on every task."""

    values: np.ndarray
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", check_matrix(self.values, self.tasks, self.name))
        if len(self.seeds) != self.values.shape[0]:
            raise CeloBenchError(f"score matrix of {self.name}: {len(self.seeds)} seeds for "
                                 f"{self.values.shape[0]} rows")

    def on(self, tasks: Sequence[str]) -> np.ndarray:
        """The columns of `tasks`, in that order."""
        idx = [self.tasks.index(t) for t in tasks]
        return self.values[:, idx]


def score_matrices(scores: pd.DataFrame, column: str) -> dict[str, ScoreMatrix]:
    """Per optimizer, pivot a scores frame (one row per task, optimizer, seed) to a matrix.

    Only seeds scored on every task the optimizer covers become rows (the bootstrap needs a
    rectangle); a seed missing on one task is a missing record, not a failure, since
    failures are scored 0 upstream. A NaN score (a wall-clock speedup without a timing)
    drops its seed too, so an optimizer missing a timing on one task has no matrix. A
    frame without `column` gives no matrices.
    """
    out: dict[str, ScoreMatrix] = {}
    if column not in scores.columns:
        return out
    for opt, g in scores.groupby("optimizer", sort=True):
        table = g.pivot(index="seed", columns="task", values=column).sort_index()
        table = table.dropna(axis=0, how="any")
        if table.empty:
            continue
        out[opt] = ScoreMatrix(table.to_numpy(), tuple(table.columns), tuple(int(s) for s in table.index), opt)
    return out


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for the block and restore its state afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean over all runs and tasks, exactly ``rliable.metrics.aggregate_iqm``
    (``scipy.stats.trim_mean(x, 0.25, axis=None)``: drop ``int(n/4)`` values at each end).

    Hand-written because scipy's nan-policy wrapper costs ~0.4 ms per call, which is 70% of
    a bootstrap repetition; the tests check equality with rliable.
    """
    x = np.asarray(scores, dtype=np.float64).ravel()
    cut = int(0.25 * x.size)
    part = np.partition(x, (cut, x.size - cut - 1))
    return float(part[cut : x.size - cut].mean())


def metric_vector(scores: np.ndarray) -> np.ndarray:
    """[IQM, median, mean, optimality gap (gamma=1)] of a score matrix, as in rliable.metrics.

    IQM, mean and optimality gap pool all runs and tasks; the median is rliable's: the
    median over tasks of each task's mean score.
    """
    x = np.asarray(scores, dtype=np.float64)
    return np.array([iqm(x), np.median(x.mean(axis=0)), x.mean(), 1.0 - np.minimum(x, 1.0).mean()])


INTERVALS_VERSION = 1
"""Bump when :func:`metric_vector` or the bootstrap of :func:`interval_estimates` changes:
remembered intervals (:func:`interval_key`) of another version are never used."""


@functools.cache
def _bootstrap_libraries() -> dict[str, str]:
    """Versions of the libraries that draw and reduce the resamples (read once per process)."""
    return {lib: metadata.version(lib) for lib in ("rliable", "arch", "numpy")}


def interval_key(values: np.ndarray, *, reps: int, seed: int, confidence: float) -> str:
    """Content address of one optimizer's interval estimates: the score matrix's exact bytes and
    shape, the bootstrap's settings, :data:`INTERVALS_VERSION` and the versions of the libraries
    that draw and reduce the resamples (rliable, arch, numpy). Equal keys, equal intervals."""
    x = np.ascontiguousarray(values, dtype=np.float64)
    head = {"version": INTERVALS_VERSION, "metrics": METRICS, "reps": reps, "seed": seed,
            "confidence": confidence, "shape": x.shape,
            "libraries": _bootstrap_libraries()}
    h = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    h.update(x.tobytes())
    return h.hexdigest()


def interval_estimates(
    matrices: Mapping[str, ScoreMatrix], *, reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED,
    confidence: float = 0.95, memo: MutableMapping[str, list[list[float]]] | None = None,
) -> pd.DataFrame:
    """IQM, median, mean and optimality gap with percentile stratified-bootstrap intervals.

    Returns one row per (optimizer, metric) with ``point``, ``low``, ``high``. The interval
    is widened to contain its point estimate when the percentile interval misses it (this
    can happen for skewed statistics on very few runs); with enough runs it never triggers.

    Each optimizer's bootstrap is seeded alike, so its intervals depend on its own score
    matrix only. `memo` (:func:`interval_key` -> ``[[point, low, high], ...]`` per metric)
    serves those already computed and receives the new ones: the shipped reference results
    carry theirs (``celo_bench/references/<suite>/intervals.json``), so ranking one submission
    against them bootstraps only the submission (~0.3 s per optimizer and criterion at 2,000
    repetitions on one CPU core).
    """
    if reps < 1:
        raise CeloBenchError(f"bootstrap repetitions must be >= 1, got {reps}")
    rows = []
    for name, m in matrices.items():
        key = interval_key(m.values, reps=reps, seed=seed, confidence=confidence) if memo is not None else ""
        if memo is not None and key in memo:
            estimates = memo[key]
        else:
            with seeded(seed):
                point, ci = rly.get_interval_estimates(
                    {name: m.values}, metric_vector, reps=reps, confidence_interval_size=confidence
                )
            estimates = [[float(point[name][i]), float(ci[name][0, i]), float(ci[name][1, i])]
                         for i in range(len(METRICS))]
            if memo is not None:
                memo[key] = estimates
        for metric, (p, lo, hi) in zip(METRICS, estimates, strict=True):
            rows.append({"optimizer": name, "metric": metric, "point": p,
                         "low": min(lo, p), "high": max(hi, p)})
    return pd.DataFrame(rows, columns=["optimizer", "metric", "point", "low", "high"])


def performance_profiles(
    matrices: Mapping[str, ScoreMatrix], taus: Sequence[float], *, reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED, confidence: float = 0.95,
) -> pd.DataFrame:
    """Score distributions ``P(score > tau)`` with bootstrap bands; tidy rows per (optimizer, tau).

    The profile function is rliable's ``score_distributions`` vectorized over tau (rliable's
    own loops over tau with ``np.vectorize``: ~50x slower under the bootstrap).
    """
    taus = np.asarray(taus, dtype=np.float64)
    rows = []
    for name, m in matrices.items():
        with seeded(seed):
            prof, ci = rly.create_performance_profile(
                {name: m.values}, taus, custom_profile_func=score_distribution, reps=reps,
                confidence_interval_size=confidence,
            )
        for j, tau in enumerate(taus):
            rows.append({"optimizer": name, "tau": float(tau), "fraction": float(prof[name][j]),
                         "low": float(ci[name][0, j]), "high": float(ci[name][1, j])})
    return pd.DataFrame(rows, columns=["optimizer", "tau", "fraction", "low", "high"])


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Fraction of all (run, task) scores strictly above each tau."""
    return (np.asarray(scores)[..., None] > np.asarray(taus)).mean(axis=(0, 1))


def stratified_resamples(values: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """`reps` stratified-bootstrap resamples of a score matrix ``values[run, task]``: each task's
    column is drawn with replacement from its own runs (rliable's ``StratifiedBootstrap``).

    The one resampling of the package: probability of improvement here and the tier agreement
    of :mod:`celo_bench.compare` draw from it. One call draws ``reps * runs * tasks`` integers
    from `rng`. Returns shape ``(reps, runs, tasks)``.
    """
    n, t = values.shape
    idx = rng.integers(0, n, size=(reps, n, t))
    return values[idx, np.arange(t)]


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) for stacks ``x (..., n_x, T)``, ``y (..., n_y, T)`` -> shape (...)."""
    gt = (x[..., :, None, :] > y[..., None, :, :]).mean(axis=(-3, -2))
    eq = (x[..., :, None, :] == y[..., None, :, :]).mean(axis=(-3, -2))
    return (gt + 0.5 * eq).mean(axis=-1)


def probability_of_improvement(
    x: ScoreMatrix, y: ScoreMatrix, *, reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """P(X > Y) averaged over the tasks both cover, with a stratified-bootstrap interval.

    Equals ``rliable.metrics.probability_of_improvement`` (Mann-Whitney U / (n_x n_y), ties
    count one half) on the common tasks. Returns (point, low, high); NaNs if no common task.
    """
    common = [t for t in x.tasks if t in y.tasks]
    if not common:
        return (float("nan"),) * 3
    xv, yv = x.on(common), y.on(common)
    point = float(_poi(xv, yv))
    rng = np.random.default_rng(seed)
    chunk = max(1, int(2e7 // (xv.shape[0] * yv.shape[0] * len(common))))
    stats = []
    for start in range(0, reps, chunk):
        n = min(chunk, reps - start)
        bx = stratified_resamples(xv, n, rng)  # X then Y, chunk by chunk: the draws' order is fixed
        stats.append(_poi(bx, stratified_resamples(yv, n, rng)))
    boot = np.concatenate(stats)
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return point, float(min(lo, point)), float(max(hi, point))


def poi_matrix(matrices: Mapping[str, ScoreMatrix]) -> pd.DataFrame:
    """Point estimates of P(row > column) for every ordered pair (no bootstrap; fast)."""
    names = list(matrices)
    data = np.full((len(names), len(names)), np.nan)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            common = [t for t in matrices[a].tasks if t in matrices[b].tasks]
            if common:
                data[i, j] = float(_poi(matrices[a].on(common), matrices[b].on(common)))
    return pd.DataFrame(data, index=pd.Index(names, name="optimizer"), columns=names)


# ---- the aggregate table --------------------------------------------------------------

COUNT_COLUMNS = ("runs_total", "diverged", "failed", "tuned_diverged", "tuned_failed")

COVERAGE_RULES = {
    "rank-complete-first": "they rank after every complete row, among themselves by the IQM with each "
                           "missing task scored 0 (AlgoPerf's rule), shown beside",
    "zero-fill": "every row ranks by the IQM with each missing task scored 0 (AlgoPerf's rule)",
    "ignore": "rows rank by the IQM over the tasks they cover, whatever their coverage",
}
"""How rows without a score on every task of the suite rank (the one-line text is what
reports print). ``rank-complete-first`` (default): complete rows first, by IQM; then the
incomplete rows by their zero-filled IQM. ``zero-fill``: every row by its zero-filled IQM
(AlgoPerf, "Benchmarking Neural Network Training Algorithms", arXiv:2306.07179, scores a
missing workload as failed). ``ignore``: by the IQM over the covered tasks (compares
aggregates over different task sets as equals; for diagnosis only)."""
DEFAULT_COVERAGE_RULE = "rank-complete-first"


def zero_filled(m: ScoreMatrix, tasks: Sequence[str]) -> np.ndarray:
    """``[runs x len(tasks)]``: the matrix's columns on `tasks`, 0 for a task it does not cover."""
    out = np.zeros((m.values.shape[0], len(tasks)))
    for j, t in enumerate(tasks):
        if t in m.tasks:
            out[:, j] = m.values[:, m.tasks.index(t)]
    return out


def rank(table: pd.DataFrame, coverage_rule: str = DEFAULT_COVERAGE_RULE) -> pd.DataFrame:
    """Leaderboard order under `coverage_rule` (see :data:`COVERAGE_RULES`); ties go to the
    speedup IQM; optimizers without a score come last. Adds a 1-based ``rank`` (NA when
    unscored) by standard competition ranking: rows equal on every criterion share a rank
    and the next row's rank counts them all ("1, 1, 3"); the name only orders the rows of a
    tie, so renaming an optimizer never changes a rank.

    Raises:
        CeloBenchError: an unknown rule.
    """
    if coverage_rule not in COVERAGE_RULES:
        raise CeloBenchError(f"coverage rule must be one of {', '.join(COVERAGE_RULES)}, got '{coverage_rule}'")
    t = table.copy()
    has_zf = "final_loss_iqm_zero_filled" in t and "complete" in t
    t["_group"], t["_fl"], t["_su"] = 0, t["final_loss_iqm"], t["speedup_iqm"]
    if has_zf and coverage_rule == "rank-complete-first":
        # complete rows rank by IQM; incomplete ones after them, by the zero-filled IQM
        part = ~t["complete"].astype(bool)
        t["_group"] = part.astype(int)
        t.loc[part, "_fl"] = t.loc[part, "final_loss_iqm_zero_filled"]
        t.loc[part, "_su"] = t.loc[part, "speedup_iqm_zero_filled"]
    elif has_zf and coverage_rule == "zero-fill":
        t["_fl"], t["_su"] = t["final_loss_iqm_zero_filled"], t["speedup_iqm_zero_filled"]
    t.loc[t["final_loss_iqm"].isna(), "_fl"] = np.nan
    t = t.sort_values(
        ["_group", "_fl", "_su", "optimizer"], ascending=[True, False, False, True],
        na_position="last", kind="mergesort",
    )
    t = t.sort_values("_fl", key=lambda s: s.isna(), kind="mergesort")  # unscored rows last
    t = t.reset_index(drop=True)
    ranks: list = []
    previous = None
    for i, (scored, *crit) in enumerate(zip(t["final_loss_iqm"].notna(), t["_group"], t["_fl"], t["_su"],
                                            strict=True)):
        key = tuple("nan" if pd.isna(c) else float(c) for c in crit)
        if not scored:
            ranks.append(pd.NA)
        else:
            ranks.append(ranks[-1] if key == previous else i + 1)
        previous = key
    t = t.drop(columns=["_group", "_fl", "_su"])
    t.insert(0, "rank", pd.array(ranks, dtype="Int64"))
    return t


def aggregate_table(
    scores: pd.DataFrame, tasks: pd.DataFrame, *, reference: str = "adam", reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED, confidence: float = 0.95, suite_tasks: Sequence[str] | None = None,
    coverage_rule: str = DEFAULT_COVERAGE_RULE, memo: MutableMapping[str, list[list[float]]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, ScoreMatrix]]]:
    """One ranked row per optimizer, a tidy probability-of-improvement frame, the matrices.

    Row columns: ``optimizer, optimizer_kind, tasks`` (scored), ``tasks_total`` (tasks of
    the suite: `suite_tasks`, default every task in `tasks`), ``coverage`` (their ratio),
    ``complete`` (a score on every task), ``runs`` (rows of the score matrix: seeds), then
    ``{criterion}_{metric}[_low|_high]`` for criterion in :data:`CRITERIA` and metric in
    :data:`METRICS` (over the covered tasks), ``{criterion}_iqm_zero_filled`` (IQM with a
    missing task scored 0), the run counts of :data:`COUNT_COLUMNS`, ``edges`` (tasks whose
    tuned point is at a grid edge) and ``poi_vs_reference`` / ``poi_vs_top`` (final-loss
    scores, with ``_low``/``_high``). Rows are ranked by :func:`rank` under `coverage_rule`.
    `memo` is :func:`interval_estimates`'.
    """
    if coverage_rule not in COVERAGE_RULES:
        raise CeloBenchError(f"coverage rule must be one of {', '.join(COVERAGE_RULES)}, got '{coverage_rule}'")
    mats = {crit: score_matrices(scores, col) for crit, col in CRITERIA.items()}
    all_tasks = list(suite_tasks) if suite_tasks is not None else sorted(set(tasks["task"]))
    rows: dict[str, dict] = {}
    n_tasks = len(all_tasks)
    for opt, g in tasks.groupby("optimizer", sort=True):
        m = mats["final_loss"].get(opt)
        covered = len([t for t in m.tasks if t in all_tasks]) if m else 0
        rows[opt] = {
            "optimizer": opt, "optimizer_kind": g["optimizer_kind"].iloc[0],
            "tasks": covered, "tasks_total": n_tasks,
            "coverage": covered / n_tasks if n_tasks else 0.0,
            "complete": bool(m) and covered == n_tasks,
            "runs": m.values.shape[0] if m else 0,
            "runs_total": int(g["runs"].sum()), "diverged": int(g["diverged"].sum()),
            "failed": int(g["failed"].sum()), "tuned_diverged": int(g["tuned_diverged"].sum()),
            "tuned_failed": int(g["tuned_failed"].sum()), "edges": int((g["edge"] != "").sum()),
        }
        for crit in CRITERIA:
            for metric in METRICS:
                for suffix in ("", "_low", "_high"):
                    rows[opt][f"{crit}_{metric}{suffix}"] = np.nan
            mc = mats[crit].get(opt)
            rows[opt][f"{crit}_iqm_zero_filled"] = iqm(zero_filled(mc, all_tasks)) if mc and n_tasks else np.nan
    for crit, by_opt in mats.items():
        est = interval_estimates(by_opt, reps=reps, seed=seed, confidence=confidence, memo=memo)
        for r in est.itertuples(index=False):
            base = f"{crit}_{r.metric}"
            rows[r.optimizer] |= {base: r.point, f"{base}_low": r.low, f"{base}_high": r.high}
    table = rank(pd.DataFrame(list(rows.values())), coverage_rule)
    top = table["optimizer"].iloc[0] if len(table) and pd.notna(table["rank"].iloc[0]) else None
    poi = poi_frame(mats, [v for v in (reference, top) if v], reps=reps, seed=seed, confidence=confidence)
    for label, versus in (("reference", reference), ("top", top)):
        sub = poi[(poi["criterion"] == "final_loss") & (poi["versus"] == versus)].set_index("optimizer")
        for suffix, col in (("", "point"), ("_low", "low"), ("_high", "high")):
            table[f"poi_vs_{label}{suffix}"] = table["optimizer"].map(sub[col]) if len(sub) else np.nan
    table["top"] = top
    return table, poi, mats


def poi_frame(
    mats: Mapping[str, Mapping[str, ScoreMatrix]], versus: Sequence[str], *, reps: int,
    seed: int, confidence: float,
) -> pd.DataFrame:
    """P(optimizer > v) with intervals for each criterion, optimizer and v in `versus`."""
    rows = []
    for crit, by_opt in mats.items():
        for v in dict.fromkeys(versus):
            if v not in by_opt:
                continue
            for opt, m in by_opt.items():
                p, lo, hi = probability_of_improvement(m, by_opt[v], reps=reps, seed=seed, confidence=confidence)
                rows.append({"criterion": crit, "optimizer": opt, "versus": v,
                             "point": p, "low": lo, "high": hi})
    return pd.DataFrame(rows, columns=["criterion", "optimizer", "versus", "point", "low", "high"])
