"""Reports: a results folder becomes the leaderboard, the paper's figures and tables.

``write_report(suite=..., results=..., out=...)`` writes::

    out/leaderboard.md          ranked table between markers (embeddable in a README)
    out/index.html              self-contained page: sortable table, figures, per-task drill-down
    out/figures/*.png|pdf       main IQM figure, performance profiles, training curves,
                                learning-rate sensitivity, probability-of-improvement matrix
    out/figures/tasks/*.png     one training-curve panel per task (used by the page)
    out/figures/sample_efficiency.png|pdf   IQM of the final-loss score along training with 95% CIs
                                (the reference, Celo, the top five and any submission)
    out/tables/*.csv|md|tex     aggregate, per-task scores, overhead and ablation when available,
                                tier agreement with every other suite that has results
    out/README.md               command, suite version, results fingerprint, date

With ``site=True`` (``celo-bench report --site DIR``) the same folder is a static site: the
pages refer to their images as files and every optimizer gets a page
(``out/optimizers/<name>.html``, :mod:`celo_bench.report.site`).

Everything but README.md is a pure function of the results: regenerating from the same
results gives byte-identical files (same library versions).

A report is swapped in whole: every file is written into a temporary folder beside `out`
(``.<name>.tmp-*``), which then replaces `out` by two renames (the old report moves to
``.<name>.old-*`` and is deleted after the new one is in place). A failure while writing
leaves the old report untouched and no temporary folder; a kill leaves the old report or
the new one (a kill between the two renames leaves the old one aside, and the next write
puts it back before it starts). Writers of one `out` take turns through a lock file
``.<name>.lock`` beside it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from celo_bench import aggregate as agg
from celo_bench import efficiency as eff
from celo_bench import fileio
from celo_bench.aggregate import DEFAULT_COVERAGE_RULE
from celo_bench.bench.results import DEFAULT_OUT as BENCH_DIR
from celo_bench.compare import Comparison, compare
from celo_bench.errors import CeloBenchError
from celo_bench.paths import unwritable_reason
from celo_bench.report import curves as C
from celo_bench.report import figures as F
from celo_bench.report import html, palette, tables
from celo_bench.report import site as site_pages
from celo_bench.report.leaderboard import embed, leaderboard_markdown
from celo_bench.results import Results, score_results, suites_with_results
from celo_bench.score import ScoreConfig
from celo_bench.suite import Registry, load_registry

__all__ = ["write_report", "write_scored_report", "render_report", "embed", "leaderboard_markdown"]

MARKER = ".celo-bench-report"
"""An empty file that marks a folder as a report (so replacing it whole is safe)."""
REPORT_ENTRIES = frozenset({"leaderboard.md", "index.html", "README.md", "figures", "tables", site_pages.PAGES,
                            MARKER, ".gitkeep"})  # .gitkeep: the placeholder older checkouts keep in reports/


def _taus(matrices: dict, crit: str) -> np.ndarray:
    """Thresholds from 0 to a bit past the 95th percentile of every optimizer's scores
    (speedups of T/10 from an early hit would otherwise squash the axis), at least 1.25."""
    top = max([float(np.quantile(m.values, 0.95)) for m in matrices[crit].values()] + [1.0])
    return np.linspace(0.0, max(1.25, 1.1 * top), 81)


PROFILE_CRITERIA = ("final_loss", "speedup")
"""Criteria of the performance-profile and probability-of-improvement figures."""


def tier_comparisons(res: Results, results_dir: Path, registry: Registry, bench_dir: Path) -> tuple[
        list[Comparison], list[str]]:
    """`res`'s suite compared with every other registered suite that has results in `results_dir`
    (scored with `res`'s bootstrap settings and their own defaults); returns the comparisons
    and one line per other suite that could not be compared, with why."""
    out, skipped = [], []
    for other in suites_with_results(results_dir):
        if other == res.suite or other not in registry.suites:
            continue
        try:
            res_b = score_results(results_dir, other, reps=res.reps, seed=res.seed, confidence=res.confidence,
                                  registry=registry, bench_dir=bench_dir,
                                  allow_mixed_environments=res.allow_mixed_environments)
            out.append(compare(res, res_b))
        except CeloBenchError as e:
            skipped.append(f"suite '{other}' not compared: {e}")
    return out, skipped


def render_report(res: Results, out: Path, *, results_dir: Path, registry: Registry, bench_dir: Path,
                  highlight: str | None = None, comparisons: Sequence[Comparison] | None = None,
                  site: bool = False) -> list[Path]:
    """Write every report file for scored results; returns the paths written.

    `comparisons`: tier agreements to show (default: :func:`tier_comparisons`). `site`: images
    as files beside the pages and one page per optimizer (:mod:`celo_bench.report.site`)
    instead of one self-contained ``index.html``.
    """
    out = Path(out)
    figdir, tabdir, taskdir = out / "figures", out / "tables", out / "figures" / "tasks"
    for d in (figdir, tabdir, taskdir):
        d.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    skipped: list[str] = []
    if comparisons is None:
        comparisons, skipped = tier_comparisons(res, Path(results_dir), registry, Path(bench_dir))
    for table in [*tables.all_tables(res, bench_dir), *(tables.tier_agreement(c) for c in comparisons)]:
        written += table.write(tabdir)
    verification = site_pages.verifications(Path(results_dir), res)
    written.append(fileio.atomic_write_text(out / "leaderboard.md",
                                            leaderboard_markdown(res, registry, highlight, verification)))

    mats = res.matrices
    profiles = {c: agg.performance_profiles(mats[c], _taus(mats, c), reps=res.reps, seed=res.seed)
                for c in PROFILE_CRITERIA}
    order = F._order(res)
    poi = {c: agg.poi_matrix({n: mats[c][n] for n in order if n in mats[c]}) for c in PROFILE_CRITERIA}
    figs: dict[str, Path] = {}
    plan = [
        ("main_iqm", "Final-loss, speedup (and wall-clock speedup, when timed) IQM with 95% CIs (the paper's "
         "main comparison)",
         lambda: F.main_iqm(res)),
        ("performance_profiles", "Performance profiles: the share of (task, seed) scores above each threshold "
         "(95% bootstrap bands for Celo and any submission)",
         lambda: F.performance_profiles(profiles, res)),
        ("training_curves", "Tuned training curves per task (smoothed, mean over seeds)",
         lambda: C.training_curves(res)),
        ("lr_sensitivity", "Learning-rate sensitivity of the hand-crafted optimizers",
         lambda: F.lr_sensitivity(res)),
        ("probability_of_improvement", "Probability of improvement, P(row > column), between the reference, "
         "Celo, the top five and any submission",
         lambda: F.poi_heatmap(poi, res)),
    ]
    for name, caption, make in plan:
        if name in ("main_iqm", "performance_profiles", "probability_of_improvement") and not order:
            continue
        fig = make()
        if fig is None:
            continue
        paths = F.save(fig, figdir, name)
        figs[caption] = paths[0]
        written += paths
    efficiency = None
    if order:
        frame = eff.progress_scores(res.runs, res.scores, optimizers=palette.featured(res),
                                    diverged=res.config.diverged)
        curves = eff.sample_efficiency(frame, reps=res.reps, seed=res.seed, confidence=res.confidence)
        written += tables.sample_efficiency(curves).write(tabdir)
        fig = C.sample_efficiency(curves, res)
        if fig is not None:
            paths = F.save(fig, figdir, "sample_efficiency")
            efficiency = paths[0]
            written += paths
    tiers = []
    for c in comparisons:
        paths = F.save(F.tier_scatter(c), figdir, f"tier_agreement_{c.b}")
        written += paths
        tiers.append((c, paths[0]))
    task_pngs = {}
    for task in sorted(set(res.runs["task"])):
        fig = C.training_curves(res, tasks=[task])
        task_pngs[task] = F.save(fig, taskdir, task, pdf=False)[0]
        written.append(task_pngs[task])
    links: dict[str, str] = {}
    if site:
        pngs = {}
        for name in res.aggregate["optimizer"]:
            fig = C.optimizer_curves(res, name)
            if fig is not None:
                pngs[name] = F.save(fig, figdir / site_pages.PAGES, name, pdf=False)[0]
                written.append(pngs[name])
        written += site_pages.write_pages(res, out, registry, results=Path(results_dir), curves=pngs,
                                          verification=verification)
        links = {n: f"{site_pages.PAGES}/{site_pages.page_name(n)}" for n in res.aggregate["optimizer"]}
    page = html.render(res, registry, figs, task_pngs, tiers, skipped, highlight=highlight,
                       verification=verification, efficiency=efficiency, link=links.get,
                       src=(lambda p: Path(p).relative_to(out).as_posix()) if site else html.data_uri)
    written.append(fileio.atomic_write_text(out / "index.html", page))
    return written


def _readme(res: Results, results: Path, written: list[Path], out: Path, command: str) -> str:
    c = res.config
    files = "\n".join(f"- `{p.relative_to(out)}`" for p in sorted(written))
    date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""# Generated report

Produced by `{command}` on {date}.

- suite: `{res.suite}` version {res.suite_version}
- results: `{results}` (fingerprint `{res.fingerprint}`: a hash of the scored records' keys,
  statuses and curves; same fingerprint, same numbers)
- scoring: series `{c.series}`, EMA alpha {c.ema_alpha:g}, tuning `{c.selection}`,
  reference `{c.reference}`, diverged runs `{c.diverged}`, speedup cap {c.speedup_cap}
- aggregation: rliable IQM / median / mean / optimality gap, 95% stratified bootstrap,
  {res.reps} repetitions, seed {res.seed}

Regenerate with the same command; everything except this file is byte-identical for the
same results.

## Files

{files}
"""


def write_report(
    *, suite: str, results: Path, out: Path, reps: int = agg.DEFAULT_REPS,
    seed: int = agg.DEFAULT_SEED, config: ScoreConfig | None = None,
    registry: Registry | None = None, command: str | None = None, highlight: str | None = None,
    not_run: Mapping[str, str] | None = None, steps: int | None = None, seeds: int | None = None,
    coverage_rule: str = DEFAULT_COVERAGE_RULE, bench_dir: Path | None = None, device_kind: str | None = None,
    allow_mixed_environments: bool = False, execution: Mapping[str, Any] | None = None, site: bool = False,
    references: bool = True,
) -> Path:
    """Score `results` for `suite` and write the full report into `out`; returns `out`.

    Args:
        suite, results, out: Suite name, results store folder, report folder (replaced whole).
        reps, seed, config: Bootstrap repetitions and seed, scoring settings.
        registry: Spec registry (default: :func:`load_registry`).
        command: The command line the README names (default: the ``celo-bench report`` one).
        highlight: An optimizer whose row is marked (``celo-bench submit``).
        not_run: optimizer -> one-line reason it did not run, with its fix (e.g. from the
            runner's availability checks); listed in ``leaderboard.md`` and ``index.html``
            with every other planned optimizer that has no run that finished ok.
        steps, seeds: The plan's horizon and seed count (``run --steps/--seeds``).
        execution: The plan's execution settings (``run --steps-strategy`` ...:
            :data:`celo_bench.strategy.SETTINGS`).
        coverage_rule: See :data:`celo_bench.aggregate.COVERAGE_RULES`.
        bench_dir: Benchmark results folder whose ``overhead.json`` (``celo-bench bench
            overhead``) becomes the runtime table and whose ``step_time-<kind>.json``
            (``celo-bench bench step-time``) gives the wall-clock speedup (default:
            ``benchmarks/``).
        device_kind: Whose step timings are used (default: the kind most records ran on).
        allow_mixed_environments: Score records of one task made in different environments
            (noted in the report); see :mod:`celo_bench.environment`.
        site: Write a static site (images as files, one page per optimizer) instead of a
            self-contained ``index.html``.
        references: Rank the reference results that ship for optimizers without a run in
            `results` (rows marked; :mod:`celo_bench.references`); False: `results` alone.

    Raises:
        CeloBenchError: no record of the current plan, no reference (Adam) runs, `out` is
            not a report folder, or it cannot be written.
    """
    reg = registry or load_registry()
    results, out = Path(results), Path(out)
    res = score_results(results, suite, config=config, reps=reps, seed=seed, registry=reg, steps=steps,
                        seeds=seeds, coverage_rule=coverage_rule, bench_dir=bench_dir, device_kind=device_kind,
                        allow_mixed_environments=allow_mixed_environments, execution=execution,
                        references=references)
    return write_scored_report(res, suite=suite, results=results, out=out, registry=reg,
                               command=command, highlight=highlight, not_run=not_run, bench_dir=bench_dir,
                               site=site)


def with_not_run(res: Results, not_run: Mapping[str, str] | None) -> Results:
    """`res` with `not_run`'s reasons added for optimizers without a ranked run (a reason
    given by the caller replaces the one read from the store)."""
    if not not_run:
        return res
    ranked = set(res.aggregate.loc[res.aggregate["rank"].notna(), "optimizer"])
    extra = {o: why for o, why in not_run.items() if o in res.unrun or o not in ranked}
    return dataclasses.replace(res, unrun={**res.unrun, **extra})


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CeloBenchError(f"--out {out} is a file, not a report folder: choose another --out")
    if out.is_dir():
        alien = sorted(p.name for p in out.iterdir() if p.name not in REPORT_ENTRIES)
        if alien:
            raise CeloBenchError(
                f"--out {out} holds files that are not part of a report ({', '.join(alien[:3])}"
                f"{', ...' if len(alien) > 3 else ''}) and a report replaces its folder whole: choose a new "
                "or empty folder"
            )


def write_scored_report(
    res: Results, *, suite: str, results: Path, out: Path, registry: Registry,
    command: str | None = None, highlight: str | None = None, not_run: Mapping[str, str] | None = None,
    bench_dir: Path | None = None, site: bool = False,
) -> Path:
    """Write the report of already-scored results (callers that scored need not score again).

    Raises:
        CeloBenchError: `out` is not a report folder, or it cannot be written.
    """
    results, out = Path(results), Path(out)
    res = with_not_run(res, not_run)
    command = command or "celo-bench report " + shlex.join(
        ["--suite", suite, "--results", str(results), "--out", str(out)]
        + (["--reps", str(res.reps)] if res.reps != agg.DEFAULT_REPS else [])
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(out.parent / f".{out.name}.lock"):
            fileio.recover_folder(out)  # what a killed writer left: the old report back, leftovers gone
            _check_out(out)
            with fileio.staged_folder(out) as tmp:  # `.<name>.tmp-*`, swapped in whole at the end
                written = render_report(res, tmp, results_dir=results, registry=registry, highlight=highlight,
                                        bench_dir=Path(bench_dir) if bench_dir is not None else BENCH_DIR,
                                        site=site)
                fileio.atomic_write_text(tmp / MARKER, "")
                fileio.atomic_write_text(tmp / "README.md", _readme(res, results, written, tmp, command))
    except OSError as e:
        raise CeloBenchError(f"cannot write the report to {out}: {unwritable_reason(out) or e.strerror or e}; "
                             "the old report, if any, is "
                             "unchanged: choose a writable --out") from e
    return out
