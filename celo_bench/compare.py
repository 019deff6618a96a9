"""Tier agreement: how far the ranking of one suite (a cheap tier) predicts another's.

For the optimizers both suites scored, per criterion (final loss, speedup, and wall-clock
speedup where both suites have it), the IQM of each suite ranks the optimizers, and the
two rankings are compared with Kendall's tau-b (``scipy.stats.kendalltau``) and Spearman's
rho (``scipy.stats.spearmanr``), plus the overlap of the two top-k sets (k = 5).

Intervals: a percentile bootstrap (95 % by default). Each repetition resamples, for every
optimizer of each suite, its seeds within each task (the stratified bootstrap of rliable:
each task's column of the ``[seeds x tasks]`` score matrix is drawn with replacement on its
own), recomputes every IQM of both suites and then tau and rho. Repetitions where a
statistic is undefined (a constant ranking) are left out of its interval. The interval is
widened to contain its point estimate when the percentile interval misses it.

    >>> import numpy as np
    >>> from celo_bench.compare import kendall_spearman
    >>> kendall_spearman(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    (1.0, 1.0)

References:
  Kendall, "A New Measure of Rank Correlation", Biometrika 1938 (tau). Agarwal et al.,
  "Deep Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021,
  arXiv:2108.13264 (IQM, stratified bootstrap). Moudgil et al., "Celo: Training Versatile
  Learned Optimizers on a Compute Diet", arXiv:2501.12670 (the scores ranked).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from celo_bench.aggregate import (
    CRITERIA,
    DEFAULT_REPS,
    DEFAULT_SEED,
    ScoreMatrix,
    iqm,
    stratified_resamples,
)
from celo_bench.errors import CeloBenchError
from celo_bench.results import Results

TOP_K = 5
MIN_OPTIMIZERS = 5
"""Below this many common optimizers an agreement is printed with a caveat (τ over 4 optimizers
has 6 pairs; its interval says little)."""


@dataclass(frozen=True)
class Agreement:
    """Agreement of two suites' rankings on one criterion.

    ``optimizers`` are the common ones (sorted by name); ``iqm_a``/``iqm_b`` their IQMs with
    ``ci_a``/``ci_b`` (shape ``(n, 2)``: low, high) from each suite's aggregate; ``kendall``
    and ``spearman`` are ``(point, low, high)`` (NaN when fewer than two optimizers or a
    constant ranking); ``top_overlap`` is ``|top-k(A) & top-k(B)|`` with ``k`` = ``min(5, n)``.
    """

    criterion: str
    optimizers: tuple[str, ...]
    iqm_a: np.ndarray
    iqm_b: np.ndarray
    ci_a: np.ndarray
    ci_b: np.ndarray
    kendall: tuple[float, float, float]
    spearman: tuple[float, float, float]
    k: int
    top_overlap: int
    top_a: tuple[str, ...] = ()
    top_b: tuple[str, ...] = ()

    def as_json(self) -> dict:
        def num(x: float) -> float | None:
            return None if not math.isfinite(x) else float(x)

        return {
            "criterion": self.criterion, "optimizers": list(self.optimizers),
            "iqm_a": [num(x) for x in self.iqm_a], "iqm_b": [num(x) for x in self.iqm_b],
            "ci_a": [[num(x) for x in r] for r in self.ci_a], "ci_b": [[num(x) for x in r] for r in self.ci_b],
            "kendall_tau": {"point": num(self.kendall[0]), "ci": [num(self.kendall[1]), num(self.kendall[2])]},
            "spearman_rho": {"point": num(self.spearman[0]), "ci": [num(self.spearman[1]), num(self.spearman[2])]},
            "top_k": self.k, "top_k_overlap": self.top_overlap,
            "top_a": list(self.top_a), "top_b": list(self.top_b),
        }


@dataclass(frozen=True)
class Comparison:
    """Agreement of suite `a` with suite `b`, one :class:`Agreement` per criterion both have."""

    a: str
    b: str
    reps: int
    seed: int
    confidence: float
    agreements: tuple[Agreement, ...]
    only_a: tuple[str, ...] = ()
    only_b: tuple[str, ...] = ()
    device_kind: dict[str, str] = field(default_factory=dict)
    coverage: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per suite: (tasks with scores, tasks in the suite)."""

    def caveats(self) -> list[str]:
        """One line per reason to read the agreement with care: a suite with results on only
        some of its tasks, or fewer than :data:`MIN_OPTIMIZERS` common optimizers."""
        out = [f"'{name}' has scores on {k} of its {n} tasks: its IQMs cover those tasks only"
               for name, (k, n) in self.coverage.items() if k < n]
        n_common = len(self.agreements[0].optimizers) if self.agreements else 0
        if n_common < MIN_OPTIMIZERS:
            out.append(f"only {n_common} common optimizers: an agreement over so few says little")
        return out

    def as_json(self) -> dict:
        return {"suite_a": self.a, "suite_b": self.b, "reps": self.reps, "seed": self.seed,
                "confidence": self.confidence, "only_in_a": list(self.only_a), "only_in_b": list(self.only_b),
                "coverage": {k: {"tasks_scored": v[0], "tasks": v[1]} for k, v in self.coverage.items()},
                "caveats": self.caveats(),
                "criteria": [g.as_json() for g in self.agreements]}


