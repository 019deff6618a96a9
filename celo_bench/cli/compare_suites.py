"""``celo-bench compare-suites A B``: how far one suite's ranking agrees with another's."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from celo_bench import fileio
from celo_bench.aggregate import DEFAULT_REPS, DEFAULT_SEED
from celo_bench.bench.results import DEFAULT_OUT as BENCH_DIR
from celo_bench.cli._common import (
    Format,
    FormatOpt,
    ResultsOpt,
    console,
    emit_json,
    out,
    results_path,
)
from celo_bench.cli._plan_options import AllowMixedOpt, execution_options
from celo_bench.compare import compare, text
from celo_bench.errors import CeloBenchError
from celo_bench.paths import require_writable
from celo_bench.results import score_results


@execution_options
def compare_suites_command(
    suite_a: str = typer.Argument(..., help="First suite (e.g. the cheap tier, quick)."),
    suite_b: str = typer.Argument(..., help="Second suite (e.g. fmnist)."),
    results: Path = ResultsOpt,
    reps: int = typer.Option(DEFAULT_REPS, "--reps", min=1, help="Bootstrap repetitions."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Bootstrap seed."),
    bench_dir: Path = typer.Option(BENCH_DIR, "--bench", help="Folder of step_time-<kind>.json (wall-clock "
                                   "speedup)."),
    out_dir: Path = typer.Option(None, "--out", help="Also write comparison.json and the scatter "
                                 "(tier_agreement_<A>_<B>.png/.pdf) here."),
    allow_mixed: bool = AllowMixedOpt,
    execution: dict | None = None,  # the execution settings of both grids, from @execution_options
    fmt: Format = FormatOpt,
) -> None:
    """Kendall's tau and Spearman's rho (95% bootstrap CIs) between two suites' IQM rankings, top-5 overlap."""
    from celo_bench.report.figures import save, tier_scatter

    if out_dir is not None:  # before the bootstrap, not after it
        require_writable(out_dir, "folder", "choose another --out")
    root = results_path(results)
    res_a = score_results(root, suite_a, reps=reps, seed=seed, bench_dir=bench_dir,
                          allow_mixed_environments=allow_mixed, execution=execution)
    res_b = score_results(root, suite_b, reps=reps, seed=seed, bench_dir=bench_dir,
                          allow_mixed_environments=allow_mixed, execution=execution)
    c = compare(res_a, res_b)
    mixed = [f"suite {r.suite}: {line}" for r in (res_a, res_b) for line in r.mixed_environments]
    doc = c.as_json() | {"device_kind": c.device_kind} | ({"notes": mixed} if mixed else {})
    if out_dir is not None:
        folder = Path(out_dir).expanduser()
        try:
            paths = save(tier_scatter(c), folder, f"tier_agreement_{suite_a}_{suite_b}")
            fileio.atomic_write_text(folder / f"comparison_{suite_a}_{suite_b}.json", json.dumps(doc, indent=2) + "\n")
        except OSError as e:
            raise CeloBenchError(f"could not write to {folder}: {e.strerror or e}; choose another --out") from None
        console.print(f"written to {folder}: {', '.join(p.name for p in paths)}, comparison_{suite_a}_{suite_b}.json")
    if fmt == Format.json:
        emit_json(doc)
        return
    out.print(text(c), end="", markup=False, highlight=False)
    for line in mixed:
        console.print(f"[yellow]note[/]: {escape(line)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("compare-suites")(compare_suites_command)
