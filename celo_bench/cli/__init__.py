"""The ``celo-bench`` command line: a thin Typer layer over the Python API.

Commands are loaded lazily: :data:`COMMANDS` names, for every top-level command, the module
of this package whose ``register(app)`` defines it and the one line ``celo-bench --help``
shows. A command's module is imported only when that command runs or prints its own help,
so ``celo-bench --help`` imports neither JAX nor any command's dependencies, and a command
never pays for another's imports. Core code raises
:class:`~celo_bench.errors.CeloBenchError`; :func:`main` turns it into one clear line and
exit code 2. Ctrl-C in any command ends with one line and exit code 130.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from celo_bench.cli._bench_app import bench_app
from celo_bench.cli._common import HELP_MARKUP
from celo_bench.cli._interrupt import exit_interrupted
from celo_bench.errors import CeloBenchError


@dataclass(frozen=True)
class Entry:
    """A top-level command: the modules that register it and its one-line help."""

    modules: tuple[str, ...]
    help: str


def _command_modules() -> list[str]:
    """Modules of this package that define commands (``register(app)``): the public ones."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


COMMANDS: dict[str, Entry] = {
    "run": Entry(("run",), "Run the evaluation grid of a suite; only runs missing from the store are executed."),
    "plan": Entry(("plan",), "Dry run: the runs, jobs and programs of a grid, what is stored and what is "
                  "missing (data, weights), optionally timed."),
    "status": Entry(("run",), "How much of a suite's grid is stored: total, done, missing, failed, diverged."),
    "list": Entry(("listing",), "List registered tasks, optimizers or suites."),
    "score": Entry(("score",), "Score the current plan's stored runs against tuned Adam; print IQM [95% CI] "
                   "per optimizer."),
    "report": Entry(("report",), "Write leaderboard.md, index.html, figures (PNG/PDF) and tables (CSV/MD/TeX) "
                    "to --out."),
    "compare-suites": Entry(("compare_suites",), "Tier agreement: Kendall's tau and Spearman's rho between two "
                            "suites' IQM rankings, with bootstrap CIs, top-5 overlap and a scatter."),
    "prune": Entry(("prune",), "Move records that no current suite plans to <results>/.pruned/."),
    "store": Entry(("store",), "Inspect a results store: its records by schema version (`store check`); "
                   "`--migrate` rewrites old ones."),
    "references": Entry(("references",), "Reference results that ship: make a suite's from a store (a release "
                        "step) and check them against the current plan."),
    "validate": Entry(("submit",), "Check a submission: metadata, search space, checkpoint, then its code in a "
                      "separate, time-limited process."),
    "submit": Entry(("submit",), "Validate a submission, train only its missing runs, score it against tuned "
                    "Adam and rank it."),
    "export": Entry(("bundle",), "Write a submission's runs of a suite, its folder and provenance into one "
                    "bundle file."),
    "verify": Entry(("bundle",), "Rerun each task's tuned point and a sample of a bundle's runs from its own code; "
                    "compare the curves."),
    "import": Entry(("bundle",), "Bring a bundle's runs into a store after checking hashes, keys and versions; "
                    "never runs its code."),
    "data": Entry(("data",), "Prepare and inspect the datasets of the paper tier; remake the ones that ship."),
    "meta-train": Entry(("meta_train",), "Meta-train a learned optimizer (truncated PES, task augmentation, "
                        "Celo's two phases)."),
    "bench": Entry(tuple(m for m in _command_modules() if m.startswith("bench_")),
                   "Benchmarks of speed (engine, optimizer overhead, per-step time of one run, a whole grid)."),
}
"""Command name -> the modules of this package that register it, and its line in ``--help``.

A command module missing here still works (it is imported whenever the command list is
needed), but makes every ``--help`` pay for its imports: add it."""

Command = Any
"""A command object of Typer's (Typer vendors its own click since 0.26: the package imports no click)."""

_LOADED: dict[str, Command] = {}
_REGISTERED: set[str] = set()


def _register(modules: tuple[str, ...] | list[str]) -> None:
    """Import `modules` (once each), let them register, and keep the commands they define."""
    scratch = typer.Typer(rich_markup_mode=HELP_MARKUP)
    todo = [m for m in modules if m not in _REGISTERED]
    for module in todo:
        importlib.import_module(f"{__name__}.{module}").register(scratch)
        _REGISTERED.add(module)
    if any(m.startswith("bench_") for m in todo):  # they add their commands to the shared group
        scratch.add_typer(bench_app, name="bench")
    if todo:
        _LOADED.update(typer.main.get_group(scratch).commands)


def unlisted_modules() -> list[str]:
    """Command modules that :data:`COMMANDS` does not name (each costs every ``--help``)."""
    listed = {m for entry in COMMANDS.values() for m in entry.modules}
    return [m for m in _command_modules() if m not in listed]


def load_command(name: str) -> Command | None:
    """Import the modules of command `name`, let them register, and return its click command."""
    _register(COMMANDS[name].modules if name in COMMANDS else unlisted_modules())
    return _LOADED.get(name)


class LazyGroup(TyperGroup):
    """The root group: lists :data:`COMMANDS` from the table, imports one only to run it."""

    _listing = False

    def list_commands(self, ctx: typer.Context) -> list[str]:
        _register(unlisted_modules())
        return [*COMMANDS, *(n for n in _LOADED if n not in COMMANDS)]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Command | None:
        if cmd_name in COMMANDS and self._listing:  # the root's help needs only name and line
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name].help,
                                short_help=COMMANDS[cmd_name].help)  # wrapped, never cut with ...
        return load_command(cmd_name)

    def invoke(self, ctx: typer.Context):
        """Run the command; Ctrl-C anywhere in it ends with one line and code 130
        (:mod:`celo_bench.cli._interrupt`), before click would print "Aborted!" and exit 1."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            exit_interrupted()

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="celo-bench",
    cls=LazyGroup,
    rich_markup_mode=HELP_MARKUP,
    help="Benchmark neural-network optimizers: run the grid, score against tuned Adam, "
    "regenerate the paper's tables and figures, and rank new submissions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """The root group takes no options of its own; commands come from :data:`COMMANDS`."""


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except CeloBenchError as e:
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        sys.exit(2)
