"""Options of the commands that plan or read a grid, declared in one place.

``run``, ``plan``, ``status``, ``score``, ``report``, ``prune``, ``compare-suites``, ``bench
grid`` and ``submit`` take the execution settings through :func:`execution_options`: one
option per :data:`celo_bench.strategy.SETTINGS` entry, so a setting added there reaches every
command, and a grid run with ``--steps-strategy loop`` is read back by ``score --steps-strategy
loop``. The plain options below (``--steps``, ``--seeds``, ``--coverage-rule``) are shared the
ordinary way: a parameter default.

To add an option to the scoring commands, declare it here (``NameOpt = typer.Option(...)``) and
name it as a parameter default in each command, as ``CoverageRuleOpt`` is.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from celo_bench.aggregate import COVERAGE_RULES, DEFAULT_COVERAGE_RULE
from celo_bench.cli._common import PlanSeedsOpt, PlanStepsOpt
from celo_bench.environment import ALLOW_OPTION
from celo_bench.strategy import SETTINGS, Setting, check_overrides

CoverageRuleOpt = typer.Option(
    DEFAULT_COVERAGE_RULE, "--coverage-rule",
    help=f"How rows without a score on every task rank: {' | '.join(COVERAGE_RULES)}.",
)

AllowMixedOpt = typer.Option(
    False, ALLOW_OPTION,
    help="Score records of one task made in different environments (device kind, backend, jax, jaxlib, "
         "optax, flax) instead of refusing; the mix is noted.",
)

ReferencesOpt = typer.Option(
    True, "--references/--no-references",
    help="Rank the reference results shipped with celo-bench for the suite's optimizers this store has no "
         "run of (rows marked; their environment may differ from the store's, which is noted); "
         "--no-references: this store alone.",
)

EXECUTION = "execution"
"""The parameter through which a decorated command receives the execution settings."""

F = TypeVar("F", bound=Callable[..., Any])


def _param(s: Setting) -> str:
    return f"_{EXECUTION}_{s.name}"


def execution_options(command: F) -> F:
    """Give `command` one option per execution setting (:data:`celo_bench.strategy.SETTINGS`).

    `command` declares a parameter ``execution: dict | None = None``; it receives the settings
    given on the command line as one dict, setting name -> value (unset ones left out), ready for
    :class:`~celo_bench.execute.EngineSettings` or ``score_results(execution=...)``. The
    options appear in ``--help`` just before ``--format`` (or last).
    """
    sig = inspect.signature(command)
    if EXECUTION not in sig.parameters:
        raise TypeError(f"{command.__name__} must take a parameter named '{EXECUTION}'")
    options = [
        inspect.Parameter(
            _param(s), inspect.Parameter.KEYWORD_ONLY, annotation=s.type | None,
            default=typer.Option(None, s.flag, help=f"{s.help} Part of the run key when set."),
        )
        for s in SETTINGS
    ]
    params = [p for p in sig.parameters.values() if p.name != EXECUTION]
    at = next((i for i, p in enumerate(params) if p.name == "fmt"), len(params))
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
    params = params[:at] + options + params[at:]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {s.name: kwargs.pop(_param(s), None) for s in SETTINGS}
        given = {k: v for k, v in given.items() if v is not None}
        check_overrides(given, SETTINGS)  # one line for a value no setting takes, whichever command was given it
        return command(*args, **kwargs, **{EXECUTION: given})

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


__all__ = ["AllowMixedOpt", "CoverageRuleOpt", "PlanSeedsOpt", "PlanStepsOpt", "execution_options"]
