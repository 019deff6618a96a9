"""Options and output helpers shared by the CLI commands."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

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

console = Console(stderr=True, soft_wrap=True)  # long lines stay whole in log files (a terminal wraps them)
out = Console(soft_wrap=True)


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
