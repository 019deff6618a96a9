"""``celo-bench references build|check``: make a suite's reference results from a store, check them against the plan."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import typer
from rich.markup import escape

from celo_bench.cli._common import (
    FormatOpt,
    ResultsOpt,
    SuiteOpt,
    console,
    emit_json,
    out,
    results_path,
)
from celo_bench.cli._plan_options import PlanSeedsOpt, PlanStepsOpt, execution_options
from celo_bench.errors import CeloBenchError

references_app = typer.Typer(help="Reference results that ship with the package: make them (a release step) "
                             "and check them against the current plan.", no_args_is_help=True)

DirOpt = typer.Option(None, "--dir", help="Folder of references (default: the package's, or $CELO_BENCH_REFERENCES).")


@references_app.command("build")
@execution_options
def build_command(
    suite: str = SuiteOpt,
    results: Path = ResultsOpt,
    dest: Path = DirOpt,
    steps: int = PlanStepsOpt,
    seeds: int = PlanSeedsOpt,
    series: str = typer.Option(",".join(("eval_train_loss", "eval_valid_loss", "eval_test_loss")), "--series",
                               help="Loss series kept, comma-separated (the per-step train_loss never is)."),
    execution: dict | None = None,  # the execution settings, from @execution_options
    fmt=FormatOpt,
) -> None:
    """Pack the suite's stored results (every optimizer that runs offline, all its planned runs stored) into
    <dir>/<suite>/results.parquet and its manifest.json, and remember their bootstrap intervals in
    intervals.json (docs/references.md)."""
    from celo_bench import references
    from celo_bench.results import remember_reference_intervals

    t0 = time.perf_counter()
    command = "celo-bench " + shlex.join(sys.argv[1:]) if sys.argv[1:3] == ["references", "build"] else None
    built = references.build(suite, results_path(results), out=dest, steps=steps, seeds=seeds,
                             execution=execution or None, series=[s.strip() for s in series.split(",") if s.strip()],
                             command=command)
    m = built.manifest
    remember_reference_intervals(suite, built.folder.parent, steps=steps, seeds=seeds, execution=execution or None)
    if fmt.value == "json":
        emit_json({"folder": str(built.folder), "records": m.records, "bytes": m.bytes, "sha256": m.sha256,
                   "optimizers": list(m.keys), "left_out": dict(m.left_out), "environment": dict(m.environment),
                   "seconds": round(time.perf_counter() - t0, 2)})
        return
    out.print(f"references of suite {suite} v{m.suite_version}: {m.records} runs of {len(m.keys)} optimizers, "
              f"{m.bytes / 2**20:.2f} MiB ({built.bytes_per_record:.0f} bytes per run), made on {m.device}, in "
              f"{built.folder}", highlight=False)
    for name, why in m.left_out.items():
        console.print(f"[yellow]left out[/] {name}: {escape(why)}", soft_wrap=True)
    out.print(f"sha256 {m.sha256}", highlight=False)


@references_app.command("check")
def check_command(
    suite: str = typer.Option(None, "--suite", "-s", help="Suite to check (default: every suite with references)."),
    dest: Path = DirOpt,
    fmt=FormatOpt,
) -> None:
    """Compare each suite's references with the plan of now: run keys, suite and engine versions, sha256."""
    from celo_bench import references

    names = [suite] if suite else references.suites(dest)
    found = {name: references.check(name, dest) for name in names}
    if fmt.value == "json":
        emit_json({"suites": found, "ok": not any(found.values())})
    else:
        if not names:
            out.print(f"no reference results in {dest or references.root()}", highlight=False)
        for name, lines in found.items():
            if not lines:
                out.print(f"{name}: the references match the current plan", highlight=False)
            for line in lines:
                console.print(f"[red]{escape(name)}[/]: {escape(line)}", soft_wrap=True)
    bad = [n for n, lines in found.items() if lines]
    if bad:
        raise CeloBenchError(f"the references of {', '.join(bad)} do not match the current plan: remake them with "
                             f"`celo-bench references build --suite {bad[0]}` on the store of the release "
                             "(docs/references.md)")


def register(app: typer.Typer) -> None:
    app.add_typer(references_app, name="references")
