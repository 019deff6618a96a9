"""theta.state checkpoints: key-path loading, verification, sources, clear failures."""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import pytest

from celo_bench import weights
from celo_bench.errors import CheckpointError
from celo_bench.optimizers import checkpoint as ck
from celo_bench.optimizers import factory
from celo_bench.suite import load_registry

WEIGHTS = Path(weights.__file__).parent
"""The weights the package ships (``celo_bench/weights/<name>/theta.state``): the checks run on
what a user runs, on a fresh clone too."""
PUBLISHED = Path(__file__).resolve().parents[1].parent / "shared" / "weights"
"""The authors' release, where this checkout has it beside it (``../shared/weights``)."""


def _random(name: str) -> dict:
    return jax.tree_util.tree_map(np.asarray, factory(name).init_meta_params(jax.random.PRNGKey(3)))


def _template(name: str):
    return jax.eval_shape(factory(name).init_meta_params, jax.random.PRNGKey(0))


def test_write_read_round_trip_by_key_path(tmp_path):
    theta = _random("celo_adam")
    path = ck.write(tmp_path / "theta.state", theta)
    loaded = ck.load(path, _template("celo_adam"))
    for key, leaf in ck.flatten(theta).items():
        np.testing.assert_array_equal(ck.flatten(loaded)[key], leaf)
    # The haiku module name "rnn/linear" is one key containing a slash.
    assert ("rnn_params", "rnn/linear", "w") in ck.flatten(loaded)


def test_hidden_and_cell_are_matched_by_name_not_order(tmp_path):
    theta = _random("celo_adam")
    hidden, cell = theta["lstm_init_state"]["hidden"], theta["lstm_init_state"]["cell"]
    swapped = dict(theta, lstm_init_state={"cell": cell, "hidden": hidden})  # other file order
    loaded = ck.load(ck.write(tmp_path / "t.state", swapped), _template("celo_adam"))
    np.testing.assert_array_equal(loaded["lstm_init_state"]["hidden"], hidden)
    np.testing.assert_array_equal(loaded["lstm_init_state"]["cell"], cell)


def test_other_architecture_names_first_missing_key(tmp_path):
    path = ck.write(tmp_path / "theta.state", _random("celo_adam"))
    with pytest.raises(CheckpointError, match=r"ff_mod_stack/~/b0' \(shape \(1, 4\)\) is missing"):
        ck.load(path, _template("celo"))


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    theta = _random("celo_adam")
    theta["rnn_params"]["step_size"]["w"] = np.zeros((32, 1), np.float32)
    path = ck.write(tmp_path / "theta.state", theta)
    with pytest.raises(CheckpointError, match=r"'rnn_params/step_size/w' has shape \(32, 1\), expected \(64, 1\)"):
        ck.load(path, _template("celo_adam"))


def test_extra_key_is_rejected(tmp_path):
    theta = _random("celo_adam")
    theta["rnn_params"]["bonus"] = {"w": np.zeros((2,), np.float32)}
    with pytest.raises(CheckpointError, match="unexpected key 'rnn_params/bonus/w'"):
        ck.load(ck.write(tmp_path / "t.state", theta), _template("celo_adam"))


def test_truncated_file_is_rejected(tmp_path):
    data = ck.encode(_random("celo_adam"))
    path = tmp_path / "theta.state"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a flax-msgpack"):
        ck.load(path, _template("celo_adam"))


def test_pickle_is_refused(tmp_path):
    path = tmp_path / "theta.state"
    path.write_bytes(pickle.dumps(_random("celo_adam")))
    with pytest.raises(CheckpointError, match="pickle"):
        ck.read(path)


def test_wrong_sha256_is_rejected(tmp_path):
    path = ck.write(tmp_path / "theta.state", _random("celo_adam"))
    with pytest.raises(CheckpointError, match="sha256 .* does not match"):
        ck.read(path, sha256="0" * 64)


def test_env_folder_is_used_and_verified(tmp_path, monkeypatch):
    spec = load_registry().optimizer("celo_adam")
    theta = _random("celo_adam")
    ck.write(tmp_path / "celo_adam" / "theta.state", theta)
    monkeypatch.setenv(ck.ENV_FOLDER, str(tmp_path))
    # the spec's hash is the published file's; the fix names the variable the file came through
    with pytest.raises(CheckpointError, match=rf"sha256 .*found through \${ck.ENV_FOLDER}: replace it there"):
        ck.load_for_spec(spec)
    data = (tmp_path / "celo_adam" / "theta.state").read_bytes()
    spec_ok = replace(spec, checkpoint={**spec.checkpoint, "sha256": hashlib.sha256(data).hexdigest()})
    loaded = ck.load_for_spec(spec_ok)
    np.testing.assert_array_equal(loaded["rnn_params"]["step_size"]["b"], theta["rnn_params"]["step_size"]["b"])


