"""The ``celo-bench bench`` command group; modules add their benchmarks to ``bench_app``."""

from pathlib import Path

import typer

from celo_bench.bench.results import DEFAULT_OUT
from celo_bench.paths import require_writable

bench_app = typer.Typer(
    help="Benchmarks of speed (engine, optimizer overhead, a whole grid); results go to "
    f"<--out>/<benchmark>.json (default {DEFAULT_OUT}/).",
    no_args_is_help=True,
)


def _writable(out: Path) -> Path:
    """--out is checked as it is parsed: a benchmark never runs only to find it cannot save."""
    require_writable(out, "benchmark folder", "pass --out DIR with a writable folder (nothing was run)")
    return out


OutOpt = typer.Option(DEFAULT_OUT, "--out", callback=_writable,
                      help="Folder of benchmark results (<out>/<benchmark>.json).")
