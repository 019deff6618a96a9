"""``celo-bench report``: leaderboard, figures and tables from a results folder."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import typer

from celo_bench.aggregate import DEFAULT_REPS, DEFAULT_SEED
from celo_bench.cli._common import FormatOpt, ResultsOpt, SuiteOpt, console, emit_json, results_path
from celo_bench.cli._plan_options import (
    AllowMixedOpt,
    CoverageRuleOpt,
    PlanSeedsOpt,
    PlanStepsOpt,
    ReferencesOpt,
    execution_options,
)
from celo_bench.cli._reporting import check_out_writable, store_registry
from celo_bench.defaults import report_dir
from celo_bench.errors import CeloBenchError
from celo_bench.execute import EngineSettings
from celo_bench.report import embed, write_report
from celo_bench.runner import RunConfig, plan_run


@execution_options
def report_command(
    suite: str = SuiteOpt,
    results: Path = ResultsOpt,
    out: Path = typer.Option(None, "--out", "-o", help="Report folder (default: reports/<suite>; for another "
                             "--results, <results>/reports/<suite>)."),
    site: Path = typer.Option(None, "--site", help="Write a static site into this folder instead: the leaderboard "
                              "and one page per optimizer, images as files, relative links (any static host)."),
    reps: int = typer.Option(DEFAULT_REPS, "--reps", min=1, help="Bootstrap repetitions (rliable default: 50000)."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Bootstrap seed."),
    embed_into: Path = typer.Option(
        None, "--embed", help="Also replace the leaderboard block in this file (e.g. README.md)."
    ),
    coverage_rule: str = CoverageRuleOpt,
    bench_dir: Path = typer.Option(None, "--bench", help="Benchmark folder with overhead.json and step_time-*.json (default: benchmarks)."),
    steps: int = PlanStepsOpt,
    seeds: int = PlanSeedsOpt,
    allow_mixed: bool = AllowMixedOpt,
    use_references: bool = ReferencesOpt,
    execution: dict | None = None,  # the execution settings, from @execution_options
    fmt=FormatOpt,
) -> None:
    """Write leaderboard.md, index.html, figures (PNG/PDF) and tables (CSV/MD/TeX) to --out.

    Submissions kept in the store (by `celo-bench submit` or `import`) are ranked with the
    suite's optimizers. With --site DIR the report is a static site: one page per optimizer
    (curves per task, provenance, submission card, verification status) and images as files.
    """
    if site is not None and out is not None:
        raise CeloBenchError("--site and --out both name the folder to write: pass one of them")
    store = results_path(results)
    out = site or out or report_dir(suite, store)
    check_out_writable(out)  # before the scoring and the bootstrap, not after them
    registry = store_registry(store, quiet=fmt.value == "json")  # with the submissions kept in the store
    t0 = time.perf_counter()
    command = "celo-bench " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["report"] else None
    planned = plan_run(RunConfig(suite=suite, results=store, steps=steps, seeds=seeds, registry=registry,
                                 engine=EngineSettings(execution=execution or {})))
    folder = write_report(suite=suite, results=store, out=out, reps=reps, seed=seed,
                          command=command, steps=steps, seeds=seeds, coverage_rule=coverage_rule,
                          not_run=planned.not_run, bench_dir=bench_dir, allow_mixed_environments=allow_mixed,
                          execution=execution, registry=registry, site=site is not None,
                          references=use_references)
    embedded = None
    if embed_into is not None:
        if not embed(Path(folder / "leaderboard.md").read_text(encoding="utf-8"), embed_into):
            raise CeloBenchError(f"{embed_into} has no leaderboard markers; add the two marker lines "
                                 f"from {folder / 'leaderboard.md'} where the table should go")
        embedded = str(embed_into)
    seconds = time.perf_counter() - t0
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    if fmt.value == "json":
        emit_json({"out": str(folder), "files": files, "embedded": embedded, "seconds": round(seconds, 2)})
        return
    what = "site" if site is not None else "report"
    console.print(f"{what}: {folder}/index.html and {len(files)} files in {seconds:.1f}s")
    if embedded:
        console.print(f"leaderboard embedded in {embedded}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
