"""VeLO: the shape-grouped update (lax.map over same-shaped leaves) equals the plain per-leaf loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from celo_bench.optimizers import factory
from celo_bench.optimizers.learned import _grouping

SHAPES = {"s": (), "a": (3,), "b": (3,), "odd": (7,), "w1": (4, 5), "w2": (4, 5), "wt": (5, 4),
          "c1": (2, 3, 4, 5), "c2": (2, 3, 4, 5)}
STEPS = 20


def _params():
    keys = jax.random.split(jax.random.PRNGKey(1), len(SHAPES))
    return {k: 0.5 * jax.random.normal(key, shape, jnp.float32) for key, (k, shape) in zip(keys, SHAPES.items(), strict=True)}


def _loss(params, t):
    terms = [jnp.sum(jnp.square(p - 0.1 * i) + 0.3 * jnp.sin(3.0 * p + t)) for i, p in
             enumerate(jax.tree_util.tree_leaves(params))]
    return sum(terms)


def _trajectory(opt, grouped: bool):
    """Updates of every step and the final state of a 20-step run, traced in the given mode."""

    def run(params):
        def step(carry, t):
            params, state = carry
            loss, grads = jax.value_and_grad(_loss)(params, t.astype(jnp.float32))
            updates, state = opt.update(grads, state, params, loss=loss)
            return (optax.apply_updates(params, updates), state), updates

        (_, state), updates = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(STEPS))
        return updates, state

    if grouped:
        return jax.jit(run)(_params())
    with _grouping.disabled():
        return jax.jit(run)(_params())


def _assert_same(opt):
    grouped, plain = _trajectory(opt, True), _trajectory(opt, False)
    flat_g, flat_p = (jax.tree_util.tree_flatten_with_path(x)[0] for x in (grouped, plain))
    for (path, a), (_, b) in zip(flat_g, flat_p, strict=True):
        # The per-tensor LSTM state (O(1) values) feeds back on itself for 20 steps and
        # amplifies summation-order round-off to ~2e-7 absolute; everything else meets 1e-7.
        atol = 1e-6 if "lstm" in jax.tree_util.keystr(path) else 1e-7
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=atol, err_msg=str(path))
    # The run must actually move the parameters (a vacuous comparison would pass on zeros).
    assert all(np.abs(np.asarray(u)).max() > 0 for u in jax.tree_util.tree_leaves(grouped[0]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["velo_s", "velo_4000"])
def test_random_theta_grouped_equals_per_leaf(name):
    f = factory(name)
    _assert_same(f.fn(f.init_meta_params(jax.random.PRNGKey(2)), num_steps=STEPS))


def test_map_leaves_traces_once_per_distinct_shape_and_keeps_order():
    calls = []

    def fn(x, y):
        calls.append(x.shape)
        return x * jnp.mean(y), jnp.sum(x)

    xs = [jnp.full(shape, i + 1.0) for i, shape in enumerate([(2,), (3, 2), (2,), (), (3, 2), (2,)])]
    per_leaf = [(x, 2.0 * x) for x in xs]
    out = _grouping.map_leaves(fn, per_leaf)
    assert len(calls) == 3  # (2,) x3, (3, 2) x2, () x1
    for (x, y), (a, s) in zip(per_leaf, out, strict=True):
        assert a.shape == x.shape
        np.testing.assert_allclose(a, x * jnp.mean(y))  # the mean is per leaf, not per group
        np.testing.assert_allclose(s, jnp.sum(x))
    calls.clear()
    with _grouping.disabled():
        _grouping.map_leaves(fn, per_leaf)
    assert len(calls) == len(per_leaf)


@pytest.mark.parametrize("name, module", [("celo", "celo"), ("adafac_mlp_lopt", "adafac_mlp")])
def test_the_jitted_per_tensor_mlp_changes_no_number(name, module, monkeypatch):
    """The per-tensor MLP is a jitted function (traced once per leaf shape, inlined by XLA): a
    20-step trajectory is bit-identical to the one traced from the plain function."""
    import importlib

    from celo_bench.optimizers.learned import _ffmod

    module = importlib.import_module(f"celo_bench.optimizers.learned.{module}")
    assert module.ff_step is _ffmod.ff_step and hasattr(_ffmod.ff_step, "__wrapped__")
    f = factory(name)
    opt = f.fn(f.init_meta_params(jax.random.PRNGKey(2)), num_steps=STEPS)
    jitted = _trajectory(opt, True)
    monkeypatch.setattr(module, "ff_step", _ffmod.ff_step.__wrapped__)
    plain = _trajectory(f.fn(f.init_meta_params(jax.random.PRNGKey(2)), num_steps=STEPS), True)
    for a, b in zip(jax.tree_util.tree_leaves(jitted), jax.tree_util.tree_leaves(plain), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert all(np.abs(np.asarray(u)).max() > 0 for u in jax.tree_util.tree_leaves(jitted[0]))
