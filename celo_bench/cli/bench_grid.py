"""``celo-bench bench grid``: a suite's grid into a fresh store; wall time, compile share, runs/s."""

from __future__ import annotations

from pathlib import Path

import typer

from celo_bench.cli._bench_app import OutOpt, bench_app
from celo_bench.cli._common import (
    Format,
    FormatOpt,
    OptimizersOpt,
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
from celo_bench.suite import KIND_LABELS


@execution_options
def grid_command(
    suite: str = SuiteOpt,
    tasks: list[str] = TasksOpt,
    optimizers: list[str] = OptimizersOpt,
    seeds: int = SeedsOpt,
    steps: int = StepsOpt,
    results: Path = typer.Option(None, "--results", "-r", help="Store to fill, new or empty (default: a temporary folder, deleted)."),
    executor: str = typer.Option("local", "--executor", help="local | ray."),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, help="Local executor: jobs at once (default 2 on CPU, 1 on GPU)."),
    cache: str = typer.Option("cold", "--cache", help="cold: an empty compilation cache (a first run); warm: your persistent cache."),
    out_dir: Path = OutOpt,
    execution: dict | None = None,  # the execution settings, from @execution_options
    fmt: Format = FormatOpt,
) -> None:
    """Run a grid into a fresh store and print wall time, compile share and runs/s.

    Writes <out>/grid-<suite>.json.
    """
    from celo_bench.bench import results as bench_results
    from celo_bench.bench.grid import bench_grid
    from celo_bench.execute import EngineSettings
    from celo_bench.provenance import provenance

    done = {"jobs": 0, "runs": 0}

    def on_job(job, records) -> None:
        done["jobs"] += 1
        done["runs"] += len(records)
        console.print(f"job {done['jobs']}: {job.name} ({len(records)} runs)")

    tasks, optimizers = split_names(tasks, "--tasks"), split_names(optimizers, "--optimizers")
    res = bench_grid(
        suite, tasks=tasks, optimizers=optimizers, seeds=seeds, steps=steps,
        results=results, executor=executor, cache=cache,
        engine=EngineSettings(execution=execution or {}, parallel_jobs=jobs),
        on_job=on_job if fmt == Format.text else None,
    )
    settings = {"suite": suite, "tasks": tasks, "optimizers": optimizers,
                "seeds": seeds, "steps": steps, "executor": executor, "jobs": jobs, "cache": cache,
                "execution": execution}
    path = bench_results.write(out_dir, f"grid-{suite}", settings=settings, machine=provenance(),
                               result=res.as_dict())
    if fmt == Format.json:
        emit_json(res.as_dict())
        return
    out.print(
        f"suite {res.suite}: {res.jobs} jobs, {res.runs} runs (compilation cache: {res.compile_cache})\n"
        f"  wall time      {res.wall_seconds:9.1f} s\n"
        f"  compile        {res.compile_seconds:9.1f} s   (summed over jobs)\n"
        f"  run            {res.run_seconds:9.1f} s\n"
        f"  [bold]compile share  {100 * res.compile_share:9.1f} %[/]\n"
        f"  [bold]runs/s         {res.runs_per_second:9.2f}[/]"
    )
    if len(res.by_kind) > 1:
        for kind, k in res.by_kind.items():
            out.print(f"    {KIND_LABELS.get(kind, kind):13s}{k['compile_seconds']:9.1f} s compile, "
                      f"{k['run_seconds']:7.1f} s run, {100 * k['compile_share']:5.1f} % compile "
                      f"({k['jobs']} jobs)")
    if res.failed or res.diverged:
        out.print(f"  failed {res.failed}, diverged {res.diverged}")
    for name, why in sorted(res.unavailable.items()):
        console.print(f"[yellow]not run[/]: {name}: {why}")
    console.print(f"written to {path}")


def register(app: typer.Typer) -> None:
    bench_app.command("grid")(grid_command)
