"""One place for each job (issue 28, finding 7): atomic writes and folder swaps, the stratified
bootstrap, ``describe``, ``dataset_info``, the optimizer builder's contract, and names that say
what they hold.

The source checks read the package with :mod:`ast` (no import), the way
``tests/test_imports.py`` walks the import graph; each is shown to catch a planted fault.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "celo_bench"
SOURCES = {p.relative_to(ROOT).as_posix(): ast.parse(p.read_text(encoding="utf-8"))
           for p in sorted(PACKAGE.rglob("*.py"))}
HELPER = "celo_bench/fileio.py"


# --------------------------------------------------------------------------- the source walks
def _call_name(node: ast.Call) -> str:
    """``os.replace`` for ``os.replace(...)``, ``.replace`` for ``x.replace(...)``, ``f`` for ``f(...)``."""
    f = node.func
    if isinstance(f, ast.Attribute):
        return f"{f.value.id}.{f.attr}" if isinstance(f.value, ast.Name) and f.value.id in ("os", "shutil") \
            else f".{f.attr}"
    return f.id if isinstance(f, ast.Name) else ""


def _write_faults(tree: ast.AST) -> list[str]:
    """Renames and fixed temporary names: what only :mod:`celo_bench.fileio` may do."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name in ("os.replace", "os.rename", "shutil.move"):
                out.append(f"line {node.lineno}: {name}")
            # Path.replace(target) / Path.rename(target); str.replace and DataFrame.rename take
            # two arguments, a constant or keywords
            elif name in (".replace", ".rename") and len(node.args) == 1 and not node.keywords \
                    and not isinstance(node.args[0], ast.Constant | ast.Dict):
                out.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and re.search(r"\.tmp($|\.)", node.value):
            out.append(f"line {node.lineno}: fixed temporary name {node.value!r}")
    return out


def test_the_write_walk_catches_a_planted_fault():
    planted = ast.parse('tmp = path.with_name(path.name + ".tmp")\ntmp.write_bytes(b"")\ntmp.replace(path)\n'
                        'os.replace(a, b)\nx = s.replace("a", "b")\ndf.rename(columns={})\n')
    assert len(_write_faults(planted)) == 3  # ".tmp", tmp.replace(path), os.replace; not str/DataFrame


def test_no_fixed_tmp_name_and_no_rename_outside_the_file_helper():
    faults = {path: f for path, tree in SOURCES.items() if path != HELPER and (f := _write_faults(tree))}
    assert not faults, f"write through celo_bench.fileio (atomic_writer, staged_folder, move): {faults}"
    assert _write_faults(SOURCES[HELPER])  # the helper is where the renames live


def _top_level_functions() -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for path, tree in SOURCES.items():
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                out[node.name].append(path)
    return out


@pytest.mark.parametrize("name, home", [
    ("describe", "celo_bench/errors.py"),
    ("dataset_info", "celo_bench/data/__init__.py"),
    ("stratified_resamples", "celo_bench/aggregate.py"),
    ("sha256_file", HELPER),
    ("swap_folder", HELPER),
])
def test_each_job_is_defined_once(name, home):
    assert _top_level_functions()[name] == [home]


def _body_key(fn: ast.FunctionDef) -> str | None:
    body = fn.body[1:] if fn.body and isinstance(fn.body[0], ast.Expr) \
        and isinstance(fn.body[0].value, ast.Constant) else fn.body
    return ast.dump(fn.args) + ast.dump(ast.Module(body=body, type_ignores=[])) if len(body) >= 2 else None


def test_no_two_functions_share_a_body():
    """A function of two or more statements written twice (under any names) is one job in two places."""
    seen: dict[str, list[str]] = defaultdict(list)
    for path, tree in SOURCES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and (key := _body_key(node)):
                seen[key].append(f"{path}:{node.lineno} {node.name}")
    twice = [places for places in seen.values() if len(places) > 1]
    assert not twice, twice


def test_the_body_walk_catches_a_planted_copy():
    code = "def describe(e):\n    text = str(e)\n    return text\n"
    a, b = ast.parse(code).body[0], ast.parse(code.replace("describe", "explain")).body[0]
    assert _body_key(a) == _body_key(b) is not None


