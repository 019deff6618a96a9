"""``celo-bench bench tier``: is every task of a suite in its family's regime?

Reads tuned Adam's runs from the store where it has runs of the suite's plan, else from the
reference results that ship (``docs/references.md``), and prints, per task, tuned Adam's
loss fraction (final smoothed / initial eval train loss), its family's band from the
paper's tasks (:mod:`celo_bench.regime`), the horizon, and the share of speedup scores
that are exactly 0 (a task where most optimizers never reach tuned Adam's final loss
cannot rank them by speedup). Exit code 1 when a task is out of its band.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Table

from celo_bench.bench import results as bench_results
from celo_bench.cli._bench_app import OutOpt, bench_app
from celo_bench.cli._common import (
    Format,
    FormatOpt,
    ResultsOpt,
    SuiteOpt,
    console,
    emit_json,
    out,
    results_path,
)
from celo_bench.cli._plan_options import (
    AllowMixedOpt,
    PlanSeedsOpt,
    PlanStepsOpt,
    execution_options,
)
from celo_bench.provenance import provenance
from celo_bench.regime import task_regimes
from celo_bench.results import score_results
from celo_bench.suite import load_registry


@execution_options
def tier_command(
    suite: str = SuiteOpt,
    results: Path = ResultsOpt,
    steps: int = PlanStepsOpt,
    seeds: int = PlanSeedsOpt,
    allow_mixed: bool = AllowMixedOpt,
    out_dir: Path = OutOpt,
    execution: dict | None = None,  # the execution settings, from @execution_options
    fmt: Format = FormatOpt,
) -> None:
    """Check each task's regime: tuned Adam's loss fraction against its family's paper band."""

    reg = load_registry()
    res = score_results(results_path(results), suite, reps=10, steps=steps, seeds=seeds,
                        allow_mixed_environments=allow_mixed, execution=execution, registry=reg)
    # tuned Adam of this store where it has runs of the plan, else the shipped reference results'
    source = (f"the reference results shipped with celo-bench ({res.references.device})"
              if res.config.reference in res.from_references and res.references is not None else "this store")
    families = {t: reg.task(t).family for t in res.suite_tasks}
    rows = task_regimes(res.runs, res.scores, families, reference=res.config.reference)
    missing = sorted(set(res.suite_tasks) - {r.task for r in rows})
    doc = [r.as_json() for r in rows]
    bench_results.write(out_dir, f"tier-{suite}", settings={"suite": suite, "steps": steps, "seeds": seeds},
                        machine=provenance(), rows=doc)
    if fmt == Format.json:
        emit_json(doc)
    else:
        table = Table(title=f"suite {suite} v{res.suite_version}: tuned Adam's loss fraction vs its family's "
                            "band (paper tasks at step 2,000: \\[min/2, 2*max])", box=box.SIMPLE_HEAD, pad_edge=False,
                      padding=(0, 0))
        # short headers so that whole names fit 80 columns (T: steps; SU=0: share of zero speedup scores)
        for col in ("task", "family", "T", "fraction", "band", "in", "SU=0"):
            table.add_column(col, justify="left" if col in ("task", "family") else "right", no_wrap=True)
        for r in rows:
            band = "-" if r.band is None else f"{r.band[0]:.3g}-{r.band[1]:.3g}"
            table.add_row(r.task, r.family, str(r.steps), f"{r.fraction:.3f}", band,
                          "yes" if r.in_band else "[red]NO[/]", f"{r.zero_speedup_share:.0%}")
        out.print(table)
        out.print(f"tuned {res.config.reference}: {source}", highlight=False)
        for task in missing:
            console.print(f"[yellow]no tuned {res.config.reference} runs[/] for {task}: run "
                          f"`celo-bench run --suite {suite} --tasks {task}` first")
    if any(not r.in_band for r in rows):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    bench_app.command("tier")(tier_command)
