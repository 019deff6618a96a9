"""``celo-bench validate PATH`` and ``celo-bench submit PATH``: rank a new optimizer."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

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
from celo_bench.cli._plan_options import ReferencesOpt, execution_options
from celo_bench.cli._progress import GridProgress
from celo_bench.cli._reporting import check_out_writable
from celo_bench.defaults import report_dir
from celo_bench.paths import require_writable

EXIT_INVALID = 2
TimeoutOpt = typer.Option(
    180.0, "--timeout", min=1.0, help="Seconds allowed for the code checks (run in a separate process)."
)


def _print_failures(report, quiet: bool) -> None:
    """One line per failure (what is wrong -- fix: how), on stderr."""
    if quiet or report.ok:
        return
    for line in report.lines():
        typer.secho(f"error: {line}", err=True, fg=typer.colors.RED)
    console.print(f"[red]{report.folder}: {len(report.failures)} problem(s); nothing was run or written[/]")


def validate_command(
    path: Path = typer.Argument(..., help="Submission folder (submission.toml + optimizer.py)."),
    timeout: float = TimeoutOpt,
    fmt=FormatOpt,
) -> None:
    """Check a submission: metadata, search space, checkpoint, then its code in a separate, time-limited process."""
    from celo_bench.submission import validate_submission

    report = validate_submission(path, timeout=timeout)
    if fmt.value == "json":
        emit_json(report.as_dict())
    elif report.ok:
        sub = report.submission
        console.print(f"[green]ok[/]: {sub.name} ({sub.kind}) passed {len(report.passed)} checks in "
                      f"{report.seconds:.1f}s: {', '.join(report.passed)}")
        console.print(f"optimizer.py sha256 {report.source_sha256}")
        if report.checkpoint_sha256:
            console.print(f"checkpoint sha256 {report.checkpoint_sha256}")
    _print_failures(report, fmt.value == "json")
    if not report.ok:
        raise typer.Exit(EXIT_INVALID)


def _ci(row: dict, metric: str) -> str:
    import math

    v = row.get(f"{metric}_iqm")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f} [{row[f'{metric}_iqm_low']:.3f}, {row[f'{metric}_iqm_high']:.3f}]"


def _print_ranking(res) -> None:
    from celo_bench.results import REFERENCE_MARK  # deferred: `validate` needs no scoring libraries

    table = Table(title=f"suite {res.suite} v{res.suite_version}: IQM [95% CI] relative to tuned adam",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right")
    name_column(table, "optimizer", [f"{r['optimizer']} <- new" for r in res.leaderboard])
    for col in ("final loss", "speedup", "tasks"):  # a CI wraps under its value on a narrow terminal
        table.add_column(col, justify="right")
    for r in res.leaderboard:
        mine = r["optimizer"] == res.name
        rank = "-" if r["rank"] != r["rank"] else str(int(r["rank"]))  # NaN: unranked
        ref = f" {REFERENCE_MARK}" if r.get("source", "store") != "store" else ""  # from reference results
        name = f"[bold]{r['optimizer']} <- new[/]" if mine else escape(r["optimizer"]) + ref
        table.add_row(rank, name, _ci(r, "final_loss"), _ci(r, "speedup"), f"{r['tasks']}/{r['tasks_total']}")
    out.print(table)
    if res.from_references:
        out.print(f"{REFERENCE_MARK} reference results shipped with celo-bench ({sum(res.from_references.values())} "
                  "runs): this store has none of their runs", highlight=False)
    if res.rank is None:
        out.print(f"{res.name}: not ranked")
    else:
        out.print(f"{res.name} ranks {res.rank} of {res.of}: final loss IQM {_ci(res.row, 'final_loss')}, "
                  f"speedup IQM {_ci(res.row, 'speedup')}")


@execution_options
def submit_command(
    path: Path = typer.Argument(..., help="Submission folder (submission.toml + optimizer.py)."),
    suite: str = SuiteOpt,
    results: Path = ResultsOpt,
    reports_dir: Path = typer.Option(None, "--out", help="Report folder (default: reports/<suite>; for another --results, <results>/reports/<suite>)."),
    steps: int = typer.Option(None, "--steps", min=1, help="Horizon override (must match the stored baselines)."),
    seeds: int = typer.Option(None, "--seeds", min=1, help="Seeds override (must match the stored baselines)."),
    run_baselines: bool = typer.Option(
        False, "--run-baselines/--no-run-baselines",
        help="Run missing baseline runs first (default: use the store, report what is missing)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Rewrite the report with the new row marked."),
    reps: int = typer.Option(None, "--reps", min=1, help="Bootstrap repetitions (default 2000)."),
    timeout: float = TimeoutOpt,
    executor: str = typer.Option("local", "--executor", help="local | ray (as for `celo-bench run`)."),
    address: str = typer.Option(None, "--address", help="Ray cluster address (auto or HOST:PORT)."),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, help="Local executor: jobs at once (default 2 on CPU, 1 on GPU)."),
    use_references: bool = ReferencesOpt,
    execution: dict | None = None,  # the execution settings, from @execution_options
    fmt=FormatOpt,
) -> None:
    """Validate a submission, train only its missing runs, score it against tuned Adam and rank it.

    The runs go through the same path as `celo-bench run` (same checks, same executors);
    Ray's per-job resources come from the CELO_BENCH_RAY_* variables (docs/ray.md).
    """
    from celo_bench.execute import EngineSettings
    from celo_bench.submission import SubmissionInvalid, submit

    quiet = fmt.value == "json"
    reports_dir = reports_dir or report_dir(suite, results_path(results))
    require_writable(results_path(results), "results folder",
                     "choose another --results or fix its permissions (nothing was run)")
    if report:
        check_out_writable(reports_dir)  # before any training, not after it

    tracker = GridProgress(console, quiet=quiet)  # the progress lines of `run`: k/N jobs and runs, ETA

    def on_plan(todo):
        if not quiet and not todo:
            console.print("nothing to train: every run is stored")
        tracker.start(todo)

    def on_ranked(res):  # printed before the report is written
        tracker.stop()
        if quiet:
            return
        s = res.summary
        console.print(f"[bold]{res.name}[/]: executed {s.executed}, skipped {s.skipped} (already stored), "
                      f"diverged {s.diverged}, failed {s.failed}"
                      + (f"; baseline runs executed {res.baselines_run}" if res.baselines_run else ""))
        _print_ranking(res)
        for note in res.notes:
            console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)

    try:
        res = submit(path, suite=suite, results=results_path(results), out=reports_dir if report else None,
                     steps=steps, seeds=seeds, run_baselines=run_baselines, timeout=timeout, reps=reps,
                     executor=executor, address=address, engine=EngineSettings(execution=execution or {}, parallel_jobs=jobs),
                     on_plan=on_plan, on_job=tracker.job_done, on_ranked=on_ranked, references=use_references)
    except SubmissionInvalid as e:
        if quiet:
            emit_json({"ok": False, **e.report.as_dict()})
        _print_failures(e.report, quiet)
        raise typer.Exit(EXIT_INVALID) from None
    finally:
        tracker.stop()
    if quiet:
        emit_json({"ok": True, **res.as_dict()})
        return
    if res.report:
        console.print(f"report: {res.report}/leaderboard.md (row marked)")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_command)
    app.command("submit")(submit_command)
