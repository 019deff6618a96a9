"""``celo-bench prune``: move stored records that no current suite plans out of the store."""

from __future__ import annotations

from pathlib import Path

import typer

from celo_bench.cli._common import (
    FormatOpt,
    ResultsOpt,
    console,
    emit_json,
    out,
    results_path,
    split_names,
)
from celo_bench.cli._plan_options import execution_options
from celo_bench.prune import prune


@execution_options
def prune_command(
    suites: list[str] = typer.Option(
        None, "--suite", "-s", help="Only records of these suites (repeat or comma-separate; default: all)."
    ),
    results: Path = ResultsOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would move."),
    execution: dict | None = None,  # settings to plan besides those the records state (@execution_options)
    fmt=FormatOpt,
) -> None:
    """Move records that no current suite plans (old specs, grids or versions) to <results>/.pruned/.

    Records made at other horizons (`run --steps`) or with other execution settings (the
    records state them) are planned as they were made, so they are never moved."""
    res = prune(results_path(results), suites=split_names(suites, "--suite"), dry_run=dry_run,
                execution=execution)
    counts = res.counts()
    if fmt.value == "json":
        emit_json({
            "dry_run": res.dry_run, "pruned": len(res.pruned), "kept": res.kept,
            "unregistered_kept": res.unregistered,
            "destination": str(res.destination) if res.destination else None,
            "by_task_optimizer": counts.to_dict("records"),
        })
        return
    for r in counts.itertuples(index=False):
        out.print(f"{r.task} / {r.optimizer}: {r.records}")
    verb = "would move" if res.dry_run else "moved"
    where = f" to {res.destination}" if res.destination else ""
    console.print(f"{verb} {len(res.pruned)} records not in any current plan{where}; kept {res.kept}"
                  + (f" (and {res.unregistered} of optimizers outside the registry)" if res.unregistered else ""),
                  soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_command)
