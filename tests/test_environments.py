"""No silent mixing of versions or devices: the environment (device kind, backend, jax, jaxlib,
optax, flax) is recorded in every record, is not part of the run key, and scoring refuses to
compare the records of one task made in two environments unless told to (then it says so).

The bug-report input is rebuilt with two fake jax versions.
"""

from __future__ import annotations

import json

import pytest
from _score_fixtures import ENV, decaying, record, registry, write
from typer.testing import CliRunner

from celo_bench import environment
from celo_bench.cli import app
from celo_bench.environment import ALLOW_OPTION, FIELDS, MixedEnvironmentsError
from celo_bench.results import score_results
from celo_bench.suite import load_registry

OLD, NEW = "0.4.99-fake", "0.5.99-fake"


def grid(tasks=("t1", "t2"), env_of=lambda task, opt, seed: ENV, seeds=2):
    """Records of adam and o on `tasks` (o is better); `env_of` gives each record's provenance."""
    return [record(t, opt, s, decaying(3, 2.0, end), env=env_of(t, opt, s))
            for t in tasks for opt, end in (("adam", 1.0), ("o", 0.8)) for s in range(seeds)]


def test_every_record_carries_the_environment():
    from celo_bench.provenance import provenance

    prov = provenance()
    assert all(prov.get(f) for f in FIELDS), prov
    import flax
    import jax
    import optax

    assert (prov["jax"], prov["optax"], prov["flax"]) == (jax.__version__, optax.__version__, flax.__version__)


def test_two_jax_versions_in_one_task_are_refused_in_one_line_naming_task_field_values_and_fix(tmp_path):
    reg = registry(["t1", "t2"], ["adam", "o"], steps=20)
    # after an upgrade `run` resumed into the same keys: o's seed 1 on t2 came from the new jax
    write(tmp_path, grid(env_of=lambda t, o, s: ENV | {"jax": NEW if (t, o, s) == ("t2", "o", 1) else OLD}))
    with pytest.raises(MixedEnvironmentsError) as err:
        score_results(tmp_path, "fx", registry=reg, reps=20)
    line = str(err.value)
    assert "\n" not in line
    assert "task t2" in line and "jax" in line and OLD in line and NEW in line and ALLOW_OPTION in line
    assert "t1" not in line  # t1's records agree
    res = score_results(tmp_path, "fx", registry=reg, reps=20, allow_mixed_environments=True)
    assert res.mixed_environments == (f"mixed environments scored ({ALLOW_OPTION}): jax {OLD} vs {NEW} in task t2",)
    assert res.mixed_environments[0] in res.notes
    assert set(res.aggregate["optimizer"]) == {"adam", "o"}  # scored as asked


@pytest.mark.parametrize("field", FIELDS)
def test_a_difference_in_any_environment_field_is_refused(tmp_path, field):
    reg = registry(["t1"], ["adam", "o"], steps=20)
    write(tmp_path, grid(tasks=("t1",), env_of=lambda t, o, s: ENV | {field: "other" if o == "o" else ENV[field]}))
    with pytest.raises(MixedEnvironmentsError, match=f"task t1 .*{environment.LABELS[field]} "):
        score_results(tmp_path, "fx", registry=reg, reps=20)


def test_a_field_missing_from_old_records_never_matches_not_even_another_missing_one(tmp_path):
    reg = registry(["t1"], ["adam", "o"], steps=20)
    # records written before jaxlib, optax and flax were recorded: all lack them
    old = {k: v for k, v in ENV.items() if k not in ("jaxlib", "optax", "flax")}
    write(tmp_path, grid(tasks=("t1",), env_of=lambda t, o, s: old))
    with pytest.raises(MixedEnvironmentsError, match=r"task t1 .*jaxlib unknown \(adam 2, o 2\): not recorded"):
        score_results(tmp_path, "fx", registry=reg, reps=20)
    write(tmp_path / "half", grid(tasks=("t1",), env_of=lambda t, o, s: ENV if o == "adam" else old))
    with pytest.raises(MixedEnvironmentsError, match=r"jaxlib 0.0.test \(adam 2\) vs unknown \(o 2\)"):
        score_results(tmp_path / "half", "fx", registry=reg, reps=20)
    res = score_results(tmp_path, "fx", registry=reg, reps=20, allow_mixed_environments=True)
    assert any("jaxlib unknown in task t1" in n for n in res.notes)


