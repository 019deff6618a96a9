"""``celo-bench run`` and ``celo-bench status``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from celo_bench.cli._common import FormatOpt, ResultsOpt, SuiteOpt, console, emit_json, split_names
from celo_bench.execute import EXECUTORS, EngineSettings
from celo_bench.runner import RunConfig, run, status


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def run_command(
    suite: str = SuiteOpt,
    tasks: list[str] = typer.Option(None, "--tasks", "-t", help="Only these tasks (repeat or comma-separate)."),
    optimizers: list[str] = typer.Option(None, "--optimizers", "-o", help="Only these optimizers."),
    seeds: int = typer.Option(None, "--seeds", min=1, help="Seeds per grid point (default: the suite's)."),
    steps: int = typer.Option(None, "--steps", min=1, help="Horizon override (default: suite, then task)."),
    results: Path = ResultsOpt,
    executor: str = typer.Option("local", "--executor", help=f"One of: {', '.join(EXECUTORS)}."),
    address: str = typer.Option(None, "--address", help="Ray cluster address (auto or HOST:PORT)."),
    ray_cpus: float = typer.Option(None, "--ray-cpus-per-job", min=0, envvar="CELO_BENCH_RAY_CPUS_PER_JOB", help="Ray: CPU cores reserved per job (default 1)."),
    ray_gpus: float = typer.Option(None, "--ray-gpus-per-job", min=0, envvar="CELO_BENCH_RAY_GPUS_PER_JOB", help="Ray: GPUs per job; 0.5 packs two jobs on a GPU (default 0)."),
    ray_memory_gb: float = typer.Option(None, "--ray-memory-gb-per-job", min=0, envvar="CELO_BENCH_RAY_MEMORY_GB_PER_JOB", help="Ray: host memory reserved per job, in GB (default none)."),
    ray_max_retries: int = typer.Option(None, "--ray-max-retries", min=0, envvar="CELO_BENCH_RAY_MAX_RETRIES", help="Ray: re-runs of a job whose worker died (default 3)."),
    steps_strategy: str = typer.Option(None, "--steps-strategy", help="scan | loop (default: measured per family)."),
    runs_strategy: str = typer.Option(None, "--runs-strategy", help="vmap | sequential (default: measured per family)."),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, help="Local executor: jobs at once (default 2 on CPU, 1 on GPU)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Re-execute runs recorded as failed."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the report when the grid is done."),
    reports_dir: Path = typer.Option(Path("reports"), "--out", help="Report folder."),
    fmt=FormatOpt,
) -> None:
    """Run the evaluation grid of a suite; only runs missing from the store are executed."""
    config = RunConfig(
        suite=suite, tasks=split_names(tasks), optimizers=split_names(optimizers), seeds=seeds,
        steps=steps, results=results, executor=executor, address=address, retry_failed=retry_failed,
        engine=EngineSettings(steps_strategy=steps_strategy, runs_strategy=runs_strategy, parallel_jobs=jobs),
        executor_options={"num_cpus": ray_cpus, "num_gpus": ray_gpus, "memory_gb": ray_memory_gb,
                          "max_retries": ray_max_retries},
    )
    quiet = fmt.value == "json"
    progress = _progress()
    state: dict = {}

    def on_plan(todo):
        n = sum(len(j.runs) for j in todo)
        if not quiet:
            progress.start()
            state["bar"] = progress.add_task(f"{suite} grid", total=n)

    def on_job(job, records):
        bad = sum(r["status"] != "ok" for r in records)
        if not quiet:
            progress.update(state["bar"], advance=len(records))
            note = f" [yellow]{bad} not ok[/]" if bad else ""
            progress.console.log(f"{job.name}: {len(records)} runs{note}")

    try:
        summary = run(config, on_job=on_job, on_plan=on_plan)
    finally:
        if not quiet and progress.live.is_started:
            progress.stop()
    report_dir = None
    if report:
        report_dir = _report(suite, results, reports_dir, quiet)
    if quiet:
        emit_json(summary.as_dict() | {"report": str(report_dir) if report_dir else None})
    else:
        console.print(
            f"[bold]done[/]: executed {summary.executed}, skipped {summary.skipped} (already stored), "
            f"diverged {summary.diverged}, failed {summary.failed} in {summary.seconds:.1f}s"
        )
        for name, why in summary.unavailable.items():
            console.print(f"[yellow]skipped {name}[/]: {why}")
        if report_dir:
            console.print(f"report: {report_dir}")


def _report(suite: str, results: Path, out: Path, quiet: bool) -> Path | None:
    try:
        from celo_bench.report import write_report
    except ImportError:
        if not quiet:
            console.print("[dim]report skipped: the report module is not available in this build[/]")
        return None
    from celo_bench.errors import CeloBenchError

    try:
        return write_report(suite=suite, results=results, out=out)
    except CeloBenchError as e:  # e.g. a partial grid without the Adam reference
        console.print(f"[yellow]report skipped[/]: {e}")
        return None


def status_command(suite: str = SuiteOpt, results: Path = ResultsOpt, fmt=FormatOpt) -> None:
    """How much of a suite's grid is stored: total, done, missing, failed, diverged."""
    st = status(RunConfig(suite=suite, results=results))
    if fmt.value == "json":
        emit_json(st)
        return
    table = Table(title=f"suite {suite} in {results}")
    for col in ("task", "done", "total"):
        table.add_column(col)
    for name, row in st["tasks"].items():
        table.add_row(name, str(row["done"]), str(row["total"]))
    console.print(table)
    console.print(
        f"total {st['total']}  done {st['done']}  missing {st['missing']}  "
        f"ok {st['ok']}  diverged {st['diverged']}  failed {st['failed']}"
    )


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("status")(status_command)
