"""Every fix a message prints is a command that exists and works (issue 28, finding 8).

A grid of one tiny task is run for Adam only; ``score`` then says that SGD and NNAdam (which
has no published weights) have no result, and what to do. Every ``celo-bench ...`` command in
those messages must parse (options that exist, values of the right type), and running them
must make the message go away: SGD's run fix trains SGD, and NNAdam's fix says how to get its
weights (running ``run`` alone would execute nothing). The docs and docstrings cite only
files that ship, or the paper by title and arXiv id.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from celo_bench import inputs
from celo_bench.cli import app
from celo_bench.suite import load_registry

ROOT = Path(__file__).resolve().parents[1]
GRID = ["--steps", "10", "--seeds", "1"]
SUITE = """name = "hints"
version = "1"
description = "one tiny task, two baselines and a learned optimizer without published weights"
tasks = ["smoke_digits_mlp"]
optimizers = ["adam", "sgd", "nn_adam"]
seeds = 1

[grids]
adam = { learning_rate = [1e-2] }
sgd = { learning_rate = [1e-1] }
"""


def commands(text: str) -> list[str]:
    """The ``celo-bench ...`` commands a message prints (between backticks)."""
    return [c for c in re.findall(r"`([^`]+)`", text) if c.startswith("celo-bench ")]


def check_parses(command: str) -> None:
    """Parse `command` with the CLI's own parser (nothing runs): the command and each option
    exist and every value has its type."""
    argv = shlex.split(command)
    assert argv[0] == "celo-bench", command
    cmd, words, parent = typer.main.get_command(app), argv[1:], None
    ctx = cmd.make_context("celo-bench", [], resilient_parsing=True)
    while isinstance(cmd, TyperGroup):
        name, words = words[0], words[1:]
        sub = cmd.get_command(ctx, name)
        assert sub is not None, f"{command}: no command '{name}'"
        parent, cmd = ctx, sub
        ctx = cmd.make_context(name, [], parent=parent, resilient_parsing=True)
    try:
        cmd.make_context(ctx.info_name, list(words), parent=parent)
    except Exception as e:  # Typer's (vendored) click: UsageError, NoSuchOption, BadParameter, ...
        if not any(c.__name__ == "UsageError" for c in type(e).__mro__):
            raise
        raise AssertionError(f"{command}: {e.format_message()}") from None


def invoke(*args: str) -> dict | str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, (args, res.output, res.exception)
    out = res.stdout
    return json.loads(out[min(i for i in (out.find("{"), out.find("[")) if i >= 0):]) if "--format" in args else out


@pytest.fixture
def hints_suite(spec_tree, monkeypatch):
    (spec_tree / "tasks" / "suites" / "hints.toml").write_text(SUITE)
    monkeypatch.setenv("CELO_BENCH_SPECS", str(spec_tree))
    monkeypatch.delenv("CELO_BENCH_CHECKPOINTS", raising=False)
    load_registry.cache_clear()
    inputs.clear()  # where weights are is memoised per process
    yield spec_tree
    load_registry.cache_clear()
    inputs.clear()


def score(results: Path) -> dict:
    return invoke("score", "--suite", "hints", *GRID, "--results", str(results), "--reps", "50",
                  "--format", "json")


def test_the_fix_parser_refuses_what_does_not_exist():
    check_parses("celo-bench run --suite smoke --steps 10 -o adam")
    check_parses("celo-bench data prepare --suite paper")  # printed by `list suites`
    for bad in ("celo-bench runn --suite smoke", "celo-bench run --steps ten", "celo-bench prune --steps 10"):
        with pytest.raises(AssertionError):
            check_parses(bad)


@pytest.mark.slow
def test_printed_fixes_of_not_run_and_missing_results_work(tmp_path, hints_suite, monkeypatch):
    results = tmp_path / "my results"  # not the default folder, with a space: the fixes must name it
    invoke("run", "--suite", "hints", *GRID, "-o", "adam", "--results", str(results), "--no-report")
    doc = score(results)
    not_run, notes = doc["not_run"], doc["notes"]
    assert set(not_run) == {"sgd", "nn_adam"}, not_run
    printed = [c for text in [*not_run.values(), *notes] for c in commands(text)]
    assert printed and all(check_parses(c) is None for c in printed)

    # NNAdam: `run` alone would execute nothing; the message says how to get the weights first
    assert "no published weights" in not_run["nn_adam"] and "meta-train nn_adam" in not_run["nn_adam"]
    assert not_run["nn_adam"].index("meta-train") < not_run["nn_adam"].index("celo-bench run")
    # SGD: its printed fix trains it into this store, at this horizon and seed count
    (fix,) = [c for c in commands(not_run["sgd"]) if c.startswith("celo-bench run")]
    assert f"--results {shlex.quote(str(results))}" in fix and "--steps 10 --seeds 1" in fix
    invoke(*shlex.split(fix)[1:], "--no-report")
    doc = score(results)
    assert set(doc["not_run"]) == {"nn_adam"} and "sgd" in {r["optimizer"] for r in doc["rows"]}
    (missing,) = [n for n in doc["notes"] if "planned runs are not stored" in n]
    (run_missing,) = commands(missing)
    check_parses(run_missing)
    invoke(*shlex.split(run_missing)[1:], "--no-report")  # runs what this machine can run: nothing left

    # the weights fix, as printed (only shortened: the smoke preset, two outer steps)
    make, *_ = (c for c in commands(doc["not_run"]["nn_adam"]) if "meta-train" in c)
    export = re.search(r"`export CELO_BENCH_CHECKPOINTS=([^`]+)`", doc["not_run"]["nn_adam"])
    folder = tmp_path / "weights"
    make = make.replace(export.group(1), str(folder))
    invoke(*shlex.split(make)[1:], "--preset", "smoke", "--outer-iterations", "2")
    monkeypatch.setenv("CELO_BENCH_CHECKPOINTS", str(folder))
    inputs.clear()
    invoke(*shlex.split(commands(not_run["nn_adam"])[-1])[1:], "--no-report")
    doc = score(results)
    assert not doc["not_run"] and "nn_adam" in {r["optimizer"] for r in doc["rows"]}


def test_submit_suggests_run_baselines_only_for_baselines_that_can_run(tmp_path, hints_suite):
    """`submit` without --run-baselines: SGD's runs are missing and could run here (the option
    helps); NNAdam's could not (the option would not help: its own fix is printed)."""
    from celo_bench.submission import submit

    results = tmp_path / "results"
    invoke("run", "--suite", "hints", *GRID, "-o", "adam", "--results", str(results), "--no-report")
    res = submit(ROOT / "submissions" / "template", suite="hints", steps=10, seeds=1, results=results,
                 reps=50, out=None)
    (baselines,) = [n for n in res.notes if "--run-baselines" in n]
    assert "sgd (1)" in baselines and "nn_adam" not in baselines
    (nn_adam,) = [n for n in res.notes if "'nn_adam'" in n]
    assert "cannot run here" in nn_adam and "meta-train nn_adam" in nn_adam
    assert all(check_parses(c) is None for n in res.notes for c in commands(n))


