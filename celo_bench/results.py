"""The scoring API: a results folder and a suite in, tidy pandas frames out.

    >>> from celo_bench.results import score_results
    >>> res = score_results("results", "smoke", reps=2000)        # doctest: +SKIP
    >>> res.aggregate[["optimizer", "final_loss_iqm", "speedup_iqm"]]  # doctest: +SKIP

Frames (all tidy, one row per entity named):

- ``runs``: every stored run of the suite (smoothed curve, final loss, ``selected``);
- ``scores``: every tuned (task, optimizer, seed): final-loss and speedup scores;
- ``tasks``: every (task, optimizer): tuned point, grid-edge flag, mean/std scores, counts;
- ``aggregate``: every optimizer, ranked: IQM/median/mean/optimality gap with CIs;
- ``poi``: probability of improvement over the reference and over the top entry.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from celo_bench.aggregate import DEFAULT_REPS, DEFAULT_SEED, ScoreMatrix, aggregate_table
from celo_bench.errors import CeloBenchError
from celo_bench.score import ScoreConfig, score_records
from celo_bench.store import Store
from celo_bench.suite import KIND_LABELS, Registry, SuiteSpec, load_registry


@dataclass(frozen=True)
class Results:
    """Everything scored from one results folder for one suite (see module docstring)."""

    suite: str
    suite_version: str
    config: ScoreConfig
    reps: int
    seed: int
    confidence: float
    fingerprint: str
    runs: pd.DataFrame
    scores: pd.DataFrame
    tasks: pd.DataFrame
    aggregate: pd.DataFrame
    poi: pd.DataFrame
    matrices: dict[str, dict[str, ScoreMatrix]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def fingerprint(records: pd.DataFrame) -> str:
    """Short hash of the scored records: keys, statuses and curve bytes (order-independent)."""
    h = hashlib.sha256()
    for _, r in records.sort_values("key").iterrows():
        h.update(f"{r['key']}|{r['status']}|".encode())
        for col in ("eval_train_loss", "eval_valid_loss", "eval_test_loss", "train_loss"):
            if col in records.columns:
                h.update(np.ascontiguousarray(r[col], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def load_records(results: str | os.PathLike, suite: SuiteSpec, registry: Registry) -> tuple[pd.DataFrame, list[str]]:
    """Records of `suite`'s current version, one horizon per task; returns (frame, notes).

    Per task, the horizon is the suite's (``steps``, else the task's); when no record has
    it (the grid was run with ``--steps``), the largest stored horizon is used instead.
    Records of other versions or horizons are left out and said so in the notes.

    Raises:
        CeloBenchError: the folder holds no record of this suite (version).
    """
    df = Store(results).read()
    hint = f"run `celo-bench run --suite {suite.name} --results {results}` first"
    if df.empty or not (df["suite"] == suite.name).any():
        raise CeloBenchError(f"no results of suite '{suite.name}' in {results}: {hint}")
    df = df[df["suite"] == suite.name]
    notes = []
    current = df["suite_version"] == suite.version
    if not current.any():
        found = ", ".join(sorted(set(df["suite_version"])))
        raise CeloBenchError(
            f"{results} holds suite '{suite.name}' version(s) {found}, not the current version "
            f"{suite.version}: {hint}"
        )
    if (~current).any():
        notes.append(f"{int((~current).sum())} records of older versions of suite '{suite.name}' ignored")
    df = df[current]
    keep = []
    for task, g in df.groupby("task", sort=True):
        planned = suite.steps or (registry.tasks[task].steps if task in registry.tasks else None)
        horizons = set(g["num_steps"])
        horizon = planned if planned in horizons else max(horizons)
        if horizon != planned:
            notes.append(f"task {task}: scored at the stored horizon {horizon} (suite plans {planned})")
        if len(horizons) > 1:
            notes.append(f"task {task}: {int((g['num_steps'] != horizon).sum())} records at other horizons ignored")
        keep.append(g[g["num_steps"] == horizon])
    out = pd.concat(keep).reset_index(drop=True)
    in_grid = _in_current_grid(out, suite, registry)
    if (~in_grid).any():
        notes.append(f"{int((~in_grid).sum())} records at grid points no longer in the suite's grids ignored")
    return out[in_grid].reset_index(drop=True), notes


def _in_current_grid(records: pd.DataFrame, suite: SuiteSpec, registry: Registry) -> pd.Series:
    """True for records whose hyper-parameters are a point of their optimizer's current grid.

    A grid that was widened or shifted leaves its old points in the store; tuning must only
    see the points the suite asks for. Optimizers outside the registry (submissions) and
    untuned ones are kept as they are.
    """
    import json

    from celo_bench.plan import grid_points

    allowed: dict[str, set] = {}
    for name, spec in registry.optimizers.items():
        grid = suite.grids.get(name) or spec.grid
        if grid:
            allowed[name] = {tuple(sorted((k, float(f"{v:.6g}")) for k, v in p.items())) for p in grid_points(grid)}

    def ok(row) -> bool:
        if row["optimizer"] not in allowed:
            return True
        point = tuple(sorted((k, float(f"{v:.6g}")) for k, v in json.loads(row["hparams"]).items()))
        return point in allowed[row["optimizer"]]

    return records.apply(ok, axis=1).astype(bool)


def score_results(
    results: str | os.PathLike,
    suite: str,
    *,
    config: ScoreConfig | None = None,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
    registry: Registry | None = None,
) -> Results:
    """Score every run of `suite` in the `results` folder against tuned Adam and aggregate.

    Args:
        results: The results store folder.
        suite: Suite name; its ``ema_alpha`` and ``selection`` are the scoring defaults.
        config: Scoring settings (default: :meth:`ScoreConfig.for_suite`).
        reps: Bootstrap repetitions for every interval (rliable's default is 50000; 2000
            keeps a report to seconds, pass more for publication).
        seed: Seed of every bootstrap (same seed, same intervals).
        confidence: Interval coverage.
        registry: Spec registry (default: :func:`load_registry`).

    Raises:
        CeloBenchError: no records, or none of the reference optimizer.
    """
    reg = registry or load_registry()
    spec = reg.suite(suite)
    config = config or ScoreConfig.for_suite(spec)
    records, notes = load_records(Path(results), spec, reg)
    if not (records["optimizer"] == config.reference).any():
        raise CeloBenchError(
            f"no runs of the reference optimizer '{config.reference}' for suite '{suite}' in {results}: "
            f"every score is relative to it; run `celo-bench run --suite {suite} -o {config.reference}`"
        )
    missing = sorted(set(records["task"]) - set(records.loc[records["optimizer"] == config.reference, "task"]))
    if missing:
        notes.append(f"tasks without '{config.reference}' runs cannot be scored: {', '.join(missing)}")
    scored = score_records(records, config)
    table, poi, mats = aggregate_table(
        scored.scores, scored.tasks, reference=config.reference, reps=reps, seed=seed, confidence=confidence
    )
    table.insert(table.columns.get_loc("optimizer_kind") + 1, "kind_label", [
        reg.optimizers[o].kind_label if o in reg.optimizers else KIND_LABELS.get(k, k)
        for o, k in zip(table["optimizer"], table["optimizer_kind"], strict=True)
    ])
    return Results(
        suite=suite, suite_version=spec.version, config=config, reps=reps, seed=seed,
        confidence=confidence, fingerprint=fingerprint(records), runs=scored.runs,
        scores=scored.scores, tasks=scored.tasks, aggregate=table, poi=poi, matrices=mats,
        notes=tuple(notes),
    )
