"""The ``celo-bench`` command line: a thin Typer layer over the Python API.

Each module in this package that defines ``register(app)`` adds its commands; core code
raises :class:`~celo_bench.errors.CeloBenchError` and :func:`main` turns it into one
clear line and exit code 2.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from celo_bench.errors import CeloBenchError

app = typer.Typer(
    name="celo-bench",
    help="Benchmark neural-network optimizers: run the grid, score against tuned Adam, "
    "regenerate the paper's tables and figures, and rank new submissions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    _module = importlib.import_module(f"{__name__}.{_mod}")
    if hasattr(_module, "register"):
        _module.register(app)


from celo_bench.cli._bench_app import bench_app  # noqa: E402

app.add_typer(bench_app, name="bench")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except CeloBenchError as e:
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        sys.exit(2)
