"""Execution settings are declared once (issue 28, part 3): every command that plans or reads a
grid takes them from that declaration, and a run made with one is scored and never pruned."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from _score_fixtures import ENV, record, write
from typer.testing import CliRunner

from celo_bench import strategy
from celo_bench.cli import app
from celo_bench.cli._plan_options import execution_options
from celo_bench.errors import CeloBenchError
from celo_bench.plan import expand
from celo_bench.prune import prune
from celo_bench.store import Store
from celo_bench.suite import Strategy as TaskStrategy
from celo_bench.suite import load_registry

PACKAGE = Path(strategy.__file__).parent
GRID_COMMANDS = ("run", "plan", "status", "score", "report", "prune", "compare-suites", "bench grid", "submit")


def _command(path: str) -> click.Command:
    cmd: click.Command = typer.main.get_command(app)
    for name in path.split():
        cmd = cmd.get_command(click.Context(cmd), name)  # type: ignore[attr-defined]
        assert cmd is not None, f"no command {path!r}"
    return cmd


def _flags(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params for o in p.opts}


@pytest.mark.parametrize("path", GRID_COMMANDS)
def test_every_grid_command_takes_every_declared_setting(path):
    flags = _flags(_command(path))
    assert {s.flag for s in strategy.SETTINGS} <= flags


@pytest.mark.parametrize("path", GRID_COMMANDS)
def test_every_grid_command_refuses_a_value_no_setting_takes(path, tmp_path):
    """One line and exit code 2, before any work: `prune --steps-strategy bogus` used to move
    records as if no setting was given (found by a new-user trial)."""
    extra = ["--suite", "smoke"] if path in ("run", "plan", "status", "score", "report", "bench grid") else []
    args = {"compare-suites": ["smoke", "smoke"], "submit": [str(tmp_path / "nothing")]}.get(path, [])
    res = subprocess.run([sys.executable, "-m", "celo_bench.cli", *path.split(), *args, *extra, "--results",
                          str(tmp_path / "r"), "--steps-strategy", "bogus"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 2, (path, res.stderr)
    assert res.stderr.strip() == "error: --steps-strategy must be one of scan, loop, split, got 'bogus'", res.stderr
    assert not (tmp_path / "r").exists()


def test_the_settings_are_declared_once():
    """The flags are written nowhere but the declaration; the task spec's ``[strategy]`` table,
    the override check and the options all derive from it."""
    names = [s.name for s in strategy.SETTINGS]
    assert names == ["steps", "runs", "xla_opt_level"]
    assert set(TaskStrategy.__annotations__) == set(names)
    for s in strategy.SETTINGS:
        where = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                 if re.search(rf"[\"']{re.escape(s.flag)}[\"']", p.read_text(encoding="utf-8"))]
        assert where == ["strategy.py"], (s.flag, where)
    with pytest.raises(Exception, match="unknown execution setting 'unroll'"):
        strategy.check_overrides({"unroll": 4})


def test_a_new_setting_reaches_the_commands_through_the_declaration(monkeypatch):
    """What `execution_options` adds comes from ``SETTINGS`` alone: a setting declared there
    becomes an option, handed to the command under its name."""
    import celo_bench.cli._plan_options as opts

    extra = strategy.Setting("unroll", "--unroll", (1, 2, 4), "Steps unrolled per block.")
    monkeypatch.setattr(opts, "SETTINGS", (*strategy.SETTINGS, extra))
    seen = {}

    def command(suite: str = typer.Option("smoke", "--suite"), execution: dict | None = None) -> None:
        seen.update(execution or {})

    wrapped = execution_options(command)
    assert {p.name for p in inspect.signature(wrapped).parameters.values()} >= {"suite", "_execution_unroll"}
    mini = typer.Typer()
    mini.command()(wrapped)
    res = CliRunner().invoke(mini, ["--unroll", "4", "--steps-strategy", "loop"])
    assert res.exit_code == 0, res.output
    assert seen == {"unroll": 4, "steps": "loop"}


def test_a_run_with_a_non_default_setting_is_scored_and_never_pruned(tmp_path):
    """A loop-strategy grid (smoke suite, 10 steps): `score`, `status` and `report` read it back
    with the same option; `prune` keeps it (the records state how they ran)."""
    root = str(tmp_path / "results")
    grid = ["--suite", "smoke", "--tasks", "smoke_digits_mlp", "--optimizers", "adam", "--steps", "10",
            "--seeds", "1", "--results", root]
    runner = CliRunner()
    res = runner.invoke(app, ["run", *grid, "--steps-strategy", "loop", "--no-report", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["executed"] == 3
    assert set(Store(root).read(curves=False)["strategy"]) == {"loop+vmap"}

    scoring = ["--suite", "smoke", "--steps", "10", "--seeds", "1", "--results", root]
    res = runner.invoke(app, ["score", *scoring, "--steps-strategy", "loop", "--reps", "20", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ignored_records"] == 0 and [r["optimizer"] for r in doc["rows"]] == ["adam"]
    # the other task and sgd were not run: the note's fix names the setting
    assert doc["rows"][0]["runs"] == 1 and doc["missing_runs"] == {"adam": 3, "sgd": 6}
    assert any("--steps-strategy loop" in n for n in doc["notes"])

    res = runner.invoke(app, ["status", *scoring, "--steps-strategy", "loop", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tasks"]["smoke_digits_mlp"]["done"] == 3

    # without the option the plan is another one: one line naming the options to pass
    res = runner.invoke(app, ["score", *scoring, "--reps", "20"])
    why = str(res.exception)
    assert isinstance(res.exception, CeloBenchError) and "\n" not in why
    assert "loop+vmap" in why and "--steps-strategy" in why and "only `run`" not in why

    res = runner.invoke(app, ["prune", "--results", root, "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["pruned"] == 0
    assert len(Store(root).read(curves=False)) == 3


def test_prune_keeps_records_keyed_on_another_device(tmp_path):
    """A run made on a GPU with ``--steps-strategy split`` has ``split`` in its key (split is
    not the GPU's default), though ``split`` is the CPU's default: prune, on a CPU, keeps it."""
    reg = load_registry()
    (job,) = expand(reg, reg.suite("smoke"), tasks=["smoke_digits_mlp"], optimizers=["adam"], seeds=1,
                    backend="gpu", strategy_overrides={"steps": "split"})
    (cpu_job,) = expand(reg, reg.suite("smoke"), tasks=["smoke_digits_mlp"], optimizers=["adam"], seeds=1,
                        backend="cpu", strategy_overrides={"steps": "split"})
    assert {r.key for r in job.runs}.isdisjoint(r.key for r in cpu_job.runs)
    recs = []
    for r in job.runs:
        rec = record(r.task, r.optimizer, r.seed, [3.0, 2.0, 1.5, 1.2, 1.0, 0.9], lr=r.hparams["learning_rate"],
                     suite="smoke", version="1")
        rec.update(key=r.key, config=r.config, num_steps=r.num_steps,
                   provenance={**ENV, "execution": job.strategy.as_dict(), "backend": "gpu"})
        recs.append(rec)
    write(tmp_path, recs)
    assert set(Store(tmp_path).statuses()) == {r.key for r in job.runs}
    res = prune(tmp_path, registry=reg, dry_run=True)
    assert res.pruned.empty and res.kept == 3