def test_offline_without_source_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv(ck.ENV_FOLDER, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty hub cache
    spec = load_registry().optimizer("velo_s")
    with pytest.raises(CheckpointError, match=r"offline.*fix: .*CELO_BENCH_CHECKPOINTS") as err:
        ck.load_for_spec(spec)
    assert "--checkpoint" not in str(err.value)  # `run` has no such option: never suggest it
    with pytest.raises(CheckpointError, match="no published weights exist"):
        ck.load_for_spec(load_registry().optimizer("nn_adam"))


def test_explicit_missing_path_is_clear():
    with pytest.raises(CheckpointError, match="does not exist"):
        ck.load_for_spec(load_registry().optimizer("celo"), "/nonexistent/theta.state")


@pytest.mark.parametrize("name, leaves, n_values, step_b", [
    ("celo", 33, 37089, 0.29133), ("celo_adam", 12, 36865, 0.095636),
])
def test_published_checkpoints_load_unchanged(name, leaves, n_values, step_b):
    spec = load_registry().optimizer(name)
    path = WEIGHTS / name / "theta.state"
    ck.read(path, sha256=spec.checkpoint["sha256"])  # the spec's hash is the file's
    theta = ck.load_for_spec(spec, str(path))
    flat = ck.flatten(theta)
    assert len(flat) == leaves
    assert sum(v.size for v in flat.values()) == n_values
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in flat.values())
    np.testing.assert_allclose(theta["rnn_params"]["step_size"]["b"], [step_b], rtol=1e-4)


def test_golden_checks_run_on_the_weights_that_ship():
    """They read ../shared/weights (beside the repository) and skipped on a fresh clone."""
    import test_learned_celo

    assert WEIGHTS == test_learned_celo.WEIGHTS == Path(weights.__file__).parent
    assert all((WEIGHTS / name / "theta.state").is_file() for name in ("celo", "celo_adam"))
    assert not hasattr(test_learned_celo, "needs_weights")  # nothing of theirs is skipped


@pytest.mark.parametrize("name", ["celo", "celo_adam"])
def test_shipped_checkpoints_are_the_published_files(name):
    shipped = WEIGHTS / name / "theta.state"
    assert shipped == weights.packaged(name)  # the file `build(name)` loads by default
    if not (PUBLISHED / name / "theta.state").is_file():
        pytest.skip(f"the authors' release is not beside this checkout ({PUBLISHED})")
    assert shipped.read_bytes() == (PUBLISHED / name / "theta.state").read_bytes()


MADE_HERE = ("celo_cpu_diet", "rnn_mlp_lopt_cpu_diet", "adafac_mlp_lopt_cpu_diet", "velo_s_cpu_diet")


@pytest.mark.parametrize("name", MADE_HERE)
def test_weights_meta_trained_here_ship_and_a_remake_can_replace_them(name, monkeypatch, tmp_path):
    """The cpu-diet specs load their shipped weights offline; a user's remake in
    ``$CELO_BENCH_CHECKPOINTS`` (the ``--install`` layout) is loaded instead, trusted as theirs."""
    monkeypatch.delenv(ck.ENV_FOLDER, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    spec = load_registry().optimizer(name)
    assert spec.checkpoint["source"] == f"local://{name}" and len(spec.checkpoint["sha256"]) == 64
    assert spec.kind_label == "learned · meta-trained here (cpu diet)"
    assert "meta-trained here (cpu diet)" in spec.meta_training
    assert spec.checkpoint["make"].startswith(f"celo-bench meta-train {spec.factory} ")
    assert spec.checkpoint["make"].endswith("--install")
    shipped = ck.load_for_spec(spec)
    theta = _random(spec.factory)
    ck.write(tmp_path / "weights" / name / "theta.state", theta)
    monkeypatch.setenv(ck.ENV_FOLDER, str(tmp_path / "weights"))
    loaded = ck.load_for_spec(spec)
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(_template(spec.factory))
    for k, v in ck.flatten(theta).items():
        np.testing.assert_array_equal(ck.flatten(loaded)[k], v)
    assert any(not np.array_equal(ck.flatten(shipped)[k], v) for k, v in ck.flatten(theta).items())


def test_local_source_without_a_name_says_how_to_make_it(monkeypatch, tmp_path):
    monkeypatch.delenv(ck.ENV_FOLDER, raising=False)  # else the published celo is found there first
    monkeypatch.setenv(ck.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(CheckpointError, match="meta-train"):
        ck.load_for_spec(load_registry().optimizer("celo"), "local://")
