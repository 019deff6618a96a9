"""Every registered optimizer passes the conformance checks, and every factory guards its domain.

The optimizers come from the spec registry (``baselines/*.toml``), so a new spec is tested
without editing this file. Learned optimizers run with the meta-parameters in
``$CELO_BENCH_CHECKPOINTS/<name>/theta.state`` when that file exists, else with their random
initialisation (enough for the finiteness, shape and tracing checks; the progress check
is then skipped, since a random learned optimizer need not descend).
"""

from __future__ import annotations

import functools
import inspect
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from celo_bench import conformance
from celo_bench.errors import CeloBenchError, HyperparameterError
from celo_bench.optimizers import REGISTERED_FACTORIES, build, builder, factory
from celo_bench.optimizers import checkpoint as ckpt
from celo_bench.suite import load_registry

REGISTRY = load_registry()
NAMES = sorted(REGISTRY.optimizers)


def _meta_params(spec):
    """Published or local weights from $CELO_BENCH_CHECKPOINTS, else a random init."""
    entry = factory(spec.factory)
    folder = os.environ.get(ckpt.ENV_FOLDER)
    if folder and (Path(folder) / spec.name / "theta.state").is_file():
        return ckpt.load_for_spec(spec), True
    return entry.init_meta_params(jax.random.PRNGKey(0)), False


def _grid_points(spec) -> list[dict]:
    """The grid's two end points (each tuned hyper-parameter at its low, then its high end)."""
    if not spec.grid:
        return [{}]
    return [{k: v[0] for k, v in spec.grid.items()}, {k: v[-1] for k, v in spec.grid.items()}]


# Learned optimizers compile large per-leaf programs (~10-90 s each on a busy 2-core machine).
CASES = [pytest.param(n, marks=pytest.mark.slow) if REGISTRY.optimizer(n).kind == "learned" else n
         for n in NAMES]


@pytest.mark.parametrize("name", CASES)
def test_registered_optimizer_conforms(name):
    """jit, scan, vmap over the grid's ends, shapes/dtypes, finite updates on 0-4-D leaves."""
    spec = REGISTRY.optimizer(name)
    meta, trained = (None, True)
    if factory(spec.factory).learned:
        meta, trained = _meta_params(spec)
    make = builder(spec, num_steps=conformance.STEPS, meta_params=meta)
    problems = conformance.check_optimizer(make, _grid_points(spec), progress=trained)
    assert not problems, [str(p) for p in problems]


def test_every_factory_declares_the_domain_of_every_argument():
    """A rule for each keyword of each registered factory (meta-parameters included)."""
    for name, entry in REGISTERED_FACTORIES.items():
        if name.startswith(("submission", "test_")):  # registered by submissions or other tests
            continue
        params = set(inspect.signature(entry.fn).parameters)
        assert params == set(entry.domain), (name, sorted(params - set(entry.domain)))


def test_every_factory_cites_its_paper_and_no_unshipped_spec():
    """A References section in each factory's docstring; no citation of spec files that ship
    in neither the repository nor the wheel."""
    for name, entry in REGISTERED_FACTORIES.items():
        if name.startswith(("submission", "test_")):  # registered by submissions or other tests
            continue
        doc = inspect.getdoc(entry.fn) or ""
        refs = doc.split("References:", 1)[1] if "References:" in doc else ""
        assert refs.strip() and any(y in refs for y in ("arXiv:", "19", "20")), name
    root = Path(inspect.getfile(factory)).parent
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "learned-optimizers.md" not in text and "paper-protocol.md" not in text, path


@pytest.mark.parametrize("name", NAMES)
def test_spec_defaults_and_grid_lie_in_the_factory_domain(name):
    spec = REGISTRY.optimizer(name)
    entry = factory(spec.factory)
    for point in _grid_points(spec):
        entry.check_arguments(**spec.defaults, **point, num_steps=1)
    with pytest.raises(HyperparameterError, match="num_steps"):
        entry.check_arguments(**spec.defaults, num_steps=0)


# ---- case 5 of issue 15: out-of-domain arguments are refused with the argument and range ----
@functools.cache
def _learned(name: str):
    """The factory and a zero meta-parameter tree of its shape (traced, not computed: fast)."""
    entry = REGISTERED_FACTORIES[name]
    shapes = jax.eval_shape(entry.init_meta_params, jax.random.PRNGKey(0))
    return entry, jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


@pytest.mark.parametrize("num_steps", [0, -5, 2.5])
@pytest.mark.parametrize("name", ["celo", "celo_adam", "velo_s", "rnn_mlp_lopt",
                                  "adafac_mlp_lopt", "nn_adam"])
def test_learned_factories_refuse_bad_horizon(name, num_steps):
    entry, meta = _learned(name)
    with pytest.raises(HyperparameterError, match=r"num_steps = .* must be an integer in \[1, inf\)"):
        entry.fn(meta, num_steps=num_steps)


def test_build_celo_num_steps_zero_is_refused(tmp_path):
    """The issue's input: build("celo", num_steps=0) with a checkpoint on disk."""
    _, meta = _learned("celo")
    path = ckpt.write(tmp_path / "celo", jax.tree.map(np.asarray, meta))
    for bad in (0, -5):
        with pytest.raises(HyperparameterError) as e:
            build("celo", num_steps=bad, checkpoint=str(path))
        assert isinstance(e.value, CeloBenchError) and isinstance(e.value, ValueError)
        assert "celo: num_steps" in str(e.value) and "[1, inf)" in str(e.value)
    build("celo", num_steps=1, checkpoint=str(path))  # the smallest valid horizon is fine


