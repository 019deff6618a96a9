"""``celo-bench score``: final loss and speedup vs tuned Adam, IQM with 95% CIs."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from celo_bench.aggregate import DEFAULT_REPS, DEFAULT_SEED
from celo_bench.cli._common import (
    FormatOpt,
    ResultsOpt,
    SuiteOpt,
    console,
    emit_json,
    out,
    results_path,
)
from celo_bench.cli._plan_options import CoverageRuleOpt, PlanSeedsOpt, PlanStepsOpt
from celo_bench.results import Results, coverage_text, score_results
from celo_bench.score import DIVERGED_RULES, SERIES, ScoreConfig
from celo_bench.suite import SELECTION_RULES, load_registry


def _num(x) -> float | None:
    """JSON has no NaN: missing numbers are null."""
    return None if x is None or pd.isna(x) else float(x)


def aggregate_rows(res: Results) -> list[dict]:
    """The aggregate table as JSON-ready objects, one per optimizer, in leaderboard order."""
    rows = []
    for r in res.aggregate.to_dict("records"):
        rows.append({
            "rank": None if pd.isna(r["rank"]) else int(r["rank"]),
            "optimizer": r["optimizer"], "kind": r["optimizer_kind"],
            "final_loss_iqm": _num(r["final_loss_iqm"]),
            "final_loss_ci": [_num(r["final_loss_iqm_low"]), _num(r["final_loss_iqm_high"])],
            "speedup_iqm": _num(r["speedup_iqm"]),
            "speedup_ci": [_num(r["speedup_iqm_low"]), _num(r["speedup_iqm_high"])],
            "tasks": int(r["tasks"]), "tasks_total": int(r["tasks_total"]), "coverage": float(r["coverage"]),
            "complete": bool(r["complete"]),
            "final_loss_iqm_zero_filled": _num(r["final_loss_iqm_zero_filled"]),
            "speedup_iqm_zero_filled": _num(r["speedup_iqm_zero_filled"]), "runs": int(r["runs"]),
            "poi_vs_reference": _num(r["poi_vs_reference"]),
            "diverged": int(r["diverged"]), "failed": int(r["failed"]), "edges": int(r["edges"]),
        })
    return rows


def score_document(res: Results) -> dict:
    """``score --format json``: the rows plus what was left out of them and why."""
    return {
        "suite": res.suite, "suite_version": res.suite_version, "fingerprint": res.fingerprint,
        "coverage_rule": res.coverage_rule, "rows": aggregate_rows(res),
        "planned_runs": res.planned, "ignored_records": res.ignored, "missing_runs": dict(res.missing),
        "not_run": dict(res.unrun), "notes": list(res.notes),
    }


def _fmt(v: float | None, ci: list) -> str:
    if v is None:
        return "-"
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def score_command(
    suite: str = SuiteOpt,
    results: Path = ResultsOpt,
    reps: int = typer.Option(DEFAULT_REPS, "--reps", min=1, help="Bootstrap repetitions (rliable default: 50000)."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Bootstrap seed."),
    selection: str = typer.Option(None, "--selection", help=f"Tuning rule: {' | '.join(SELECTION_RULES)} (default: the suite's)."),
    series: str = typer.Option(None, "--series", help=f"Loss series: {' | '.join(SERIES)} (default eval_train_loss)."),
    alpha: float = typer.Option(None, "--ema-alpha", help="EMA smoothing constant (default: the suite's)."),
    diverged: str = typer.Option(None, "--diverged", help=f"Diverged runs: {' | '.join(DIVERGED_RULES)} (default zero)."),
    coverage_rule: str = CoverageRuleOpt,
    steps: int = PlanStepsOpt,
    seeds: int = PlanSeedsOpt,
    fmt=FormatOpt,
) -> None:
    """Score the current plan's stored runs against tuned Adam; print IQM [95% CI] per optimizer."""
    spec = load_registry().suite(suite)
    config = ScoreConfig.for_suite(spec, selection=selection, series=series, ema_alpha=alpha, diverged=diverged)
    t0 = time.perf_counter()
    res = score_results(results_path(results), suite, config=config, reps=reps, seed=seed, steps=steps,
                        seeds=seeds, coverage_rule=coverage_rule)
    rows = aggregate_rows(res)
    if fmt.value == "json":
        emit_json(score_document(res))
        return
    table = Table(title=f"suite {suite} v{res.suite_version}: scores vs tuned {config.reference} "
                        f"(IQM [95% CI], {reps} bootstrap reps)")
    for col in ("#", "optimizer", "kind", "final loss", "FL, missing=0", "speedup", "P(>adam)", "coverage",
                "runs", "div/fail"):
        table.add_column(col, no_wrap=col in ("final loss", "speedup", "optimizer"))
    for r in rows:
        poi = "-" if r["poi_vs_reference"] is None else f"{r['poi_vs_reference']:.2f}"
        zf = "-" if r["final_loss_iqm_zero_filled"] is None else f"{r['final_loss_iqm_zero_filled']:.3f}"
        table.add_row(
            str(r["rank"] or "-"), r["optimizer"], r["kind"], _fmt(r["final_loss_iqm"], r["final_loss_ci"]),
            zf, _fmt(r["speedup_iqm"], r["speedup_ci"]), poi, coverage_text(r["tasks"], r["tasks_total"]),
            str(r["runs"]), f"{r['diverged']}/{r['failed']}",
        )
    out.print(table)
    for note in res.notes:
        console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
    for name, why in res.unrun.items():
        console.print(f"[yellow]no result[/] {name}: {escape(why)}", soft_wrap=True)
    edges = res.tasks[res.tasks["edge"] != ""]
    if len(edges):
        console.print(f"[yellow]{len(edges)} tuned points at a grid edge[/] (widen the grid): "
                      + ", ".join(f"{t}/{o} ({e})" for t, o, e in edges[["task", "optimizer", "edge"]].itertuples(index=False)))
    console.print(f"[dim]results {res.fingerprint}, scored in {time.perf_counter() - t0:.1f}s[/]")


def register(app: typer.Typer) -> None:
    app.command("score")(score_command)
