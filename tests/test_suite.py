"""Spec loading: every malformed spec names its file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from celo_bench.errors import SpecError, UnknownNameError
from celo_bench.suite import load_registry, parse_optimizer, parse_suite, parse_task

GOOD_TASK = """
name = "t1"
family = "image_mlp"
dataset = "digits"
batch_size = 8
steps = 20
[model]
kind = "mlp"
hidden = [4]
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def test_shipped_registry_loads_and_cross_checks():
    reg = load_registry()
    assert {"smoke_digits_mlp", "smoke_digits_ae"} <= set(reg.tasks)
    assert {"adam", "sgd"} <= set(reg.optimizers)
    assert "smoke" in reg.suites
    for suite in reg.suites.values():
        assert all(t in reg.tasks for t in suite.tasks)


def test_good_task_parses(tmp_path):
    spec = parse_task(_write(tmp_path, "t1", GOOD_TASK))
    assert spec.batch_size == 8 and spec.eval_every == 10 and spec.model == {"kind": "mlp", "hidden": [4]}


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (lambda s: s.replace('batch_size = 8\n', ''), "batch_size", "required"),
        (lambda s: s.replace('batch_size = 8', 'batch_size = "8"'), "batch_size", "expected int"),
        (lambda s: s.replace('batch_size = 8', 'batch_size = -8'), "batch_size", "positive"),
        (lambda s: s.replace('batch_size = 8', 'batchsize = 8'), "batchsize", "unknown key"),
        (lambda s: s.replace('steps = 20', 'steps = 25'), "steps", "multiple of eval_every"),
        (lambda s: s.replace('name = "t1"', 'name = "other"'), "name", "file name"),
        (lambda s: s.replace('kind = "mlp"', 'knd = "mlp"'), "model.kind", "required"),
        (lambda s: s + "[strategy]\nsteps = 'fast'\n", "strategy.steps", "not one of"),
        (lambda s: s.replace("[model]", "[model"), "<file>", "not valid TOML"),
    ],
)
def test_malformed_task_names_file_and_key(tmp_path, edit, key, words):
    path = _write(tmp_path, "t1", edit(GOOD_TASK))
    with pytest.raises(SpecError) as err:
        parse_task(path)
    msg = str(err.value)
    assert str(path) in msg and f"key '{key}'" in msg and words in msg


def test_malformed_optimizer_specs(tmp_path):
    p = _write(tmp_path, "o", 'name = "o"\nkind = "handmade"\nfactory = "adam"\n')
    with pytest.raises(SpecError, match="key 'kind'.*not one of"):
        parse_optimizer(p)
    p = _write(tmp_path, "o", 'name = "o"\nkind = "handcrafted"\nfactory = "adam"\n[grid]\nlearning_rate = []\n')
    with pytest.raises(SpecError, match="key 'grid.learning_rate'"):
        parse_optimizer(p)
    p = _write(tmp_path, "o", 'name = "o"\nkind = "learned"\nfactory = "celo"\n')
    with pytest.raises(SpecError, match="key 'checkpoint'"):
        parse_optimizer(p)
    p = _write(
        tmp_path, "o",
        'name = "o"\nkind = "handcrafted"\nfactory = "adam"\n[defaults]\nlearning_rate = 1.0\n'
        '[grid]\nlearning_rate = [1.0]\n',
    )
    with pytest.raises(SpecError, match="key 'grid.learning_rate'.*not both"):
        parse_optimizer(p)


def test_suite_with_unknown_task_points_into_manifest(spec_tree):
    suite = spec_tree / "tasks" / "suites" / "bad.toml"
    suite.write_text('name = "bad"\nversion = "1"\ntasks = ["smoke_digits_mpl"]\noptimizers = ["adam"]\n')
    with pytest.raises(SpecError) as err:
        load_registry(spec_tree)
    msg = str(err.value)
    assert "bad.toml" in msg and "tasks[0]" in msg and "smoke_digits_mlp" in msg  # the suggestion


def test_suite_bad_seeds(tmp_path):
    p = _write(tmp_path, "s", 'name = "s"\nversion = "1"\ntasks = ["a"]\noptimizers = ["b"]\nseeds = 0\n')
    with pytest.raises(SpecError, match="key 'seeds'.*positive"):
        parse_suite(p)


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'adam'"):
        load_registry().optimizer("adma")


def test_installed_copy_inside_another_git_repo_reports_no_commit(tmp_path):
    """site-packages may sit inside an unrelated git repo (e.g. pyenv's): never report its commit."""
    import importlib.util
    import shutil
    import subprocess

    import celo_bench.provenance as prov

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=x@y", "-c", "user.name=x",
                    "commit", "-q", "--allow-empty", "-m", "unrelated"], check=True)
    pkg = tmp_path / "site-packages" / "celo_bench"
    pkg.mkdir(parents=True)
    shutil.copy(prov.__file__, pkg / "provenance.py")
    spec = importlib.util.spec_from_file_location("installed_provenance", pkg / "provenance.py")
    installed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installed)
    assert installed.git_commit() == ""
    assert len(prov.git_commit()) in (0, 12)  # the source checkout: its own commit (or no git)


GOLDEN = Path(__file__).parent / "golden" / "resolved_specs.json"


def _resolved_specs() -> dict[str, dict[str, str]]:
    """Spec level of every run key: canonical JSON of each shipped spec as it is hashed."""
    import dataclasses

    from celo_bench.submission import parse_submission
    from celo_bench.suite import canonical_json

    reg = load_registry()
    subs = sorted((Path(__file__).parents[1] / "submissions" / "examples").iterdir())
    return {
        "tasks": {n: canonical_json(t.resolved()) for n, t in sorted(reg.tasks.items())},
        "optimizers": {n: canonical_json(o.resolved()) for n, o in sorted(reg.optimizers.items())},
        "grids": {n: canonical_json(o.grid) for n, o in sorted(reg.optimizers.items())},
        # a suite's [agreement] is a measurement of it shown in its report, in no run key
        "suites": {n: canonical_json({k: v for k, v in dataclasses.asdict(s).items() if k not in ("path", "agreement")})
                   for n, s in sorted(reg.suites.items())},
        "submissions": {p.name: canonical_json({k: v for k, v in dataclasses.asdict(parse_submission(p)).items()
                                                if k != "folder"}) for p in subs},
    }


def test_resolved_specs_match_the_golden_file():
    """Run keys hash these strings: a parser change must not turn 8 into 8.0, nor drop a default.

    After an intended change of a spec, regenerate with
    ``CELO_BENCH_UPDATE_GOLDEN=1 pytest tests/test_suite.py -k golden``.
    """
    import json
    import os

    got = _resolved_specs()
    if os.environ.get("CELO_BENCH_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    for section in want:
        changed = sorted(n for n in set(want[section]) | set(got[section])
                         if want[section].get(n) != got[section].get(n))
        assert not changed, f"{section}: {changed}"
    assert "1e-05" in got["grids"]["adam"] or "0.001" in got["grids"]["adam"]  # floats stay floats
    assert '"batch_size":64' in got["tasks"]["smoke_digits_mlp"]  # ints stay ints
