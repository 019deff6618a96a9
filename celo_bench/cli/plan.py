"""``celo-bench plan``: what a grid will cost before it runs (dry run; ``--calibrate`` probes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from celo_bench.cli._common import (
    FormatOpt,
    OptimizersOpt,
    SeedsOpt,
    StepsOpt,
    SuiteOpt,
    TasksOpt,
    console,
    emit_json,
    name_column,
    out,
    split_names,
)
from celo_bench.cli._plan_options import execution_options
from celo_bench.defaults import DEFAULT_RESULTS
from celo_bench.plan import DATA_CHOICES, DEFAULT_SYNTHETIC_RESULTS
from celo_bench.strategy import BACKENDS, backend_kind

GiB = 2**30
DEFAULT_DEVICE_GIB = 140.0
"""Device memory assumed for an accelerator plan without ``--calibrate``: one H200 (140 GiB)."""
XLA_PREALLOCATE = 0.75
"""Share of the device JAX's allocator may take by default (``XLA_PYTHON_CLIENT_MEM_FRACTION``)."""


def _budget(backend: str, device_gib: float | None) -> int:
    from celo_bench.engine import memory

    if backend == "cpu":
        return memory.budget_from_stats(None, "cpu")
    limit = XLA_PREALLOCATE * (device_gib or DEFAULT_DEVICE_GIB) * GiB
    return memory.budget_from_stats({"bytes_limit": limit}, backend)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _hours(s: float) -> str:
    return f"{s / 3600:.2f} h" if s >= 360 else f"{s:.0f} s"


