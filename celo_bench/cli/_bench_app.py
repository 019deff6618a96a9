"""The ``celo-bench bench`` command group; modules add their benchmarks to ``bench_app``."""

import typer

from celo_bench.bench.results import DEFAULT_OUT

bench_app = typer.Typer(
    help="Benchmarks of speed (engine, optimizer overhead, a whole grid); results go to "
    f"<--out>/<benchmark>.json (default {DEFAULT_OUT}/).",
    no_args_is_help=True,
)

OutOpt = typer.Option(DEFAULT_OUT, "--out", help="Folder of benchmark results (<out>/<benchmark>.json).")