def test_environments_may_differ_between_tasks_and_a_failed_record_holds_no_numbers(tmp_path):
    reg = registry(["t1", "t2"], ["adam", "o"], steps=20)
    recs = grid(env_of=lambda t, o, s: ENV | {"device": "gpu-kind" if t == "t2" else "cpu"})
    failed = record("t1", "o", 2, [4.0], status="failed", num_steps=20, env={"executor": "ray"})
    write(tmp_path, [*recs, failed])
    res = score_results(tmp_path, "fx", registry=reg, reps=20)
    assert res.mixed_environments == () and not any("mixed" in n for n in res.notes)


def test_the_environment_is_not_part_of_the_run_key():
    a = record("t1", "adam", 0, [2.0, 1.5, 1.0], env=ENV | {"jax": OLD})
    b = record("t1", "adam", 0, [2.0, 1.5, 1.0], env=ENV | {"jax": NEW, "device": "other"})
    assert a["key"] == b["key"]


def _smoke_store(root, env_of):
    tasks = ["smoke_digits_mlp", "smoke_digits_ae"]
    recs = [record(t, opt, s, decaying(6, 2.0, end), lr=lr, suite="smoke", env=env_of(t, opt, s))
            for t in tasks for opt, end in (("adam", 1.0), ("sgd", 1.2)) for lr in (1e-3, 1e-2) for s in range(2)]
    write(root, recs, load_registry())


@pytest.mark.parametrize("command", [["score"], ["score", "--format", "json"]])
def test_the_scoring_commands_refuse_a_mix_unless_told_and_then_note_it(tmp_path, command):
    _smoke_store(tmp_path, lambda t, o, s: ENV | {"jax": NEW if o == "sgd" and s == 1 else OLD})
    args = [*command, "--suite", "smoke", "--results", str(tmp_path), "--reps", "20"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0
    assert isinstance(res.exception, MixedEnvironmentsError) and ALLOW_OPTION in str(res.exception)
    ok = CliRunner().invoke(app, [*args, ALLOW_OPTION])
    assert ok.exit_code == 0, ok.output
    if "json" in command:
        notes = json.loads(ok.stdout)["notes"]
    else:
        notes = [ln for ln in ok.output.splitlines() if ln.startswith("note:")]
    assert sum(f"jax {OLD} vs {NEW}" in n for n in notes) == 1


def test_every_scoring_command_takes_the_option():
    from celo_bench.cli import load_command

    for name in ("score", "report", "compare-suites"):
        assert any(ALLOW_OPTION in p.opts for p in load_command(name).params), name


def test_a_report_of_a_mix_is_refused_unless_told_and_then_notes_it(tmp_path):
    from celo_bench.report import write_report

    reg = registry(["t1"], ["adam", "o"], steps=20)
    write(tmp_path / "r", grid(tasks=("t1",), env_of=lambda t, o, s: ENV | {"jax": NEW if o == "o" else OLD}))
    with pytest.raises(MixedEnvironmentsError):
        write_report(suite="fx", results=tmp_path / "r", out=tmp_path / "out", registry=reg, reps=20)
    out = write_report(suite="fx", results=tmp_path / "r", out=tmp_path / "out", registry=reg, reps=20,
                       allow_mixed_environments=True)
    board = (out / "leaderboard.md").read_text()
    assert f"jax {OLD} vs {NEW} in task t1" in board
