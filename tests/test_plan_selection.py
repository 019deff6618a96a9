"""Scoring uses exactly the records of the current plan, chosen by planned run key; prune
moves the rest aside (issue 15, case 3)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from _score_fixtures import grid_records, write
from typer.testing import CliRunner

from celo_bench.errors import CeloBenchError
from celo_bench.plan import expand, program_identity, reusers_last
from celo_bench.prune import PRUNED_DIR, prune
from celo_bench.results import score_results, select_records
from celo_bench.store import Store
from celo_bench.suite import Registry, load_registry

TASKS = ["smoke_digits_mlp", "smoke_digits_ae"]
GRIDS = {"adam": (1e-3, 1e-2, 1e-1), "sgd": (1e-2, 1e-1, 1.0)}  # the smoke suite's grids


def smoke_records(name: str, quality: float) -> list[dict]:
    """Every planned point of `name` on the smoke suite (2 tasks x 3 lrs x 2 seeds, 50 steps)."""
    return grid_records(TASKS, {name: ("handcrafted", quality)}, seeds=2, n=6, lrs=GRIDS[name],
                        suite="smoke", version="1")


def edited_adam(reg: Registry, **defaults) -> Registry:
    """The registry with Adam's spec edited (e.g. a new eps): new run keys, same suite version."""
    adam = reg.optimizers["adam"]
    return dataclasses.replace(reg, optimizers={**reg.optimizers, "adam": dataclasses.replace(
        adam, defaults={**adam.defaults, **defaults})})


@pytest.fixture
def reg() -> Registry:
    return load_registry()


def test_fixture_keys_are_the_plans_keys(reg, tmp_path):
    write(tmp_path, smoke_records("adam", 1.0), reg)
    planned = {r.key for j in expand(reg, reg.suite("smoke"), optimizers=["adam"]) for r in j.runs}
    assert set(Store(tmp_path).statuses()) == planned


def test_two_configurations_of_one_grid_point_score_with_the_current_one(reg, tmp_path):
    # issue 15 case 3: smoke grid stored, Adam's eps edited, the grid run again into the same store
    write(tmp_path, smoke_records("adam", 1.0) + smoke_records("sgd", 1.3), reg)
    new = edited_adam(reg, eps=1e-6)
    write(tmp_path, smoke_records("adam", 2.0), new)  # the new Adam: twice the old final loss
    assert len(Store(tmp_path).read(curves=False)) == 36
    old = score_results(tmp_path, "smoke", registry=reg, reps=20)
    res = score_results(tmp_path, "smoke", registry=new, reps=20)
    assert res.ignored == 12 and old.ignored == 12 and res.missing == {}
    note = next(n for n in res.notes if n.startswith("ignored 12 stored records not in the current plan"))
    assert f"`celo-bench prune --suite smoke --results {tmp_path}`" in note
    # only the current Adam is the reference: sgd scores twice as well against it
    ref_old = old.scores[old.scores["optimizer"] == "adam"]["reference_loss"].to_numpy()
    ref_new = res.scores[res.scores["optimizer"] == "adam"]["reference_loss"].to_numpy()
    assert (ref_new > 1.1 * ref_old).all()
    sgd_old = old.aggregate.set_index("optimizer").loc["sgd", "final_loss_iqm"]
    sgd_new = res.aggregate.set_index("optimizer").loc["sgd", "final_loss_iqm"]
    assert sgd_new > 1.1 * sgd_old
    assert len(res.runs) == 24 and res.runs.groupby(["task", "optimizer", "hparam_id", "seed"]).size().max() == 1


def test_edited_reference_without_new_runs_is_missing_not_silently_old(reg, tmp_path):
    # issue 15 case 3, second half: Adam's b1 edited, suite version unchanged, nothing re-run
    write(tmp_path, smoke_records("adam", 1.0) + smoke_records("sgd", 1.3), reg)
    new = edited_adam(reg, b1=0.8)
    with pytest.raises(CeloBenchError, match=r"no runs of the reference optimizer 'adam' in the current plan"
                                             r".*older spec or version.*celo-bench run --suite smoke --results \S+ -o adam"):
        score_results(tmp_path, "smoke", registry=new, reps=20)
    sel = select_records(tmp_path, new.suite("smoke"), new)
    assert sel.missing == {"adam": 12} and sel.ignored == 12 and len(sel.records) == 12


def test_reference_missing_on_one_task_leaves_it_unscored(reg, tmp_path):
    write(tmp_path, smoke_records("adam", 1.0) + smoke_records("sgd", 1.3), reg)
    new = edited_adam(reg, eps=1e-6)
    write(tmp_path, [r for r in smoke_records("adam", 1.0) if r["task"] == TASKS[0]], new)
    res = score_results(tmp_path, "smoke", registry=new, reps=20)
    assert set(res.scores["task"]) == {TASKS[0]}
    assert any(n.startswith("tasks without stored 'adam' runs of the current plan are unscored: "
                            "smoke_digits_ae") for n in res.notes)
    agg = res.aggregate.set_index("optimizer")
    assert (agg["tasks"] == 1).all() and (agg["tasks_total"] == 2).all() and not agg["complete"].any()
    assert res.missing == {"adam": 6}


