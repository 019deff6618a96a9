"""``celo-bench bench overhead``: per-step time of every optimizer relative to Adam."""

from __future__ import annotations

from pathlib import Path

import typer

from celo_bench.cli._bench_app import OutOpt, bench_app
from celo_bench.cli._common import Format, FormatOpt, console, emit_json, out, split_names


def overhead_command(
    optimizers: list[str] = typer.Option(None, "--optimizers", "-o", help="Subset to time (default: all)."),
    repeats: int = typer.Option(7, "--repeats", min=1, help="Timed calls per optimizer (interleaved)."),
    unroll: int = typer.Option(10, "--unroll", min=1, help="Training steps per timed call."),
    out_dir: Path = OutOpt,
    fmt: Format = FormatOpt,
) -> None:
    """Per-step time of every optimizer vs Adam on the runtime task (3x128 MLP, CIFAR-100 shape).

    Writes <out>/overhead.json, which the report's runtime table reads.
    """
    from rich.table import Table

    from celo_bench.bench import results
    from celo_bench.bench.overhead import TITLE, measure
    from celo_bench.provenance import provenance

    def progress(name: str) -> None:
        console.print(f"compiling {name}...")

    rows = measure(split_names(optimizers, "--optimizers"), repeats=repeats, unroll=unroll,
                   on_compile=progress if fmt == Format.text else None)
    path = results.write(
        out_dir, "overhead", settings={"repeats": repeats, "unroll": unroll, "task": TITLE},
        machine=provenance(), rows=[r.as_json() for r in rows if r.ms_per_step is not None],
    )
    if fmt == Format.json:
        emit_json([r.as_json() for r in rows])
        return
    table = Table(title=TITLE)
    for col in ("optimizer", "kind", "ms/step", "x Adam", "note"):
        table.add_column(col, justify="right" if col in ("ms/step", "x Adam") else "left")
    for r in rows:
        ms = "-" if r.ms_per_step is None else f"{r.ms_per_step:.2f}"
        ratio = "-" if r.ratio_vs_adam is None else f"{r.ratio_vs_adam:.2f}"
        table.add_row(r.optimizer, r.kind, ms, ratio, r.error or r.meta_params)
    out.print(table)
    console.print(f"written to {path}")


def register(app: typer.Typer) -> None:
    bench_app.command("overhead")(overhead_command)
