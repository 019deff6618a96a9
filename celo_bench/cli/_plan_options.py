"""Options shared by ``score``, ``report``, ``status`` and ``prune``: which plan's records to use."""

from __future__ import annotations

import typer

from celo_bench.aggregate import COVERAGE_RULES, DEFAULT_COVERAGE_RULE
from celo_bench.cli._common import PlanSeedsOpt, PlanStepsOpt

CoverageRuleOpt = typer.Option(
    DEFAULT_COVERAGE_RULE, "--coverage-rule",
    help=f"How rows without a score on every task rank: {' | '.join(COVERAGE_RULES)}.",
)

__all__ = ["CoverageRuleOpt", "PlanSeedsOpt", "PlanStepsOpt"]