def test_prune_moves_what_no_plan_holds(reg, tmp_path):
    write(tmp_path, smoke_records("adam", 1.0) + smoke_records("sgd", 1.3), reg)
    new = edited_adam(reg, eps=1e-6)
    write(tmp_path, smoke_records("adam", 2.0), new)
    other = grid_records(["t"], {"mine": ("submission", 1.0)}, seeds=1, n=6, suite="smoke")
    write(tmp_path, other)  # an optimizer outside the registry (a submission): never pruned
    dry = prune(tmp_path, suites=["smoke"], registry=new, dry_run=True)
    assert len(dry.pruned) == 12 and dry.destination is None and dry.unregistered == 3
    assert len(Store(tmp_path).read(curves=False)) == 39  # nothing moved
    assert dry.counts().to_dict("records") == [
        {"task": t, "optimizer": "adam", "records": 6} for t in sorted(TASKS)]
    done = prune(tmp_path, suites=["smoke"], registry=new)
    assert done.kept == 24 and done.destination.parent == tmp_path / PRUNED_DIR
    assert len(list(done.destination.rglob("*.parquet"))) == 12
    left = Store(tmp_path).read(curves=False)
    assert len(left) == 27 and not (set(left["key"]) & set(done.pruned["key"]))
    res = score_results(tmp_path, "smoke", registry=new, reps=20)
    assert res.ignored == 0 and not any("ignored" in n for n in res.notes)
    again = prune(tmp_path, suites=["smoke"], registry=new)
    assert again.pruned.empty and again.destination is None


def test_prune_keeps_records_any_suite_plans(reg, tmp_path):
    write(tmp_path, smoke_records("adam", 1.0), reg)
    # a record of another suite's label that no suite plans, and one the smoke plan holds
    stray = smoke_records("sgd", 1.0)[0] | {"suite": "gone"}
    write(tmp_path, [stray])
    assert prune(tmp_path, suites=["smoke"], registry=reg, dry_run=True).pruned.empty
    everything = prune(tmp_path, registry=reg, dry_run=True)
    assert list(everything.pruned["suite"]) == ["gone"] and everything.kept == 12


def test_cli_prune(reg, tmp_path):
    from celo_bench.cli import app

    write(tmp_path, smoke_records("adam", 1.0), edited_adam(reg, eps=1e-6))
    write(tmp_path, smoke_records("sgd", 1.0), reg)
    args = ["prune", "--suite", "smoke", "--results", str(tmp_path)]
    dry = CliRunner().invoke(app, [*args, "--dry-run", "--format", "json"])
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.stdout)
    assert doc["dry_run"] and doc["pruned"] == 12 and doc["kept"] == 12 and doc["destination"] is None
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "smoke_digits_ae / adam: 6" in text.output and "moved 12 records not in any current plan" in text.output
    assert len(Store(tmp_path).read(curves=False)) == 12


def test_an_unreadable_record_is_named_and_never_scored(reg, tmp_path):
    write(tmp_path, smoke_records("adam", 1.0) + smoke_records("sgd", 1.3), reg)
    victim = next((tmp_path / TASKS[0] / "sgd").glob("*.parquet"))
    victim.write_bytes(b"")
    res = score_results(tmp_path, "smoke", registry=reg, reps=20)
    assert any(n.startswith(f"skipped unreadable record {victim}: empty file") for n in res.notes)
    assert res.missing == {"sgd": 1} and len(res.runs) == 23


def test_jobs_that_reuse_another_jobs_programs_run_last(reg):
    """celo_cpu_diet runs Celo's programs with other weights: planned beside celo it would wait for
    celo's compile, so every such job moves to the end of the grid, and nothing else moves."""
    jobs = [j for j in expand(reg, reg.suite("quick"), backend="cpu") if not j.unavailable]
    ordered = reusers_last(jobs)
    assert sorted(map(id, ordered)) == sorted(map(id, jobs))  # a permutation
    names = [(j.task.name, j.optimizer.name) for j in ordered]
    n_reusers = sum(1 for n in names if n[1] == "celo_cpu_diet")
    moved = ordered[len(ordered) - n_reusers:]
    assert {j.optimizer.name for j in moved} == {"celo_cpu_diet"}
    for task in reg.suite("quick").tasks:
        assert names.index((task, "celo")) < names.index((task, "celo_cpu_diet"))
    firsts = [program_identity(j) for j in ordered[: len(ordered) - len(moved)]]
    assert len(set(firsts)) == len(firsts)  # before the reusers, every job compiles its own programs
    kept = [j for j in jobs if j.optimizer.name != "celo_cpu_diet"]
    assert ordered[: len(kept)] == kept  # the others keep the plan's order
