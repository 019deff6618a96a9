"""``celo-bench run`` and ``celo-bench status``."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from celo_bench.cli._common import (
    FormatOpt,
    OptimizersOpt,
    PlanSeedsOpt,
    PlanStepsOpt,
    ResultsOpt,
    SeedsOpt,
    StepsOpt,
    SuiteOpt,
    TasksOpt,
    console,
    emit_json,
    out,
    split_names,
)
from celo_bench.cli._plan_options import execution_options
from celo_bench.cli._progress import LOG_FOLDER, GridProgress, print_not_run
from celo_bench.cli._reporting import check_out_writable, write_report_if_stale
from celo_bench.defaults import report_dir as default_report_dir
from celo_bench.execute import EXECUTORS, EngineSettings
from celo_bench.runner import RunConfig, run, status
from celo_bench.strategy import flags


@execution_options
def run_command(
    suite: str = SuiteOpt,
    tasks: list[str] = TasksOpt,
    optimizers: list[str] = OptimizersOpt,
    seeds: int = SeedsOpt,
    steps: int = StepsOpt,
    results: Path = ResultsOpt,
    executor: str = typer.Option("local", "--executor", help=f"One of: {', '.join(EXECUTORS)}."),
    address: str = typer.Option(None, "--address", help="Ray cluster address (auto or HOST:PORT)."),
    ray_cpus: float = typer.Option(None, "--ray-cpus-per-job", min=0, envvar="CELO_BENCH_RAY_CPUS_PER_JOB", help="Ray: CPU cores reserved per job (default 1)."),
    ray_gpus: float = typer.Option(None, "--ray-gpus-per-job", min=0, envvar="CELO_BENCH_RAY_GPUS_PER_JOB", help="Ray: GPUs per job; 0.5 packs two jobs on a GPU (default 0)."),
    ray_memory_gb: float = typer.Option(None, "--ray-memory-gb-per-job", min=0, envvar="CELO_BENCH_RAY_MEMORY_GB_PER_JOB", help="Ray: host memory reserved per job, in GB (default none)."),
    ray_max_retries: int = typer.Option(None, "--ray-max-retries", min=0, envvar="CELO_BENCH_RAY_MAX_RETRIES", help="Ray: re-runs of a job whose worker died (default 3)."),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, help="Local executor: jobs at once (default 2 on CPU, 1 on GPU)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Re-execute runs recorded as failed."),
    data: str = typer.Option("real", "--data", help="real | synthetic: random stand-ins of the same shapes (no download; stored in results-synthetic/, never scored)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the report when the grid is done."),
    reports_dir: Path = typer.Option(None, "--out", help="Report folder (default: reports/<suite>; for another --results, <results>/reports/<suite>)."),
    execution: dict | None = None,  # the execution settings, from @execution_options
    fmt=FormatOpt,
) -> None:
    """Run the evaluation grid of a suite; only runs missing from the store are executed."""
    reports_dir = reports_dir or default_report_dir(suite, results)
    config = RunConfig(
        suite=suite, tasks=split_names(tasks, "--tasks"), optimizers=split_names(optimizers, "--optimizers"), seeds=seeds,
        steps=steps, results=results, executor=executor, address=address, retry_failed=retry_failed, data=data,
        engine=EngineSettings(execution=execution or {}, parallel_jobs=jobs),
        executor_options={"num_cpus": ray_cpus, "num_gpus": ray_gpus, "memory_gb": ray_memory_gb,
                          "max_retries": ray_max_retries},
    )
    quiet = fmt.value == "json"
    if report and data != "synthetic":
        check_out_writable(reports_dir)
    log = Path(config.results) / LOG_FOLDER / f"run-{suite}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    tracker = GridProgress(console, quiet=quiet, log=log)
    try:
        summary = run(config, on_job=tracker.job_done, on_plan=tracker.start, on_grid=tracker.planned,
                      on_wait=tracker.waiting)
    except KeyboardInterrupt:
        tracker.interrupted()
        raise  # unreachable: interrupted() exits
    finally:
        tracker.stop()
    report_dir = None
    if report and data == "synthetic":
        if not quiet:
            console.print(f"[dim]synthetic data: records in {config.results} are labelled "
                          f"{suite}@synthetic and never scored[/]")
    elif report:
        report_dir = write_report_if_stale(suite, results, reports_dir, quiet, not_run=summary.unavailable,
                                           grid=tracker.grid, changed=summary.executed > 0,
                                           steps=steps, seeds=seeds, execution=execution)
    if quiet:
        emit_json(summary.as_dict() | {"report": str(report_dir) if report_dir else None})
        return
    share = summary.compile_share
    timing = (f"; compile {summary.compile_seconds:.0f}s + execution {summary.execute_seconds:.0f}s "
              f"summed over jobs ({share:.0%} compile)") if share is not None else ""
    done = (f"done: executed {summary.executed}, already stored {summary.skipped}, "
            f"diverged {summary.diverged}, failed {summary.failed} in {summary.seconds:.1f}s{timing}")
    tracker.write_log(done)
    out.print(escape(done), highlight=False)  # the outcome goes to stdout: `celo-bench run > log` keeps it
    for note in summary.notes:
        console.print(f"[yellow]{escape(note)}[/]", highlight=False)
    if tracker.grid is not None:
        print_not_run(tracker.grid.not_run_groups(), console)
    if summary.failed_stored:
        console.print(f"[yellow]{summary.failed_stored} runs of this grid are stored as failed[/]; "
                      f"re-run them with `celo-bench run --suite {suite}{flags(execution)} --retry-failed`")
    if report_dir:
        out.print(f"report: {report_dir}", highlight=False)
    if tracker.log is not None and tracker.log.exists():
        out.print(f"log: {tracker.log}", highlight=False)


@execution_options
def status_command(suite: str = SuiteOpt, results: Path = ResultsOpt, steps: int = PlanStepsOpt,
                   seeds: int = PlanSeedsOpt, execution: dict | None = None, fmt=FormatOpt) -> None:
    """How much of a suite's grid is stored: total, done, missing, failed, diverged."""
    st = status(RunConfig(suite=suite, results=results, steps=steps, seeds=seeds,
                          engine=EngineSettings(execution=execution or {})))
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
        + (f"  newer {st['newer']} (stored by a newer celo-bench: upgrade to read them)" if st["newer"] else "")
    )
    for line in st["unreadable"]:
        console.print(f"[yellow]{escape(line)}[/]")
    if st["in_references"]:
        console.print(f"{st['in_references']} of the missing runs are in the reference results that ship with "
                      "celo-bench: `score`, `report` and `submit` rank them († rows); `celo-bench run` trains them here")
    if st["not_run"]:
        console.print(f"not run here: {len(st['not_run'])} optimizers ({st['not_run_runs']} of the missing runs)")
        print_not_run([(g["reason"], g["fix"], g["optimizers"]) for g in st["not_run_groups"]], console)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("status")(status_command)