# --------------------------------------------------------------------------- citations
SHIPPED_TEXT = [p for d in ("celo_bench", "docs", "tasks", "baselines", "submissions")
                for p in sorted((ROOT / d).rglob("*")) if p.suffix in (".py", ".md", ".toml")] + [ROOT / "README.md"]
NOT_SHIPPED = ("paper-protocol", "learned-optimizers.md", "shared/spec", "velo-adam-reference", "design.md")


def test_docs_and_docstrings_cite_only_what_ships():
    """The project's working notes (`paper-protocol.md`, `learned-optimizers.md`, ...) are not in the
    repository: a citation names a file that ships or the paper by title and arXiv id."""
    bad = [f"{p.relative_to(ROOT)}: {word}" for p in SHIPPED_TEXT for word in NOT_SHIPPED
           if word in p.read_text(encoding="utf-8", errors="replace")]
    assert not bad, bad
    docs = {p.name for p in (ROOT / "docs").glob("*.md")}
    cited = {m for p in SHIPPED_TEXT for m in re.findall(r"docs/([\w-]+\.md)", p.read_text(errors="replace"))}
    assert cited and cited <= docs, cited - docs
    listing = json.dumps(invoke("list", "suites", "--format", "json"))
    assert "paper-protocol" not in listing and "arXiv:2501.12670" in listing