def kendall_spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(Kendall's tau-b, Spearman's rho) of two score vectors of one length; NaN if undefined.

    Rounded to 12 decimals, so identical rankings give exactly 1 (scipy's tau-b can be
    1 - 1e-16)."""
    if len(x) < 2:
        return float("nan"), float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = stats.kendalltau(x, y).statistic
        rho = stats.spearmanr(x, y).statistic
    return round(float(tau), 12), round(float(rho), 12)


def top_k(names: Sequence[str], values: np.ndarray, k: int) -> tuple[str, ...]:
    """The `k` names of highest value (ties: by name)."""
    order = sorted(range(len(names)), key=lambda i: (-values[i], names[i]))
    return tuple(names[i] for i in order[:k])


def boot_iqms(m: ScoreMatrix, reps: int, rng: np.random.Generator) -> np.ndarray:
    """IQMs of `reps` stratified resamples of `m` (seeds drawn within each task); shape ``(reps,)``."""
    n, t = m.values.shape
    sample = stratified_resamples(m.values, reps, rng).reshape(reps, n * t)
    cut = int(0.25 * n * t)
    return np.sort(sample, axis=1)[:, cut: n * t - cut].mean(axis=1)


def _interval(boot: np.ndarray, point: float, confidence: float) -> tuple[float, float, float]:
    boot = boot[np.isfinite(boot)]
    if not math.isfinite(point) or boot.size == 0:
        return point, float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return point, float(min(lo, point)), float(max(hi, point))


def agreement(
    criterion: str, a: Mapping[str, ScoreMatrix], b: Mapping[str, ScoreMatrix], *,
    ci_a: Mapping[str, tuple[float, float]] | None = None, ci_b: Mapping[str, tuple[float, float]] | None = None,
    reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED, confidence: float = 0.95, k: int = TOP_K,
) -> Agreement:
    """Rank agreement of the optimizers both `a` and `b` have matrices for (see module docstring).

    Args:
        criterion: Its name (a key of :data:`celo_bench.aggregate.CRITERIA`).
        a, b: optimizer -> score matrix ``[seeds x tasks]`` of each suite.
        ci_a, ci_b: optimizer -> (low, high) of its IQM (default: NaN).
        reps, seed, confidence: Bootstrap repetitions, seed and interval coverage.
        k: Size of the top sets compared.

    Raises:
        CeloBenchError: no optimizer has a matrix in both.
    """
    names = tuple(sorted(set(a) & set(b)))
    if not names:
        raise CeloBenchError(f"no optimizer has {criterion.replace('_', ' ')} scores in both suites: nothing to "
                             "compare; score the same optimizers in both (`celo-bench run --suite S -o NAME`)")
    ia = np.array([iqm(a[n].values) for n in names])
    ib = np.array([iqm(b[n].values) for n in names])
    tau, rho = kendall_spearman(ia, ib)
    rng = np.random.default_rng(seed)
    ba = np.stack([boot_iqms(a[n], reps, rng) for n in names], axis=1)  # (reps, n)
    bb = np.stack([boot_iqms(b[n], reps, rng) for n in names], axis=1)
    pairs = [kendall_spearman(x, y) for x, y in zip(ba, bb, strict=True)] if len(names) > 1 else []
    boot = np.array(pairs, dtype=np.float64).reshape(-1, 2)
    kk = min(k, len(names))
    ta, tb = top_k(names, ia, kk), top_k(names, ib, kk)
    nan2 = (float("nan"), float("nan"))
    return Agreement(
        criterion=criterion, optimizers=names, iqm_a=ia, iqm_b=ib,
        ci_a=np.array([(ci_a or {}).get(n, nan2) for n in names], dtype=np.float64).reshape(-1, 2),
        ci_b=np.array([(ci_b or {}).get(n, nan2) for n in names], dtype=np.float64).reshape(-1, 2),
        kendall=_interval(boot[:, 0], tau, confidence), spearman=_interval(boot[:, 1], rho, confidence),
        k=kk, top_overlap=len(set(ta) & set(tb)), top_a=ta, top_b=tb,
    )


def _cis(res: Results, criterion: str) -> dict[str, tuple[float, float]]:
    a = res.aggregate.set_index("optimizer")
    lo, hi = f"{criterion}_iqm_low", f"{criterion}_iqm_high"
    if lo not in a.columns:
        return {}
    return {n: (float(a.loc[n, lo]), float(a.loc[n, hi])) for n in a.index}


def compare(a: Results, b: Results, *, reps: int | None = None, seed: int | None = None,
            confidence: float | None = None) -> Comparison:
    """Agreement of two scored suites on every criterion both have scores for.

    Bootstrap settings default to `a`'s. Wall-clock speedup is compared only when both
    suites have it for at least one common optimizer (timings of each suite's own device
    kind; the two kinds may differ and are reported).

    Raises:
        CeloBenchError: the suites share no scored optimizer.
    """
    reps = a.reps if reps is None else reps
    seed = a.seed if seed is None else seed
    confidence = a.confidence if confidence is None else confidence
    scored_a = set(a.matrices.get("final_loss", {}))
    scored_b = set(b.matrices.get("final_loss", {}))
    if not scored_a & scored_b:
        raise CeloBenchError(
            f"suites '{a.suite}' and '{b.suite}' have no scored optimizer in common ('{a.suite}': "
            f"{', '.join(sorted(scored_a)) or 'none'}; '{b.suite}': {', '.join(sorted(scored_b)) or 'none'}): "
            "run the same optimizers in both suites"
        )
    out = []
    for crit in CRITERIA:
        ma, mb = a.matrices.get(crit, {}), b.matrices.get(crit, {})
        if crit != "final_loss" and not set(ma) & set(mb):
            continue
        out.append(agreement(crit, ma, mb, ci_a=_cis(a, crit), ci_b=_cis(b, crit), reps=reps, seed=seed,
                             confidence=confidence))
    return Comparison(a=a.suite, b=b.suite, reps=reps, seed=seed, confidence=confidence, agreements=tuple(out),
                      only_a=tuple(sorted(scored_a - scored_b)), only_b=tuple(sorted(scored_b - scored_a)),
                      device_kind={a.suite: a.device_kind, b.suite: b.device_kind},
                      coverage={r.suite: _coverage(r) for r in (a, b)})


def _coverage(res: Results) -> tuple[int, int]:
    """(tasks with a final-loss score, tasks in the suite) of scored results."""
    scored = {t for m in res.matrices.get("final_loss", {}).values() for t in m.tasks}
    tasks = set(res.suite_tasks) or scored
    return len(scored & tasks), len(tasks)


def _ci(t: tuple[float, float, float]) -> str:
    p, lo, hi = t
    if not math.isfinite(p):
        return "-"
    return f"{p:+.3f} [{lo:+.3f}, {hi:+.3f}]" if math.isfinite(lo) else f"{p:+.3f}"


def summary_rows(c: Comparison) -> list[list[str]]:
    """Rows of the text table: criterion, optimizers, tau [CI], rho [CI], top-k overlap."""
    return [[g.criterion.replace("_", " "), str(len(g.optimizers)), _ci(g.kendall), _ci(g.spearman),
             f"{g.top_overlap}/{g.k}"] for g in c.agreements]


SUMMARY_COLUMNS = ["criterion", "optimizers", "Kendall tau [95% CI]", "Spearman rho [95% CI]", "top-k overlap"]


def text(c: Comparison) -> str:
    """The plain-text summary ``celo-bench compare-suites`` prints."""
    rows = [SUMMARY_COLUMNS, *summary_rows(c)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(SUMMARY_COLUMNS))]
    lines = [f"Tier agreement: '{c.a}' vs '{c.b}' (IQM rankings of the common optimizers; "
             f"{int(c.confidence * 100)}% bootstrap CIs over seeds within tasks, {c.reps} reps, seed {c.seed})"]
    lines += ["  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths, strict=True)))
              for r in rows]
    if c.agreements:
        g = c.agreements[0]
        lines.append(f"common optimizers: {', '.join(g.optimizers)}")
        lines.append(f"top-{g.k} by final loss: {c.a}: {', '.join(g.top_a)}; {c.b}: {', '.join(g.top_b)}")
    for name, only in ((c.a, c.only_a), (c.b, c.only_b)):
        if only:
            lines.append(f"scored only in '{name}' (left out): {', '.join(only)}")
    lines += [f"caveat: {line}" for line in c.caveats()]
    return "\n".join(lines) + "\n"


__all__ = ["MIN_OPTIMIZERS", "Agreement", "Comparison", "TOP_K", "agreement", "boot_iqms", "compare", "kendall_spearman", "text",
           "top_k"]
