"""Options and output helpers shared by the CLI commands."""

from __future__ import annotations

import json
import shutil
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from celo_bench.defaults import DEFAULT_RESULTS, DEFAULT_SUITE
from celo_bench.errors import CeloBenchError


class Format(StrEnum):
    text = "text"
    json = "json"


SuiteOpt = typer.Option(DEFAULT_SUITE, "--suite", "-s", help="Suite manifest (see `celo-bench list suites`).")
ResultsOpt = typer.Option(DEFAULT_RESULTS, "--results", "-r", help="Results store folder.")
FormatOpt = typer.Option(Format.text, "--format", "-f", help="Output format.")
TasksOpt = typer.Option(None, "--tasks", "-t", help="Only these tasks (repeat or comma-separate).")
OptimizersOpt = typer.Option(None, "--optimizers", "-o", help="Only these optimizers.")
SeedsOpt = typer.Option(None, "--seeds", min=1, help="Seeds per grid point (default: the suite's).")
StepsOpt = typer.Option(None, "--steps", min=1, help="Horizon override (default: suite, then task).")
PlanStepsOpt = typer.Option(
    None, "--steps", min=1, help="The horizon the grid was run with (`run --steps`; default: suite, then task).",
)
PlanSeedsOpt = typer.Option(
    None, "--seeds", min=1, help="Seeds per grid point the grid was run with (default: the suite's).",
)

HELP_MARKUP = "rich" if sys.stdout.isatty() and shutil.get_terminal_size().columns >= 100 else None
"""How ``--help`` is drawn: Rich's panels on a terminal of 100 columns or more; otherwise (a narrow
terminal, or output redirected to a file) click's plain layout, which wraps the help text and never
cuts an option's name short (Rich's option panel does, below ~100 columns)."""

console = Console(stderr=True, soft_wrap=True)  # long lines stay whole in log files (a terminal wraps them)
out = Console(soft_wrap=True)


def name_column(table: Table, header: str, names: list[str], **options: Any) -> None:
    """Add a column of names a user must type (optimizers, tasks): never wrapped, never cut short
    (it is as wide as the longest name; the other columns give way)."""
    table.add_column(header, no_wrap=True, overflow="ignore",
                     min_width=max([len(header), *(len(str(n)) for n in names)]), **options)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def split_names(values: list[str] | None, option: str) -> list[str] | None:
    """Accept both ``--tasks a --tasks b`` and ``--tasks a,b``; None when `option` is absent.

    Raises:
      CeloBenchError: the option was given but names nothing (``--tasks ""`` or ``--tasks ,``),
        which would otherwise silently mean "all".
    """
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    if not out:
        raise CeloBenchError(f"{option} names nothing; leave it out to mean all, or name at least one")
    return out


def results_path(path: Path) -> Path:
    return Path(path).expanduser()
