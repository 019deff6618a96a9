"""Options shared by ``score``, ``report`` and ``prune``: which plan's records to use."""

from __future__ import annotations

import typer

from celo_bench.aggregate import COVERAGE_RULES, DEFAULT_COVERAGE_RULE

CoverageRuleOpt = typer.Option(
    DEFAULT_COVERAGE_RULE, "--coverage-rule",
    help=f"How rows without a score on every task rank: {' | '.join(COVERAGE_RULES)}.",
)
PlanStepsOpt = typer.Option(
    None, "--steps", min=1, help="The horizon the grid was run with (`run --steps`; default: suite, then task).",
)
PlanSeedsOpt = typer.Option(
    None, "--seeds", min=1, help="Seeds per grid point the grid was run with (default: the suite's).",
)
