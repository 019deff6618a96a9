"""``celo-bench bench step-time``: seconds per training step of one run, per (task, optimizer)."""

from __future__ import annotations

from pathlib import Path

import typer

from celo_bench.cli._bench_app import OutOpt, bench_app
from celo_bench.cli._common import Format, FormatOpt, SuiteOpt, console, emit_json, out, split_names


def step_time_command(
    suite: str = SuiteOpt,
    tasks: list[str] = typer.Option(None, "--tasks", "-t", help="Only these tasks (repeat or comma-separate)."),
    optimizers: list[str] = typer.Option(None, "--optimizers", "-o", help="Only these optimizers."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed calls per pair (interleaved)."),
    unroll: int = typer.Option(10, "--unroll", min=1, help="Training steps per timed call."),
    out_dir: Path = OutOpt,
    fmt: Format = FormatOpt,
) -> None:
    """Time one run's training step for every (task, optimizer) of a suite on this device.

    Writes <out>/step_time-<device kind>.json, which scoring and reports read for the
    wall-clock speedup of results run on that device kind.
    """
    from rich.table import Table

    from celo_bench.bench.step_time import device_kind, measure, write

    def progress(task: str, name: str) -> None:
        console.print(f"compiling {task} / {name}...")

    rows = measure(suite, tasks=split_names(tasks, "--tasks"), optimizers_=split_names(optimizers, "--optimizers"), repeats=repeats,
                   unroll=unroll, on_compile=progress if fmt == Format.text else None)
    path = write(rows, out_dir, suite=suite, settings={"repeats": repeats, "unroll": unroll})
    kind, platform = device_kind()
    if fmt == Format.json:
        emit_json({"device_kind": kind, "platform": platform, "file": str(path),
                   "rows": [r.as_json() for r in rows]})
        return
    table = Table(title=f"Seconds per step of one run on {kind} ({platform}), suite {suite}")
    for col in ("task", "optimizer", "ms/step", "note"):
        table.add_column(col, justify="right" if col == "ms/step" else "left")
    for r in rows:
        ms = "-" if r.seconds_per_step is None else f"{r.seconds_per_step * 1e3:.3f}"
        table.add_row(r.task, r.optimizer, ms, r.error[:120])
    out.print(table)
    console.print(f"written to {path}")


def register(app: typer.Typer) -> None:
    bench_app.command("step-time")(step_time_command)