def test_module_names_say_what_they_hold():
    assigned: dict[str, list[str]] = defaultdict(list)
    for path, tree in SOURCES.items():
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name):
                    assigned[t.id].append(path)
    assert "FACTORIES" not in assigned, assigned["FACTORIES"]  # which factories: registered, hand-crafted, extra
    assert assigned["OPTIMIZER_KINDS"] == ["celo_bench/suite.py"]  # optimizer kinds, never model kinds
    from celo_bench import assembly, optimizers
    from celo_bench.optimizers import extra, handcrafted

    assert set(handcrafted.HANDCRAFTED_FACTORIES) | set(extra.EXTRA_FACTORIES) <= set(optimizers.REGISTERED_FACTORIES)
    assert assembly.INNER_OPTIMIZER_MODEL_KINDS == {"lopt"}


# --------------------------------------------------------------------------- the file helper


def test_atomic_write_replaces_whole_with_a_normal_mode(tmp_path, umask):
    from celo_bench import fileio

    umask(0o022)
    target = tmp_path / "sub" / "theta.state"
    fileio.atomic_write_bytes(target, b"old")
    assert target.read_bytes() == b"old" and target.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600
    with pytest.raises(RuntimeError, match="half-way"), fileio.atomic_writer(target) as f:
        f.write(b"new, half")
        raise RuntimeError("killed half-way")
    assert target.read_bytes() == b"old" and sorted(p.name for p in target.parent.iterdir()) == ["theta.state"]
    with fileio.atomic_path(target) as a, fileio.atomic_path(target) as b:  # two writers, two names
        assert a != b and a.parent == b.parent == target.parent and a.name.startswith(".tmp-theta.state-")
        a.write_bytes(b"first")
        b.write_bytes(b"second")
    assert target.read_bytes() == b"first"  # the last rename wins; both were whole
    assert fileio.sha256_file(target) == "a7937b64b8caa58f03721bb6bacf5c78cb235febe0e70b1b84cd99541461a08e"


def test_a_failed_write_in_the_os_leaves_no_temporary_file(tmp_path, monkeypatch):
    from celo_bench import fileio

    target = tmp_path / "r.json"
    fileio.atomic_write_text(target, "{}")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        fileio.atomic_write_text(target, '{"a": 1}')
    assert target.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_folder_swap_and_recovery(tmp_path):
    from celo_bench import fileio

    dest = tmp_path / "report"
    with fileio.staged_folder(dest) as st:
        (st / "a").write_text("1")
    assert (dest / "a").read_text() == "1"
    with pytest.raises(RuntimeError), fileio.staged_folder(dest) as st:
        (st / "a").write_text("2")
        raise RuntimeError("failed while writing")
    assert (dest / "a").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    # a kill between the two renames of a swap: the old folder aside, the new one still staged
    (tmp_path / ".report.tmp-dead").mkdir()
    dest.rename(tmp_path / ".report.old-dead")
    fileio.recover_folder(dest)
    assert (dest / "a").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_a_failed_install_keeps_the_weights_installed_before(tmp_path, monkeypatch):
    """The old install deleted the installed folder, then renamed the new one in: a failure (or a
    kill) between the two left no weights at all."""
    from celo_bench.metatrain import artifacts
    from celo_bench.metatrain.install import install

    run = tmp_path / "run"
    run.mkdir()
    (run / "theta.state").write_bytes(b"new weights")
    card = {"architecture": "nn_adam", "preset": "smoke", "phase": "joint", "label": "meta-trained here",
            "factory_kwargs": {}, "tasks": ["digits"], "tasks_missing": [], "model": "64-10", "batch_size": 8,
            "augmentation": "none", "estimator": {k: 1 for k in ("std", "truncation", "min_horizon", "max_horizon",
                                                                  "initial_offset", "instances_per_task")},
            "outer_optimizer": {"lr": 1e-3, "weight_decay": 0.0}, "frozen": [], "outer_step": 3,
            "outer_iterations": 3, "seed": 0, "init": None, "meta_loss_first": 1.0, "meta_loss_last": 0.5,
            "wall_seconds": 1.0, "device": "cpu", "provenance": {}}
    (run / artifacts.CARD_JSON).write_text(json.dumps(card))
    root = tmp_path / "weights"
    installed = root / "nn_adam_smoke_diet"
    installed.mkdir(parents=True)
    (installed / "theta.state").write_bytes(b"old weights")
    real = os.replace

    def fail_into_place(src, dst, *args, **kwargs):
        if Path(dst) == installed and "tmp" in Path(src).name:  # the new folder's rename into place
            raise OSError(5, "Input/output error")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", fail_into_place)
    with pytest.raises(Exception, match="cannot install weights"):
        install(run, root=root)
    monkeypatch.setattr(os, "replace", real)
    assert (installed / "theta.state").read_bytes() == b"old weights"
    assert sorted(p.name for p in root.iterdir()) == ["nn_adam_smoke_diet"]  # nothing left beside it
    assert install(run, root=root) == installed and (installed / "theta.state").read_bytes() == b"new weights"
    assert json.loads((installed / "card.json").read_text())["sha256"] == hashlib.sha256(b"new weights").hexdigest()


