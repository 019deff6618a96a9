"""Reports: a results folder becomes the leaderboard, the paper's figures and tables.

``write_report(suite=..., results=..., out=...)`` writes::

    out/leaderboard.md          ranked table between markers (embeddable in a README)
    out/index.html              self-contained page: sortable table, figures, per-task drill-down
    out/figures/*.png|pdf       main IQM figure, performance profiles, training curves,
                                learning-rate sensitivity, probability-of-improvement matrix
    out/figures/tasks/*.png     one training-curve panel per task (used by the page)
    out/tables/*.csv|md|tex     aggregate, per-task scores, overhead and ablation when available
    out/README.md               command, suite version, results fingerprint, date

Everything but README.md is a pure function of the results: regenerating from the same
results gives byte-identical files (same library versions).
"""

from __future__ import annotations

import datetime as _dt
import shlex
from pathlib import Path

import numpy as np

from celo_bench import aggregate as agg
from celo_bench.report import figures as F
from celo_bench.report import html, tables
from celo_bench.report.leaderboard import embed, leaderboard_markdown
from celo_bench.results import Results, score_results
from celo_bench.score import ScoreConfig
from celo_bench.suite import Registry, load_registry

__all__ = ["write_report", "write_scored_report", "render_report", "embed", "leaderboard_markdown"]

GENERATED = ("*.png", "*.pdf", "*.csv", "*.md", "*.tex")


def _clean(folder: Path) -> None:
    """Remove files an earlier report wrote here (so a table that no longer applies goes)."""
    if folder.is_dir():
        for pattern in GENERATED:
            for p in folder.glob(pattern):
                p.unlink()


def _taus(matrices: dict, crit: str) -> np.ndarray:
    """Thresholds from 0 to a bit past the 95th percentile of every optimizer's scores
    (speedups of T/10 from an early hit would otherwise squash the axis), at least 1.25."""
    top = max([float(np.quantile(m.values, 0.95)) for m in matrices[crit].values()] + [1.0])
    return np.linspace(0.0, max(1.25, 1.1 * top), 81)


def render_report(res: Results, out: Path, *, results_dir: Path, registry: Registry,
                  highlight: str | None = None) -> list[Path]:
    """Write every report file for scored results; returns the paths written."""
    out = Path(out)
    figdir, tabdir, taskdir = out / "figures", out / "tables", out / "figures" / "tasks"
    for d in (figdir, tabdir, taskdir):
        _clean(d)
        d.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for table in tables.all_tables(res, results_dir):
        written += table.write(tabdir)
    lb = out / "leaderboard.md"
    lb.write_text(leaderboard_markdown(res, registry, highlight), encoding="utf-8")
    written.append(lb)

    mats = res.matrices
    profiles = {c: agg.performance_profiles(mats[c], _taus(mats, c), reps=res.reps, seed=res.seed)
                for c in agg.CRITERIA}
    order = F._order(res)
    poi = {c: agg.poi_matrix({n: mats[c][n] for n in order if n in mats[c]}) for c in agg.CRITERIA}
    figs: dict[str, Path] = {}
    plan = [
        ("main_iqm", "Final-loss and speedup IQM with 95% CIs (the paper's main comparison)",
         lambda: F.main_iqm(res)),
        ("performance_profiles", "Performance profiles with 95% bootstrap bands",
         lambda: F.performance_profiles(profiles, res)),
        ("training_curves", "Tuned training curves per task (smoothed, mean over seeds)",
         lambda: F.training_curves(res)),
        ("lr_sensitivity", "Learning-rate sensitivity of the hand-crafted optimizers",
         lambda: F.lr_sensitivity(res)),
        ("probability_of_improvement", "Probability of improvement, P(row > column)",
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
    task_pngs = {}
    for task in sorted(set(res.runs["task"])):
        fig = F.training_curves(res, tasks=[task])
        task_pngs[task] = F.save(fig, taskdir, task, pdf=False)[0]
        written.append(task_pngs[task])
    page = out / "index.html"
    page.write_text(html.render(res, registry, figs, task_pngs), encoding="utf-8")
    written.append(page)
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
) -> Path:
    """Score `results` for `suite` and write the full report into `out`; returns `out`.

    Raises:
        CeloBenchError: no results of the suite, or no reference (Adam) runs.
    """
    reg = registry or load_registry()
    results, out = Path(results), Path(out)
    res = score_results(results, suite, config=config, reps=reps, seed=seed, registry=reg)
    return write_scored_report(res, suite=suite, results=results, out=out, registry=reg,
                               command=command, highlight=highlight)


def write_scored_report(
    res: Results, *, suite: str, results: Path, out: Path, registry: Registry,
    command: str | None = None, highlight: str | None = None,
) -> Path:
    """Write the report of already-scored results (callers that scored need not score again)."""
    results, out = Path(results), Path(out)
    written = render_report(res, out, results_dir=results, registry=registry, highlight=highlight)
    command = command or "celo-bench report " + shlex.join(
        ["--suite", suite, "--results", str(results), "--out", str(out)]
        + (["--reps", str(res.reps)] if res.reps != agg.DEFAULT_REPS else [])
    )
    (out / "README.md").write_text(_readme(res, results, written, out, command), encoding="utf-8")
    return out
