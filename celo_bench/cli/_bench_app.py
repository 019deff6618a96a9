"""The ``celo-bench bench`` command group; modules add their benchmarks to ``bench_app``."""

import typer

bench_app = typer.Typer(help="Benchmarks that print speed ratios (engine, optimizer overhead).", no_args_is_help=True)