# --------------------------------------------------------------------------- one bootstrap
def _calls(fn: ast.FunctionDef) -> set[str]:
    return {_call_name(n).lstrip(".") for n in ast.walk(fn) if isinstance(n, ast.Call)}


def test_scoring_and_tier_comparison_share_one_stratified_bootstrap():
    drawing = []  # functions of aggregate/compare that draw resample indices themselves
    users = {}
    for path in ("celo_bench/aggregate.py", "celo_bench/compare.py"):
        for node in ast.walk(SOURCES[path]):
            if isinstance(node, ast.FunctionDef):
                calls = _calls(node)
                if "integers" in calls:
                    drawing.append(node.name)
                users[node.name] = calls
    assert drawing == ["stratified_resamples"]
    assert "stratified_resamples" in users["probability_of_improvement"] and "stratified_resamples" in users["boot_iqms"]


def test_the_shared_bootstrap_gives_the_numbers_of_the_two_it_replaced():
    """Same seeds, same numbers: values computed at commit 964a5c9 (before the bootstrap was one)."""
    from celo_bench.aggregate import ScoreMatrix, probability_of_improvement
    from celo_bench.compare import agreement, boot_iqms

    rng = np.random.default_rng(7)
    tasks = ("t1", "t2", "t3")
    x = ScoreMatrix(rng.standard_normal((5, 3)), tasks, tuple(range(5)), "x")
    y = ScoreMatrix(rng.standard_normal((4, 3)) + 0.3, tasks, tuple(range(4)), "y")
    assert probability_of_improvement(x, y, reps=300, seed=3) == (0.6, 0.3833333333333333, 0.7666666666666666)
    assert boot_iqms(x, 6, np.random.default_rng(11)).tolist() == [
        0.1496243677924488, -0.043174033204675354, -0.37617133066445524, -0.22550622676974508,
        -0.14753795699740113, -0.04912978557902935]

    def mats(means, seed):
        r = np.random.default_rng(seed)
        return {f"o{i}": ScoreMatrix(m + 3 * r.standard_normal((6, 3)), tasks, tuple(range(6)), f"o{i}")
                for i, m in enumerate(means)}

    g = agreement("final_loss", mats([1, 2, 3, 4], 1), mats([1, 3, 2, 4], 2), reps=200, seed=9)
    assert g.kendall == pytest.approx((0.666666666667, 0.0, 1.0), abs=1e-12)
    assert g.spearman == pytest.approx((0.8, -0.2, 1.0), abs=1e-12)


# --------------------------------------------------------------------------- one builder contract
def test_the_optimizer_builder_is_a_declared_protocol_used_by_registry_engine_and_submissions():
    import typing

    import optax

    from celo_bench import engine, optimizers, task
    from celo_bench.submission import loader, parse_submission
    from celo_bench.suite import load_registry

    assert typing.Protocol in task.OptimizerBuilder.__mro__ and engine.OptimizerBuilder is task.OptimizerBuilder
    adam = optimizers.builder(load_registry().optimizer("adam"), num_steps=5)
    assert isinstance(adam, task.OptimizerBuilder) and adam.meta_params is None and adam.program_key[0] == "adam"
    spec = loader.register_submission(parse_submission(ROOT / "submissions" / "template"))
    mine = optimizers.builder(spec, num_steps=5)
    assert isinstance(mine, task.OptimizerBuilder)
    assert isinstance(mine({"learning_rate": 0.1}), optax.GradientTransformationExtraArgs)
    # the engine reads the contract, never attributes glued onto a closure
    text = (PACKAGE / "engine" / "_train.py").read_text() + (PACKAGE / "optimizers" / "__init__.py").read_text()
    assert 'getattr(make_optimizer, "' not in text and "type: ignore[attr-defined]" not in text
    assert "OptimizerBuilder" in (ROOT / "submissions" / "template" / "optimizer.py").read_text()
