"""The scoring API: a results folder and a suite in, tidy pandas frames out.

    >>> from celo_bench.results import score_results
    >>> res = score_results("results", "smoke", reps=2000)        # doctest: +SKIP
    >>> res.aggregate[["optimizer", "final_loss_iqm", "speedup_iqm"]]  # doctest: +SKIP

Scoring uses exactly the records of the current plan: the suite's grid is expanded once
(:func:`celo_bench.plan.expand`) and stored records are chosen by their run keys. A record
left by an older spec, grid, suite version or engine version has another key, so it is
never scored; such records are counted (``Results.ignored``) and ``celo-bench prune``
moves them aside. Planned runs that are not stored are counted too (``Results.missing``).
The records of one task must come from one environment (device kind, backend, jax, jaxlib,
optax, flax: :mod:`celo_bench.environment`), or scoring refuses unless told to mix them.
Reference results that ship with the package (:mod:`celo_bench.references`) are read beside
the store for every planned optimizer the store has no record of; each row says its ``source``.

Frames (all tidy, one row per entity named):

- ``runs``: every planned run that is stored (smoothed curve, final loss, ``selected``);
- ``scores``: every tuned (task, optimizer, seed): final-loss, speedup and wall-clock
  speedup scores (the last from per-step timings of the results' device kind, read from
  ``<bench_dir>/step_time-<kind>.json``; NaN where a timing is missing);
- ``tasks``: every (task, optimizer): tuned point, grid-edge flag, mean/std scores, counts;
- ``aggregate``: every optimizer, ranked (see :data:`celo_bench.aggregate.COVERAGE_RULES`):
  IQM/median/mean/optimality gap with CIs, coverage and the zero-filled IQM;
- ``poi``: probability of improvement over the reference and over the top entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile
import warnings
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from celo_bench import environment, inputs, timings
from celo_bench import references as refs
from celo_bench.aggregate import (
    COVERAGE_RULES,
    DEFAULT_COVERAGE_RULE,
    DEFAULT_REPS,
    DEFAULT_SEED,
    ScoreMatrix,
    aggregate_table,
)
from celo_bench.defaults import DEFAULT_RESULTS
from celo_bench.errors import CeloBenchError
from celo_bench.plan import Job, expand
from celo_bench.score import ScoreConfig, score_records
from celo_bench.store import Store, newer_line, upgraded_line
from celo_bench.strategy import SETTINGS, flags
from celo_bench.suite import KIND_LABELS, Registry, SuiteSpec, load_registry


@dataclass(frozen=True)
class Results:
    """Everything scored from one results folder for one suite (see module docstring).

    ``ignored``: stored records of the suite that the current plan does not hold;
    ``missing``: optimizer -> planned runs not stored; ``unrun``: optimizer -> one-line
    reason (with its fix) for every planned optimizer without a run that finished ok.
    ``device_kind``: the device kind whose per-step timings the wall-clock speedup uses;
    ``timings_missing``: the (task, optimizer) pairs scored without a timing of that kind.
    ``allow_mixed_environments``: records of one task from different environments may be
    scored; ``mixed_environments``: one line per mix that was (also in ``notes``).
    ``references``: the manifest of the reference results used (None: the store alone);
    ``from_references``: optimizer -> runs drawn from them (their rows' ``source`` says so).
    """

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
    coverage_rule: str = DEFAULT_COVERAGE_RULE
    suite_tasks: tuple[str, ...] = ()
    planned: int = 0
    ignored: int = 0
    missing: Mapping[str, int] = field(default_factory=dict)
    unrun: Mapping[str, str] = field(default_factory=dict)
    device_kind: str = timings.UNKNOWN_KIND
    timings_missing: tuple[tuple[str, str], ...] = ()
    allow_mixed_environments: bool = False
    mixed_environments: tuple[str, ...] = ()
    references: refs.Manifest | None = None
    from_references: Mapping[str, int] = field(default_factory=dict)


def fingerprint(records: pd.DataFrame) -> str:
    """Short hash of the scored records: keys, statuses and curve bytes (order-independent)."""
    h = hashlib.sha256()
    for _, r in records.sort_values("key").iterrows():
        h.update(f"{r['key']}|{r['status']}|".encode())
        for col in ("eval_train_loss", "eval_valid_loss", "eval_test_loss", "train_loss"):
            if col in records.columns:
                h.update(np.ascontiguousarray(r[col], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def coverage_text(tasks: int, total: int) -> str:
    """The coverage cell of every table: ``"2/2"``, or ``"1/2 incomplete"``."""
    return f"{tasks}/{total}" + ("" if tasks == total else " incomplete")


# ---- selection by planned run keys ------------------------------------------------------


def planned_jobs(registry: Registry, suite: SuiteSpec, *, steps: int | None = None,
                 seeds: int | None = None, execution: Mapping[str, Any] | None = None,
                 backend: str | None = None) -> list[Job]:
    """The suite's grid, expanded once: its optimizers plus any submission the registry holds
    (``celo-bench submit`` adds one). `steps` / `seeds` override the horizon and seed count
    and `execution` sets execution settings (:data:`celo_bench.strategy.SETTINGS`) exactly as
    ``celo-bench run --steps/--seeds/--steps-strategy ...`` do; `backend`: the device the
    runs were planned for (default: this machine's)."""
    extra = [n for n, o in registry.optimizers.items() if o.kind == "submission" and n not in suite.optimizers]
    return expand(registry, suite, optimizers=[*suite.optimizers, *extra], steps=steps, seeds=seeds,
                  strategy_overrides=execution, backend=backend)


@dataclass(frozen=True)
class Selection:
    """Stored records split by the plan.

    Attributes:
        records: One row per planned run that is stored (``Store.read()`` columns).
        planned: Number of runs in the plan.
        missing: optimizer -> planned runs not stored (optimizers in plan order).
        ignored: Stored records of the suite whose keys the plan does not hold.
        ignored_why: reason -> count, summing to ``ignored``.
        unregistered: Stored records of the suite whose optimizer the registry does not know
            (a submission scored by ``celo-bench submit``); left out, never pruned.
        unreadable: One line per record file the store could not read (never scored).
        newer: One line per record of a newer schema version (left in place, never scored).
        upgraded: Records of an older schema that were upgraded as they were read.
        references: The reference results read beside the store (None: none).
        from_references: optimizer -> its runs drawn from `references` (the store has none of
            its planned runs); every row of ``records`` says its ``source``.
    """

    records: pd.DataFrame
    planned: int
    missing: dict[str, int]
    ignored: int
    ignored_why: dict[str, int]
    unregistered: int = 0
    unreadable: tuple[str, ...] = ()
    newer: tuple[str, ...] = ()
    upgraded: int = 0
    references: refs.References | None = None
    from_references: dict[str, int] = field(default_factory=dict)

    def notes(self, suite: str, prune: str | None = None) -> list[str]:
        """One line per fact worth telling: what was ignored and what is missing.

        `suite` is what follows ``--suite`` in the printed ``run`` commands (:func:`grid_args`);
        `prune` the same for ``prune``, which takes no ``--steps`` / ``--seeds`` (default: `suite`).
        """
        out = [f"skipped unreadable record {line} (its run counts as missing; `celo-bench run` rewrites it)"
               for line in self.unreadable]
        out += list(self.newer)
        if self.upgraded:
            out.append(upgraded_line(self.upgraded))
        if self.ignored:
            why = ", ".join(f"{n} {reason}" for reason, n in self.ignored_why.items())
            out.append(f"ignored {self.ignored} stored records not in the current plan (spec or version "
                       f"changed: {why}); `celo-bench prune --suite {prune or suite}` moves aside those of edited "
                       "specs and older versions")
        if self.unregistered:
            out.append(f"left out {self.unregistered} stored records of optimizers outside the registry "
                       "(submissions): `celo-bench submit` scores them")
        if self.from_references and self.references is not None:
            m = self.references.manifest
            names = ", ".join(self.from_references)
            out.append(f"{sum(self.from_references.values())} runs of {len(self.from_references)} optimizers are "
                       f"the reference results shipped with celo-bench (suite {m.suite} v{m.suite_version}, made on "
                       f"{m.device}): {names}; this store has none of their runs (`celo-bench run --suite {suite} "
                       "-o NAME` trains one here, and then its rows are this store's)")
        n_missing = sum(self.missing.values())
        if n_missing:
            by = ", ".join(f"{o} {n}" for o, n in self.missing.items())
            out.append(f"{n_missing} of {self.planned} planned runs are not stored ({by}); "
                       f"`celo-bench run --suite {suite}` runs those this machine can run (optimizers "
                       "whose weights or data are missing here are listed apart, with their fix)")
        return out


def _why_ignored(ignored: pd.DataFrame, suite: SuiteSpec, horizons: Mapping[str, int]) -> dict[str, int]:
    old = ignored["suite_version"] != suite.version
    other_t = ~old & (ignored["num_steps"] != ignored["task"].map(horizons))
    rest = ~old & ~other_t
    out = {"of older suite versions": int(old.sum()),
           "at other horizons (`--steps`)": int(other_t.sum()),
           "from edited specs, grids or an older engine": int(rest.sum())}
    return {k: v for k, v in out.items() if v}


def grid_args(suite: str, results: str | os.PathLike | None = None, *, steps: int | None = None,
              seeds: int | None = None, execution: Mapping[str, Any] | None = None) -> str:
    """What follows ``--suite`` in a printed ``celo-bench run`` so that it plans the same run keys
    into the same store: the suite, ``--steps`` / ``--seeds`` when given, the execution settings
    (:func:`celo_bench.strategy.flags`) and ``--results`` unless it is the default folder.

        >>> grid_args("smoke", "results", steps=10, seeds=1)
        'smoke --steps 10 --seeds 1'
        >>> grid_args("quick", "/tmp/my results")
        "quick --results '/tmp/my results'"
    """
    out = suite + (f" --steps {steps}" if steps is not None else "") + (f" --seeds {seeds}" if seeds is not None else "")
    out += flags(execution)
    if results is not None and Path(results) != DEFAULT_RESULTS:
        out += f" --results {shlex.quote(str(results))}"
    return out


def select_records(
    results: str | os.PathLike, suite: SuiteSpec, registry: Registry, *, jobs: Sequence[Job] | None = None,
    steps: int | None = None, seeds: int | None = None, execution: Mapping[str, Any] | None = None,
    references: refs.References | None = None,
) -> Selection:
    """The stored records whose run keys the current plan of `suite` holds, and the reference
    results of every planned optimizer the store has no record of.

    Args:
        results: The results store folder.
        suite: The suite; its plan is :func:`planned_jobs` unless `jobs` is given.
        registry: Specs the plan is expanded from.
        jobs: An already expanded plan (one grid expansion per command).
        steps, seeds, execution: Horizon, seed and execution-setting overrides of the plan
            (when `jobs` is given, only the printed fix uses them).
        references: Reference results read beside the store (:mod:`celo_bench.references`):
            an optimizer with no record of the plan in the store takes its planned runs from
            there; one with any takes them all from the store. Each row's ``source`` says which.

    Raises:
        CeloBenchError: neither the folder nor `references` hold a record of the suite's
            current plan (the message says which horizons and versions the folder holds).
    """
    jobs = list(jobs) if jobs is not None else planned_jobs(registry, suite, steps=steps, seeds=seeds,
                                                            execution=execution)
    runs = {r.key: r for j in jobs for r in j.runs}
    horizons = {j.task.name: j.num_steps for j in jobs}
    store = Store(results)
    df = store.read()
    unreadable = [b.line() for b in store.problems]
    newer, upgraded = [newer_line(b) for b in store.newer], store.upgraded
    if len(df):
        df = df.drop_duplicates("key").reset_index(drop=True)
    in_plan = df["key"].isin(runs) if len(df) else pd.Series(dtype=bool)
    of_suite = (df["suite"] == suite.name) if len(df) else pd.Series(dtype=bool)
    known = df["optimizer"].isin(registry.optimizers) if len(df) else pd.Series(dtype=bool)
    records = df[in_plan].reset_index(drop=True) if len(df) else df
    records = records.assign(**{refs.SOURCE: refs.STORE})
    ignored = df[of_suite & ~in_plan & known] if len(df) else df
    unregistered = int((of_suite & ~in_plan & ~known).sum()) if len(df) else 0
    from_refs: dict[str, int] = {}
    if references is not None:
        drawn = references.covering(runs, set(records["optimizer"]))
        if len(drawn):
            order = list(dict.fromkeys(j.optimizer.name for j in jobs))
            counts = drawn["optimizer"].value_counts()
            from_refs = {o: int(counts[o]) for o in order if o in counts}
            with warnings.catch_warnings():  # all-NA columns (timings the references drop) keep their dtype
                warnings.simplefilter("ignore", FutureWarning)
                records = drawn if records.empty else pd.concat([records, drawn], ignore_index=True)
    if records.empty:
        hint = f"run `celo-bench run --suite {grid_args(suite.name, results, steps=steps, seeds=seeds, execution=execution)}` first"
        if len(ignored):
            seen = sorted({f"v{v} at {t} steps" for v, t in zip(ignored["suite_version"], ignored["num_steps"],
                                                                   strict=True)})
            planned_as = {f"v{suite.version} at {r.num_steps} steps" for r in runs.values()}
            if set(seen) <= planned_as:  # same version and horizon: other inputs or execution settings
                ran = sorted({str(s) for s in ignored["strategy"].dropna()}) if "strategy" in ignored else []
                how = f" (they ran as {', '.join(ran)})" if ran else ""
                hint = (f"its {len(ignored)} stored records were made with other inputs (engine version, data, "
                        f"weights) or execution settings{how}: pass the execution settings they were run with (" + ", ".join(
                            s.flag for s in SETTINGS) + f"; every command that reads a grid takes them), or {hint}")
            else:
                hint = (f"its {len(ignored)} stored records are not in the current plan (v{suite.version}; they "
                        f"are {', '.join(seen[:4])}{', ...' if len(seen) > 4 else ''}): pass the `--steps` they "
                        f"were run with, or {hint}")
        raise CeloBenchError(f"no records of the current plan of suite '{suite.name}' in {results}: {hint}")
    # a planned run held only by a newer celo-bench's record is not missing: `run` never
    # overwrites it (the `newer` line says to upgrade), so no hint may send the user to train it
    stored = set(records["key"]) | {b.path.stem for b in store.newer}
    missing = dict.fromkeys((j.optimizer.name for j in jobs), 0)  # the suite's order
    for r in runs.values():
        if r.key not in stored:
            missing[r.optimizer] += 1
    missing = {o: n for o, n in missing.items() if n}
    return Selection(records=records, planned=len(runs), missing=missing, ignored=len(ignored),
                     ignored_why=_why_ignored(ignored, suite, horizons), unregistered=unregistered,
                     unreadable=tuple(unreadable), newer=tuple(newer), upgraded=upgraded,
                     references=references if from_refs else None, from_references=from_refs)


def unrun_reasons(records: pd.DataFrame, jobs: Sequence[Job], suite: str) -> dict[str, str]:
    """optimizer -> one-line reason and fix, for every planned optimizer with no ``ok`` run
    (`suite`: what follows ``--suite`` in the fixes, :func:`grid_args`). An optimizer that
    cannot run on this machine (its weights or a dataset are not here) gets that fix first:
    ``run`` would execute none of its runs."""
    out: dict[str, str] = {}
    planned: dict[str, int] = {}
    for j in jobs:
        planned[j.optimizer.name] = planned.get(j.optimizer.name, 0) + len(j.runs)
    for opt, n in planned.items():
        g = records[records["optimizer"] == opt]
        if (g["status"] == "ok").any():
            continue
        run = f"`celo-bench run --suite {suite} -o {opt}`"
        blocked = _cannot_run(opt, jobs)
        if g.empty and blocked:
            out[opt] = f"no runs stored (0 of {n} planned), and it cannot run here: {blocked}; then {run}"
        elif g.empty:
            out[opt] = f"no runs stored (0 of {n} planned); fix: {run}"
        elif (g["status"] == "failed").all():
            msg = " ".join(str(g["message"].iloc[0] or "").split())[:160]
            out[opt] = (f"all {len(g)} stored runs failed ({msg or 'no message'}); fix the cause, then "
                        f"`celo-bench run --suite {suite} -o {opt} --retry-failed`")
        else:
            out[opt] = f"no stored run finished ok ({len(g)} of {n} stored: diverged or failed; scored 0)"
    return out


def _cannot_run(opt: str, jobs: Sequence[Job]) -> str:
    """Why optimizer `opt`'s jobs cannot run here, with the fix ("" if they can): its weights
    are missing, or a dataset of one of its tasks is."""
    for j in jobs:
        if j.optimizer.name == opt and j.unavailable:
            w = inputs.weights_input(j.optimizer)
            return f"{w.reason}; fix: {w.fix}" if w is not None and w.reason and w.fix else j.unavailable
    return next((j.data_missing for j in jobs if j.optimizer.name == opt and j.data_missing), "")


def suites_with_results(results: str | os.PathLike) -> list[str]:
    """Names of the suites that have at least one stored record in `results` (sorted)."""
    df = Store(results).read(curves=False)
    return sorted(set(df["suite"])) if len(df) and "suite" in df.columns else []


# ---- device kind and per-step timings ----------------------------------------------------


def records_device_kind(records: pd.DataFrame) -> str:
    """The device kind most of `records` ran on (``provenance["device"]``; ties: by name),
    or ``"unknown"`` when no record names one."""
    kinds: dict[str, int] = {}
    for prov in records["provenance"] if "provenance" in records.columns else []:
        if isinstance(prov, str):
            try:
                prov = json.loads(prov or "{}")
            except ValueError:
                prov = {}
        kind = prov.get("device") if isinstance(prov, Mapping) else None
        if kind:
            kinds[str(kind)] = kinds.get(str(kind), 0) + 1
    if not kinds:
        return timings.UNKNOWN_KIND
    return sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def missing_timings(scores: pd.DataFrame, step_seconds: Mapping[tuple[str, str], float],
                    reference: str) -> list[tuple[str, str]]:
    """(task, optimizer) pairs the wall-clock speedup needs but `step_seconds` lacks: every
    scored pair and the reference on every scored task, sorted."""
    need = set(zip(scores["task"], scores["optimizer"], strict=True)) | {(t, reference) for t in scores["task"]}
    return sorted(k for k in need if k not in step_seconds)


def timings_note(missing: Sequence[tuple[str, str]], device_kind: str, suite: str,
                 bench_dir: str | os.PathLike) -> str:
    """One line: which timings the wall-clock speedup lacks and the command that measures them."""
    pairs = ", ".join(f"{t}/{o}" for t, o in missing[:6]) + (", ..." if len(missing) > 6 else "")
    return (f"wall-clock speedup (SU_time) is missing where a per-step timing on device kind '{device_kind}' is "
            f"missing ({len(missing)} task/optimizer pairs: {pairs}); measure them with "
            f"{timings.command(suite, device_kind, bench_dir)}")


# ---- scoring --------------------------------------------------------------------------


def score_results(
    results: str | os.PathLike,
    suite: str,
    *,
    config: ScoreConfig | None = None,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
    registry: Registry | None = None,
    steps: int | None = None,
    seeds: int | None = None,
    coverage_rule: str = DEFAULT_COVERAGE_RULE,
    bench_dir: str | os.PathLike | None = None,
    device_kind: str | None = None,
    allow_mixed_environments: bool = False,
    execution: Mapping[str, Any] | None = None,
    references: bool | str | os.PathLike | refs.References | None = True,
    memo: MutableMapping[str, list[list[float]]] | None = None,
) -> Results:
    """Score the stored runs of `suite`'s current plan against tuned Adam and aggregate.

    Args:
        results: The results store folder.
        suite: Suite name; its ``ema_alpha`` and ``selection`` are the scoring defaults.
        config: Scoring settings (default: :meth:`ScoreConfig.for_suite`).
        reps: Bootstrap repetitions for every interval (rliable's default is 50000; 2000
            keeps a report to seconds, pass more for publication).
        seed: Seed of every bootstrap (same seed, same intervals).
        confidence: Interval coverage.
        registry: Spec registry (default: :func:`load_registry`).
        steps, seeds: The plan's horizon and seed count when the grid was run with
            ``--steps`` / ``--seeds`` (default: the suite's).
        execution: The execution settings the grid was run with (``run --steps-strategy`` and
            the other :data:`celo_bench.strategy.SETTINGS`; default: none set).
        coverage_rule: How rows without a score on every task rank (see
            :data:`celo_bench.aggregate.COVERAGE_RULES`).
        bench_dir: Benchmark folder holding ``step_time-<kind>.json`` (``celo-bench bench
            step-time``; default ``benchmarks/``).
        device_kind: Whose per-step timings the wall-clock speedup uses (default: the kind
            most scored records ran on); timings of other kinds are never read.
        allow_mixed_environments: Score records of one task that come from different
            environments (:mod:`celo_bench.environment`); each mix becomes a note.
        references: Reference results read beside the store for the planned optimizers it has
            no record of (:mod:`celo_bench.references`): True (default) the ones that ship
            (or ``$CELO_BENCH_REFERENCES``), a folder of references, loaded ones, or False /
            None for the store alone. Records of a task drawn from references may come from
            another environment than the store's: using them is the explicit choice, so such a
            mix is scored and noted with both device kinds (never refused); within the store,
            and within the references, the environment rule applies as without them.
        memo: Bootstrap intervals already computed, and where new ones go
            (:func:`celo_bench.aggregate.interval_estimates`; default: the references' own
            ``intervals.json``, so only the store's optimizers are bootstrapped).

    Raises:
        CeloBenchError: no record of the current plan, none of the reference optimizer, or
            (without `allow_mixed_environments`) a task whose records mix environments
            (:class:`~celo_bench.environment.MixedEnvironmentsError`).
    """
    reg = registry or load_registry()
    spec = reg.suite(suite)
    config = config or ScoreConfig.for_suite(spec)
    jobs = planned_jobs(reg, spec, steps=steps, seeds=seeds, execution=execution)
    loaded, ref_notes = refs.for_scoring(references, suite, config.series)
    sel = select_records(Path(results), spec, reg, jobs=jobs, steps=steps, seeds=seeds, execution=execution,
                         references=loaded)
    # `--suite X` and the options that plan the same keys in the same store: hints that work
    args = grid_args(suite, results, steps=steps, seeds=seeds, execution=execution)
    records, notes = sel.records, sel.notes(args, prune=grid_args(suite, results, execution=execution))
    notes += ref_notes
    ours = records[refs.SOURCE] == refs.STORE
    mixed = environment.check(records[ours], allow=allow_mixed_environments)
    mixed += environment.check(records[~ours], allow=allow_mixed_environments)
    if sel.references is not None:
        mixed += refs.environments_note(records[ours], sel.references, records[~ours])
    notes += mixed
    ref = config.reference
    if not (records["optimizer"] == ref).any():
        stale = sel.ignored and ref in reg.optimizers
        why = (" (its stored runs, if any, are from an older spec or version: the current plan's are not "
               "stored)") if stale else ""
        raise CeloBenchError(
            f"no runs of the reference optimizer '{ref}' in the current plan of suite '{suite}' in {results}"
            f"{why}: every score is relative to it; run `celo-bench run --suite {args} -o {ref}`"
        )
    missing = [t for t in spec.tasks if t not in set(records.loc[records["optimizer"] == ref, "task"])]
    if missing:
        notes.append(f"tasks without stored '{ref}' runs of the current plan are unscored: {', '.join(missing)}; "
                     f"`celo-bench run --suite {args} -o {ref}` runs them")
    kind = device_kind or records_device_kind(records)
    bench = Path(bench_dir) if bench_dir is not None else timings.DEFAULT_OUT
    step_seconds = timings.read_step_times(bench, kind)
    scored = score_records(records, config, step_seconds)
    no_timing = missing_timings(scored.scores, step_seconds, ref)
    if no_timing:
        notes.append(timings_note(no_timing, kind, suite, bench))
    if memo is None and loaded is not None:
        # a copy: scoring adds the intervals it computes. Content-addressed (aggregate.interval_key):
        # also serves a store whose runs equal the references' (the README's first command on a
        # machine like the one that made them), whether or not any row is drawn from them
        memo = dict(loaded.intervals)
    table, poi, mats = aggregate_table(
        scored.scores, scored.tasks, reference=ref, reps=reps, seed=seed, confidence=confidence,
        suite_tasks=spec.tasks, coverage_rule=coverage_rule, memo=memo,
    )
    table.insert(table.columns.get_loc("optimizer_kind") + 1, "kind_label", [
        reg.optimizers[o].kind_label if o in reg.optimizers else KIND_LABELS.get(k, k)
        for o, k in zip(table["optimizer"], table["optimizer_kind"], strict=True)
    ])
    label = sel.references.label if sel.references is not None else refs.STORE
    table.insert(table.columns.get_loc("kind_label") + 1, refs.SOURCE,
                 [label if o in sel.from_references else refs.STORE for o in table["optimizer"]])
    incomplete = table.loc[~table["complete"] & table["final_loss_iqm"].notna(), "optimizer"].tolist()
    if incomplete:
        notes.append(f"incomplete rows (no score on every task of the suite): {', '.join(incomplete)}; "
                     + COVERAGE_RULES[coverage_rule])
    return Results(
        suite=suite, suite_version=spec.version, config=config, reps=reps, seed=seed,
        confidence=confidence, fingerprint=fingerprint(records), runs=scored.runs,
        scores=scored.scores, tasks=scored.tasks, aggregate=table, poi=poi, matrices=mats,
        notes=tuple(notes), coverage_rule=coverage_rule, suite_tasks=tuple(spec.tasks),
        planned=sel.planned, ignored=sel.ignored, missing=sel.missing,
        unrun=unrun_reasons(records, jobs, args), device_kind=kind, timings_missing=tuple(no_timing),
        allow_mixed_environments=allow_mixed_environments, mixed_environments=tuple(mixed),
        references=sel.references.manifest if sel.references is not None else None,
        from_references=dict(sel.from_references),
    )


def remember_reference_intervals(
    suite: str, at: str | os.PathLike | None = None, *, steps: int | None = None, seeds: int | None = None,
    execution: Mapping[str, Any] | None = None, registry: Registry | None = None,
) -> Path:
    """Score `suite`'s references under `at` (default: the package's) as an empty store would, and
    write the bootstrap intervals computed into their ``intervals.json``; returns its path.

    A release step after :func:`celo_bench.references.build` (``references build`` does both):
    scoring a submission against these references then bootstraps the submission alone.
    """
    memo: dict[str, list[list[float]]] = {}
    with tempfile.TemporaryDirectory() as empty:
        score_results(empty, suite, steps=steps, seeds=seeds, execution=execution, registry=registry,
                      references=at if at is not None else True, memo=memo)
    return refs.write_intervals(suite, memo, at)


REFERENCE_MARK = refs.MARK
"""How a leaderboard marks a row drawn from reference results."""


def reference_line(res: Results) -> str:
    """One Markdown sentence on the rows drawn from reference results ("" when none are)."""
    if res.references is None or not res.from_references:
        return ""
    return refs.line(res.references, res.from_references,
                     every=set(res.aggregate["optimizer"]) <= set(res.from_references))
