"""``celo-bench export``, ``celo-bench import`` and ``celo-bench verify``: a submission's runs in one file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from celo_bench.cli._common import (
    FormatOpt,
    PlanSeedsOpt,
    PlanStepsOpt,
    ResultsOpt,
    SuiteOpt,
    console,
    emit_json,
    out,
    results_path,
)
from celo_bench.cli._plan_options import execution_options
from celo_bench.defaults import DEFAULT_RESULTS
from celo_bench.submission.verify import (
    DEFAULT_SAMPLE,
    DEFAULT_TIMEOUT,
    OTHER_DEVICE_TOLERANCE,
    SAME_DEVICE_TOLERANCE,
)

EXIT_FAILED = 2
BundleArg = typer.Argument(..., help="A bundle written by `celo-bench export` (a zip file).")


@execution_options
def export_command(
    submission: str = typer.Argument(..., help="Submission folder, or the name of a submission kept in --results."),
    suite: str = SuiteOpt,
    results: Path = ResultsOpt,
    bundle: Path = typer.Option(None, "--out", help="Bundle file (default: <name>-<suite>.bundle.zip here)."),
    steps: int = PlanStepsOpt,
    seeds: int = PlanSeedsOpt,
    execution: dict | None = None,  # the execution settings, from @execution_options
    fmt=FormatOpt,
) -> None:
    """Write a submission's runs of a suite (from the store), its folder and provenance into one bundle file."""
    from celo_bench.submission.exchange import export_bundle

    res = export_bundle(submission, suite=suite, results=results_path(results), out=bundle, steps=steps,
                        seeds=seeds, execution=execution)
    if fmt.value == "json":
        emit_json(res.as_dict())
        return
    ckpt = res.checkpoint
    what = "" if not ckpt else ("; checkpoint included" if ckpt.get("included") else
                                f"; checkpoint not included ({ckpt.get('reason')}), sha256 {ckpt['sha256']}")
    out.print(f"{res.path}: {res.runs} runs of '{res.name}' on suite {res.suite} v{res.suite_version}{what}")
    out.print(f"sha256 {res.sha256}")


def import_command(
    bundle: Path = BundleArg,
    results: Path = ResultsOpt,
    fmt=FormatOpt,
) -> None:
    """Bring a bundle's runs into a store after checking hashes, keys and versions; never runs its code."""
    from celo_bench.submission.exchange import import_bundle

    res = import_bundle(bundle, results=results_path(results))
    if fmt.value == "json":
        emit_json(res.as_dict())
        return
    out.print(f"imported {res.imported} runs of '{res.name}' (suite {res.suite} v{res.suite_version}) into "
              f"{results}; {res.already} were stored already; submission kept in {res.folder}"
              + (" with its verification" if res.verification_kept else ""))
    for note in res.notes:
        console.print(f"[yellow]note[/]: {note}")


def verify_command(
    bundle: Path = BundleArg,
    sample: int = typer.Option(DEFAULT_SAMPLE, "--sample", "-k", min=0,
                               help="Other runs to rerun besides each task's tuned point (seeded random sample)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random sample."),
    tolerance: float = typer.Option(None, "--tolerance", min=0.0,
                                    help=f"Largest relative difference allowed (default: {SAME_DEVICE_TOLERANCE:g} "
                                         f"on the records' device kind, {OTHER_DEVICE_TOLERANCE:g} on another)."),
    timeout: float = typer.Option(DEFAULT_TIMEOUT, "--timeout", min=1.0, help="Seconds allowed for the rerun (a separate process)."),
    results: Path = typer.Option(DEFAULT_RESULTS, "--results", "-r",
                                 help="Store whose .submissions/<name>/verification.json gets the result."),
    fmt=FormatOpt,
) -> None:
    """Rerun each task's tuned point and a sample of a bundle's runs from its own code; compare the curves."""
    from celo_bench.submission.verify import verify_bundle

    v = verify_bundle(bundle, results=results_path(results), sample=sample, seed=seed, timeout=timeout,
                      tolerance=tolerance)
    if fmt.value == "json":
        emit_json(v.as_dict())
    else:
        table = Table(title=f"{v.name} on suite {v.suite} v{v.suite_version}: reruns on {v.device or '?'}",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("task", "run", "seed", "why", "status", "max rel. diff", "ok"):
            # at 80 columns the task stays whole and the rest fold: nothing is cut off
            table.add_column(col, no_wrap=col == "task", overflow="fold")
        for r in v.runs:
            status = r.status if r.status == r.rerun_status else f"{r.status} -> {r.rerun_status}"
            table.add_row(r.task, escape(r.hparam_id), str(r.seed), r.why, status, f"{r.max_rel_diff:.3g}",
                          "yes" if r.ok else "[red]no[/]")
        if v.runs:
            out.print(table)
        if v.verified:
            out.print(f"verified: {len(v.runs)} runs within {max(r.tolerance for r in v.runs):g} (largest relative "
                      f"difference {v.max_rel_diff:.3g}) in {v.seconds:.0f}s")
        if v.written:
            console.print(f"written: {v.written}")
    if not v.verified:
        typer.secho(f"error: not verified: {v.problem or 'no run could be rerun'}", err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("import")(import_command)
    app.command("verify")(verify_command)