@execution_options
def plan_command(
    suite: str = SuiteOpt,
    tasks: list[str] = TasksOpt,
    optimizers: list[str] = OptimizersOpt,
    seeds: int = SeedsOpt,
    steps: int = StepsOpt,
    results: Path = typer.Option(DEFAULT_RESULTS, "--results", "-r", help="Results store folder (synthetic default: results-synthetic)."),
    data: str = typer.Option("real", "--data", help=f"One of: {', '.join(DATA_CHOICES)}."),
    backend: str = typer.Option(None, "--backend", help=f"Device the grid will run on: {', '.join(BACKENDS)} (default: this machine's; with --calibrate: the probed device)."),
    device_memory_gib: float = typer.Option(None, "--device-memory-gib", min=1, help=f"Accelerator memory for the chunking estimate (default {DEFAULT_DEVICE_GIB:g}, one H200)."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Time a few steps of Adam and Celo per task family on this device and project the grid's wall time."),
    probe_steps: int = typer.Option(20, "--probe-steps", min=1, help="Steps per calibration probe."),
    probe_seeds: int = typer.Option(None, "--probe-seeds", min=1, help="Seeds per grid point in the probes (default: as --seeds; fewer makes a CPU probe quicker)."),
    execution: dict | None = None,  # the execution settings, from @execution_options
    fmt=FormatOpt,
) -> None:
    """Dry run: runs, jobs and compiled programs of a grid, what is stored, missing data and
    weights (with the commands that fetch them), the store's size and, with --calibrate, time."""
    from celo_bench import calibration, pricing
    from celo_bench.suite import load_registry

    if data == "synthetic" and Path(results) == DEFAULT_RESULTS:
        results = DEFAULT_SYNTHETIC_RESULTS
    if not calibrate:
        calibration.pin_to_host()  # shape tracing only: never touch or preallocate an accelerator
    reg = load_registry()
    names = split_names(tasks, "--tasks") or list(reg.suite(suite).tasks)
    device_backend = calibration.device_backend() if calibrate else None
    backend = backend or device_backend or backend_kind()
    budget = calibration.device_budget() if calibrate and backend == device_backend else _budget(backend, device_memory_gib)
    sizes = calibration.task_sizes(reg.task(n) for n in names)
    p = pricing.price(
        reg, suite, tasks=split_names(tasks, "--tasks"), optimizers=split_names(optimizers, "--optimizers"), seeds=seeds, steps=steps,
        data=data, results=results, backend=backend, memory_budget=budget, sizes=sizes,
        execution=execution,
    )
    if calibrate:
        def note(pr: Any) -> None:
            if fmt.value != "json":
                console.print(f"[dim]probe {pr.task} x {pr.optimizer}: {pr.runs} runs, {pr.num_steps} steps, "
                              f"compile {pr.compile_s:.1f}s, run {pr.run_s:.1f}s[/]")

        p.projection = calibration.calibrate(p, reg, probe_steps=probe_steps,
                                             seeds=probe_seeds or seeds, on_probe=note)
    if fmt.value == "json":
        emit_json(p.as_dict())
    else:
        _print(p)


def _print(p: Any) -> None:
    c = p.counts
    label = f" (labelled {p.suite_label}, never scored)" if p.data == "synthetic" else ""
    out.print(f"[bold]plan[/] suite {p.suite}, data {p.data}{label}, backend {p.backend}, "
              f"results {p.results}")
    out.print(f"  {c['runs']:,} runs ({c['runs_handcrafted']:,} hand-crafted/extra + {c['runs_learned']:,} learned) "
              f"on {c['tasks']} tasks x {c['optimizers']} optimizers; {c['task_steps']:,} task-steps")
    budget = f", memory budget {_size(p.memory_budget_bytes)} per program" if p.memory_budget_bytes else ""
    out.print(f"  {c['jobs']} jobs -> {c['chunks']} chunks -> {c['programs']} compiled programs{budget}")
    for strat, row in p.by_strategy().items():
        out.print(f"    {strat}: {row['jobs']} jobs, {row['programs']} programs, {row['runs']:,} runs")
    st = p.stored
    out.print(f"  stored: {st['stored']:,} of {st['total']:,} (ok {st['ok']}, diverged {st['diverged']}, "
              f"failed {st['failed']}); to do: {c['runs_to_do']:,}")
    s = p.storage
    measured = (f"; stored records measure {_size(s['measured_bytes_per_record'])} each"
                if s.get("measured_bytes_per_record") else "")
    out.print(f"  store: ~{_size(s['bytes'])} for {s['records']:,} records (~{_size(s['bytes_per_record'])} each)"
              f"{measured}")
    table = Table(title="tasks", show_lines=False)
    name_column(table, "task", [row["task"] for row in p.by_task()])
    for col in ("runs", "stored", "jobs", "programs", "params", "MB/run"):
        table.add_column(col, justify="right")
    for row in p.by_task():
        table.add_row(row["task"], f"{row['runs']:,}", str(row["stored"]), str(row["jobs"]), str(row["programs"]),
                      f"{row.get('n_params', 0):,}", f"{row.get('bytes_per_run', 0) / 1e6:.0f}")
    out.print(table)
    missing = [d for d in p.datasets if not d["present"]]
    out.print(f"  datasets: {len(p.datasets) - len(missing)} present, {len(missing)} missing")
    for d in missing:
        out.print(f"    [yellow]missing[/] {d['dataset']} (~{d.get('download', '?')}, tasks: {', '.join(d['tasks'])})"
                  f"\n      fetch: {d['command']}")
    gone = [k for k in p.checkpoints if not k["present"]]
    out.print(f"  learned-optimizer weights: {len(p.checkpoints) - len(gone)} present, {len(gone)} missing "
              f"({c['runs_without_weights']:,} runs would be skipped)")
    for k in gone:
        fix = f"\n      fix: {escape(k['command'])}" if k["command"] else ""
        out.print(f"    [yellow]not available[/] {k['optimizer']} ({k['runs']} runs): {escape(k['reason'])}{fix}")
    if p.projection:
        pr = p.projection
        out.print(f"  projected on {pr['device']} ({pr['platform']}): {_hours(pr['seconds'])} "
                  f"= {pr['device_hours']:.2f} device-hours (compile {_hours(pr['compile_seconds'])}, "
                  f"train {_hours(pr['train_seconds'])}), from {pr['probe_steps']}-step probes")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
