"""``celo-bench bench engine``."""

from __future__ import annotations

from pathlib import Path

import typer

from celo_bench.cli._bench_app import OutOpt, bench_app
from celo_bench.cli._common import FormatOpt, console, emit_json, out


def engine_command(
    steps: int = typer.Option(1000, "--steps", min=10, help="Horizon of every run (multiple of 10)."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed repeats per side (median kept)."),
    out_dir: Path = OutOpt,
    fmt=FormatOpt,
) -> None:
    """Time a 15-run job (Adam, 5 lrs x 3 seeds, 8x8 MLP 64-32-10) in the engine vs a per-step loop."""
    from celo_bench.bench import results
    from celo_bench.bench.engine import bench_engine
    from celo_bench.provenance import provenance

    res = bench_engine(steps=steps, repeats=repeats)
    path = results.write(out_dir, "engine", settings={"steps": steps, "repeats": repeats},
                         machine=provenance(), result=res.as_dict())
    if fmt.value == "json":
        emit_json(res.as_dict())
        return
    out.print(
        f"{res.runs} runs x {res.steps} steps (compile excluded, median of {repeats})\n"
        f"  engine (scan + vmap, one program): {res.engine_seconds:8.3f} s   (compile {res.engine_compile_seconds:.2f} s)\n"
        f"  jitted step in a Python loop:      {res.loop_seconds:8.3f} s\n"
        f"  [bold]speed ratio: {res.ratio:.1f}x[/]   (max |loss difference| {res.max_abs_diff:.2e})"
    )
    console.print(f"written to {path}")


def register(app: typer.Typer) -> None:
    bench_app.command("engine")(engine_command)