@pytest.mark.parametrize("name, kwargs, arg, valid", [
    ("adam", {"learning_rate": -1e-3}, "learning_rate", "[0, inf)"),
    ("adam", {"learning_rate": float("nan")}, "learning_rate", "[0, inf)"),
    ("adam", {"learning_rate": 1e-3, "b1": 1.0}, "b1", "[0, 1)"),
    ("adam", {"learning_rate": 1e-3, "b1": -0.1}, "b1", "[0, 1)"),
    ("adamw", {"learning_rate": 1e-3, "b2": 1.5}, "b2", "[0, 1)"),
    ("adam", {"learning_rate": 1e-3, "eps": -1e-8}, "eps", "[0, inf)"),
    ("sgdm", {"learning_rate": 0.1, "momentum": 1.0}, "momentum", "[0, 1)"),
    ("adafactor", {"learning_rate": 0.1, "decay_offset": -1}, "decay_offset", "[0, inf)"),
    ("adafactor", {"learning_rate": 0.1, "decay_offset": 1.5}, "decay_offset", "integer"),
    ("sm3", {"learning_rate": 0.1, "b2": 1.5}, "b2", "[0, 1]"),
    ("fromage", {"learning_rate": 0.1, "min_norm": 0.0}, "min_norm", "(0, inf)"),
    ("muon", {"learning_rate": 0.1, "ns_steps": 0}, "ns_steps", "[1, inf)"),
    ("lion", {"learning_rate": "fast"}, "learning_rate", "not a number"),
    ("nadamw", {"learning_rate": 0.1, "nesterov": 2}, "nesterov", "False, True"),
    ("adam", {"learning_rate": 1e-3, "num_steps": 0}, "num_steps", "[1, inf)"),
])
def test_handcrafted_factories_refuse_out_of_domain(name, kwargs, arg, valid):
    kwargs = {"num_steps": 10, **kwargs}
    with pytest.raises(HyperparameterError) as e:
        build(name, **kwargs)
    msg = str(e.value)
    assert msg.startswith(f"{name}: {arg} = ") and valid in msg and "\n" not in msg, msg


def test_boundaries_inside_the_domain_are_accepted():
    for name, kwargs in [("adam", {"learning_rate": 0.0, "b1": 0.0, "eps": 0.0}),
                         ("sm3", {"learning_rate": 0.1, "b2": 1.0}),
                         ("adafactor", {"learning_rate": 0.1, "decay_offset": 3}),
                         ("adam", {"learning_rate": jnp.asarray(1e-3)})]:
        assert isinstance(build(name, num_steps=1, **kwargs), optax.GradientTransformation)


def test_traced_hyper_parameters_are_not_checked():
    """Inside jit/vmap the value is unknown: a traced (even negative) learning rate builds."""
    spec = REGISTRY.optimizer("adam")
    make = builder(spec, num_steps=5)
    params = {"w": jnp.ones((2,))}

    def one(lr):
        opt = make({"learning_rate": lr})
        u, _ = opt.update({"w": jnp.ones((2,))}, opt.init(params), params)
        return u["w"]

    out = jax.jit(jax.vmap(one))(jnp.asarray([1e-3, -1e-3]))
    assert out.shape == (2, 2) and np.all(out[0] < 0) and np.all(out[1] > 0)
    traced_steps = jax.jit(lambda n: REGISTERED_FACTORIES["nn_adam"].fn(
        REGISTERED_FACTORIES["nn_adam"].init_meta_params(jax.random.PRNGKey(0)), num_steps=n).init(params).m["w"])
    assert traced_steps(jnp.int32(0)).shape == (2,)


# ---- the checks themselves catch what they claim to -------------------------------------
def _bad(update):
    """An optimizer whose update is `update(g)` per leaf, stateless."""
    def make(hp):
        lr = hp.get("learning_rate", 0.1)
        return optax.GradientTransformationExtraArgs(
            lambda p: optax.EmptyState(),
            lambda g, s, p=None, **kw: (jax.tree.map(lambda x: update(x, lr), g), s))
    return make


@pytest.mark.parametrize("update, check", [
    (lambda g, lr: -lr * g, None),
    (lambda g, lr: g / jnp.zeros_like(g), "finite"),
    (lambda g, lr: -lr * jnp.sum(g), "shape"),
    (lambda g, lr: (-lr * g).astype(jnp.float16), "dtype"),
    (lambda g, lr: lr * g, "progress"),
    (lambda g, lr: -0.1 * g, "hparams"),
])
def test_conformance_detects(update, check):
    problems = conformance.check_optimizer(_bad(update), [{"learning_rate": 0.01}, {"learning_rate": 1.0}])
    assert [p.check for p in problems][:1] == ([check] if check else []), [str(p) for p in problems]


def test_conformance_detects_python_branch_on_traced_hparam():
    def make(hp):
        lr = hp["learning_rate"]
        return optax.sgd(0.1 if lr > 0.5 else lr)  # concrete: fine; traced: fails

    problems = conformance.check_optimizer(make, [{"learning_rate": 0.1}])
    assert [p.check for p in problems] == ["jit"] and "traced" in problems[0].fix


def test_conformance_detects_state_that_changes_type():
    def make(hp):
        def update(g, s, p=None, **kw):
            return jax.tree.map(lambda x: -0.1 * x, g), s.astype(jnp.float32) + 1
        return optax.GradientTransformationExtraArgs(lambda p: jnp.zeros([], jnp.int32), update)

    problems = conformance.check_optimizer(make)
    assert [p.check for p in problems] == ["state"], [str(p) for p in problems]
