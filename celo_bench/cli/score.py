"""``celo-bench score``: final loss and speedup vs tuned Adam, IQM with 95% CIs."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from celo_bench.aggregate import CRITERIA, DEFAULT_REPS, DEFAULT_SEED, METRICS
from celo_bench.cli._common import (
    FormatOpt,
    ResultsOpt,
    SuiteOpt,
    console,
    emit_json,
    name_column,
    out,
    results_path,
)
from celo_bench.cli._plan_options import (
    AllowMixedOpt,
    CoverageRuleOpt,
    PlanSeedsOpt,
    PlanStepsOpt,
    ReferencesOpt,
    execution_options,
)
from celo_bench.cli._reporting import store_registry
from celo_bench.results import REFERENCE_MARK, Results, coverage_text, score_results
from celo_bench.score import DIVERGED_RULES, SERIES, ScoreConfig
from celo_bench.suite import SELECTION_RULES


def _num(x) -> float | None:
    """JSON has no NaN: missing numbers are null."""
    return None if x is None or pd.isna(x) else float(x)


def _criteria(r: dict) -> dict:
    """Every criterion (final loss, speedup, wall-clock speedup) and aggregate (IQM, median,
    mean, optimality gap) with its CI: ``<criterion>_<metric>`` and ``<criterion>_<metric>_ci``
    (the IQM's CI is ``<criterion>_ci``), plus each IQM with missing tasks scored 0."""
    out = {}
    for crit in CRITERIA:
        for metric in METRICS:
            base = f"{crit}_{metric}"
            out[base] = _num(r.get(base))
            out[f"{crit}_ci" if metric == "iqm" else f"{base}_ci"] = [_num(r.get(f"{base}_low")),
                                                                       _num(r.get(f"{base}_high"))]
        out[f"{crit}_iqm_zero_filled"] = _num(r.get(f"{crit}_iqm_zero_filled"))
    return out


def aggregate_rows(res: Results) -> list[dict]:
    """The aggregate table as JSON-ready objects, one per optimizer, in leaderboard order,
    with every criterion the leaderboard shows (the wall-clock speedup is null where a
    per-step timing is missing)."""
    rows = []
    for r in res.aggregate.to_dict("records"):
        rows.append({
            "rank": None if pd.isna(r["rank"]) else int(r["rank"]),
            "optimizer": r["optimizer"], "kind": r["optimizer_kind"], "kind_label": r.get("kind_label"),
            "source": r.get("source", "store"),
            **_criteria(r),
            "tasks": int(r["tasks"]), "tasks_total": int(r["tasks_total"]), "coverage": float(r["coverage"]),
            "complete": bool(r["complete"]), "runs": int(r["runs"]),
            "poi_vs_reference": _num(r["poi_vs_reference"]),
            "poi_vs_reference_ci": [_num(r.get("poi_vs_reference_low")), _num(r.get("poi_vs_reference_high"))],
            "diverged": int(r["diverged"]), "failed": int(r["failed"]), "runs_total": int(r["runs_total"]),
            "edges": int(r["edges"]),
        })
    return rows


def score_document(res: Results) -> dict:
    """``score --format json``: the rows plus what was left out of them and why."""
    return {
        "suite": res.suite, "suite_version": res.suite_version, "fingerprint": res.fingerprint,
        "coverage_rule": res.coverage_rule, "device_kind": res.device_kind,
        "timings_missing": [list(k) for k in res.timings_missing], "rows": aggregate_rows(res),
        "planned_runs": res.planned, "ignored_records": res.ignored, "missing_runs": dict(res.missing),
        "not_run": dict(res.unrun), "notes": list(res.notes),
        "references": None if res.references is None else {
            "suite": res.references.suite, "suite_version": res.references.suite_version,
            "environment": dict(res.references.environment), "runs": dict(res.from_references)},
    }


def stacked_rows(rows: list[dict], reference: str) -> list[str]:
    """The ranking as plain lines, each optimizer's numbers under its name (69 columns whatever
    the name's length): for a terminal or file too narrow for the table."""
    cols = f"{'final loss':>22}  {'speedup':>22}  {f'P(>{reference})':>9}  {'tasks':>5}"
    out = ["  #  optimizer", f"     {cols}"]
    for r in rows:
        poi = "-" if r["poi_vs_reference"] is None else f"{r['poi_vs_reference']:.2f}"
        out += [f"{r['rank'] or '-':>3}  {r['optimizer']}",
                f"     {_fmt(r['final_loss_iqm'], r['final_loss_ci']):>22}  {_fmt(r['speedup_iqm'], r['speedup_ci']):>22}"
                f"  {poi:>9}  {coverage_text(r['tasks'], r['tasks_total']):>5}"]
    return out


def _name(r: dict) -> str:
    """The optimizer's name, marked when its runs are reference results (:data:`REFERENCE_MARK`)."""
    return r["optimizer"] + (f" {REFERENCE_MARK}" if r.get("source", "store") != "store" else "")


def _fmt(v: float | None, ci: list) -> str:
    if v is None:
        return "-"
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


@execution_options
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
    allow_mixed: bool = AllowMixedOpt,
    use_references: bool = ReferencesOpt,
    execution: dict | None = None,  # the execution settings, from @execution_options
    fmt=FormatOpt,
) -> None:
    """Score the current plan's stored runs against tuned Adam; print IQM [95% CI] per optimizer."""
    registry = store_registry(results_path(results), quiet=fmt.value == "json")  # with its kept submissions
    spec = registry.suite(suite)
    config = ScoreConfig.for_suite(spec, selection=selection, series=series, ema_alpha=alpha, diverged=diverged)
    t0 = time.perf_counter()
    res = score_results(results_path(results), suite, config=config, reps=reps, seed=seed, steps=steps,
                        seeds=seeds, coverage_rule=coverage_rule, allow_mixed_environments=allow_mixed,
                        execution=execution, registry=registry, references=use_references)
    rows = aggregate_rows(res)
    if fmt.value == "json":
        emit_json(score_document(res))
        return
    names = [_name(r) for r in rows]
    ranking = Table(title=f"suite {suite} v{res.suite_version}: IQM [95% CI] vs tuned {config.reference} "
                          f"({reps} bootstrap reps)", box=box.SIMPLE_HEAD, pad_edge=False)
    ranking.add_column("#", justify="right")
    name_column(ranking, "optimizer", names)
    for col in ("final loss", "speedup", f"P(>{config.reference})", "tasks"):
        ranking.add_column(col, justify="right")  # a CI wraps under its value when the terminal is narrow
    for r in rows:
        poi = "-" if r["poi_vs_reference"] is None else f"{r['poi_vs_reference']:.2f}"
        ranking.add_row(str(r["rank"] or "-"), _name(r), _fmt(r["final_loss_iqm"], r["final_loss_ci"]),
                        _fmt(r["speedup_iqm"], r["speedup_ci"]), poi, coverage_text(r["tasks"], r["tasks_total"]))
    if out.measure(ranking, options=out.options.update_width(10_000)).maximum <= out.width:  # its natural width
        out.print(ranking)
    else:  # a long name: each optimizer's numbers on the line under its name
        out.print(ranking.title, highlight=False)
        out.print("\n".join(stacked_rows(rows, config.reference)), highlight=False, soft_wrap=True)
    wall = any(r["wall_clock_speedup_iqm"] is not None for r in rows)  # timed: `bench step-time`
    out.print()
    details = Table(title="more columns (every one: --format json or `celo-bench report`)", box=box.SIMPLE_HEAD,
                    pad_edge=False)
    name_column(details, "optimizer", names)
    for col in ("FL, missing=0", *((f"wall-clock SU ({res.device_kind})",) if wall else ()), "runs", "div/fail"):
        details.add_column(col, justify="right")
    for r in rows:
        zf = "-" if r["final_loss_iqm_zero_filled"] is None else f"{r['final_loss_iqm_zero_filled']:.3f}"
        details.add_row(r["optimizer"], zf,
                        *((_fmt(r["wall_clock_speedup_iqm"], r["wall_clock_speedup_ci"]),) if wall else ()),
                        str(r["runs"]), f"{r['diverged']}/{r['failed']}")
    out.print(details)
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
