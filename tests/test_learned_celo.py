"""Celo and Celo-Adam: spec §2.9 golden values, stated behaviours, and runs in the engine."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from celo_bench import weights
from celo_bench.optimizers import build, builder, factory
from celo_bench.optimizers.checkpoint import flatten
from celo_bench.optimizers.learned import _common, celo

WEIGHTS = Path(weights.__file__).parent
"""The weights the package ships (``celo_bench/weights/<name>/theta.state``, byte-identical to
the authors' release: ``tests/test_checkpoint.py``): the golden values are checked on what a
user runs, on a fresh clone too."""

# Spec §2.9: the deterministic problem and the reference code's outputs.
PARAMS = {"b": np.linspace(-0.2, 0.3, 4, dtype=np.float32),
          "w": ((np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5) / 10)}
GRADS = {"b": np.array([0.01, -0.02, 0.03, -0.04], np.float32),
         "w": (0.1 * np.sin(np.arange(12, dtype=np.float32))).reshape(3, 4)}
LOSSES = (2.0, 1.5, 1.2, 1.0)
GOLDEN = {
    "celo": {
        1: ([-0.2010389, -0.0323885, 0.1321295, 0.3011932], [-0.549816, -0.4526029, -0.3530467, -0.2507313]),
        2: ([-0.203302, -0.0303859, 0.1296, 0.3036571], [-0.5494156, -0.4580385, -0.3594101, -0.2525054]),
        4: ([-0.2114504, -0.0234232, 0.1207994, 0.3120193], [-0.5479785, -0.4769069, -0.3815105, -0.2593936]),
    },
    "celo_adam": {
        1: ([-0.2001536, -0.0331798, 0.1331798, 0.3001536], [-0.55, -0.4501536, -0.3501536, -0.2501536]),
        4: ([-0.2011665, -0.0321668, 0.1321668, 0.3011665], [-0.55, -0.4511665, -0.3511665, -0.2511665]),
    },
}
# Appendix B.1 / B.2: key paths and shapes of the published trees.
CELO_TREE = {
    **{("ff_mod_stack", "~", f"b{i}"): (1, n) for i, n in ((0, 4), (1, 4), (2, 3))},
    **{("ff_mod_stack", "~", f"w0__{i}"): (1, w, 4)
       for i, w in enumerate([1, 1, 1, 3, 1, 3, 1, 3, 1, 3, 3, 3, 3, 3])},
    ("ff_mod_stack", "~", "w1"): (1, 4, 4), ("ff_mod_stack", "~", "w2"): (1, 4, 3),
}
SCHEDULER_TREE = {
    ("lstm_init_state", "hidden"): (1, 64), ("lstm_init_state", "cell"): (1, 64),
    **{("rnn_params", layer, "b"): (64,) for layer in ("linear", "linear_1", "linear_2")},
    **{("rnn_params", layer, "w"): (18, 64) for layer in ("linear", "linear_1", "linear_2")},
    ("rnn_params", "rnn/linear", "b"): (256,), ("rnn_params", "rnn/linear", "w"): (128, 256),
    ("rnn_params", "step_size", "b"): (1,), ("rnn_params", "step_size", "w"): (64, 1),
}
CELO_TREE.update(SCHEDULER_TREE)
CELO_TREE.update({("rnn_params", "rnn_to_controls", "b"): (1,), ("rnn_params", "rnn_to_controls", "w"): (64, 1)})


def _shapes(name):
    tree = jax.eval_shape(factory(name).init_meta_params, jax.random.PRNGKey(0))
    return {k: tuple(v.shape) for k, v in flatten(tree).items()}


@pytest.mark.parametrize("name, expected", [("celo", CELO_TREE), ("celo_adam", SCHEDULER_TREE)])
def test_meta_parameter_tree_matches_spec(name, expected):
    assert _shapes(name) == expected


def _run(opt, params, losses, grads=GRADS):
    state = opt.init(params)
    update = jax.jit(opt.update)
    out = []
    for loss in losses:
        updates, state = update(grads, state, params, loss=jnp.float32(loss))
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out, state


@pytest.mark.parametrize("name", ["celo", "celo_adam"])
def test_golden_values(name):
    opt = build(name, num_steps=100, checkpoint=str(WEIGHTS / name / "theta.state"))
    history, _ = _run(opt, PARAMS, LOSSES)
    for step, (b, w0) in GOLDEN[name].items():
        np.testing.assert_allclose(history[step - 1]["b"], b, rtol=2e-6, atol=2e-7)
        np.testing.assert_allclose(history[step - 1]["w"][0], w0, rtol=2e-6, atol=2e-7)


@pytest.mark.parametrize("name, s0", [("celo", 1.489756), ("celo_adam", 0.428931)])
def test_scheduler_at_step_zero(name, s0):
    from celo_bench.optimizers.checkpoint import load_for_spec
    from celo_bench.suite import load_registry

    theta = load_for_spec(load_registry().optimizer(name), str(WEIGHTS / name / "theta.state"))
    lstm = _common.LSTMState(*(jnp.asarray(theta["lstm_init_state"][k]) for k in ("hidden", "cell")))
    for horizon in (10, 100, 5000):  # task-independent: fraction 0, loss features 0
        buf = _common.loss_buffer_update(_common.loss_buffer_init(horizon), jnp.float32(3.0))
        s, _ = celo.scheduler_step(theta["rnn_params"], lstm, jnp.int32(0), horizon, buf)
        np.testing.assert_allclose(float(s), s0, atol=2e-6)
    np.testing.assert_allclose(0.1 * np.exp(s0), {"celo": 0.443601, "celo_adam": 0.153561}[name], rtol=1e-5)


def _random_celo(seed=0, **kw):
    theta = celo.init_meta_params(jax.random.PRNGKey(seed))
    return celo.celo(theta, num_steps=100, **kw)


def _first_update(opt, params, grads=GRADS):
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params, loss=jnp.float32(LOSSES[0]))
    return updates


def test_step_scales_with_parameter_rms():
    """Scaling a tensor by c scales its Celo step by c (reparametrisation invariance)."""
    opt = _random_celo()
    u1 = _first_update(opt, PARAMS)
    u2 = _first_update(opt, {"b": PARAMS["b"], "w": PARAMS["w"] * 10.0})
    np.testing.assert_allclose(u2["w"], 10.0 * u1["w"], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(u2["b"], u1["b"], rtol=1e-5, atol=1e-10)


def test_scheduler_sees_no_per_tensor_information():
    """Same losses, different parameters and gradients: identical scheduler state."""
    opt = _random_celo()
    other_p = {"x": np.ones((5, 7), np.float32), "y": np.full((3,), -2.0, np.float32)}
    other_g = {"x": np.full((5, 7), 0.3, np.float32), "y": np.ones((3,), np.float32)}
    _, s1 = _run(opt, PARAMS, LOSSES)
    _, s2 = _run(opt, other_p, LOSSES, grads=other_g)
    np.testing.assert_array_equal(s1.lstm.hidden, s2.lstm.hidden)
    np.testing.assert_array_equal(s1.loss_buffer.means, s2.loss_buffer.means)


def test_zero_tensor_barely_moves_and_phase1_ignores_scheduler():
    params = {"b": np.zeros((4,), np.float32), "w": PARAMS["w"]}
    (p,), _ = _run(_random_celo(), params, LOSSES[:1])
    assert np.abs(p["b"]).max() < 1e-6  # param_scale floor sqrt(1e-9) = 3.2e-5
    d1 = _first_update(_random_celo(train_phase=1), PARAMS)["w"]
    d2 = _first_update(_random_celo(train_phase=2), PARAMS)["w"]
    ratio = d2[d1 != 0] / d1[d1 != 0]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)  # phase 2 = one global lr_mult x phase 1


def test_missing_loss_is_an_error():
    opt = _random_celo()
    with pytest.raises(ValueError, match="loss"):
        opt.update(GRADS, opt.init(PARAMS), PARAMS)


@pytest.mark.slow
def test_celo_trains_smoke_task_in_engine_vmapped_over_seeds():
    from celo_bench.assembly import build_task
    from celo_bench.engine import Strategy, run_job
    from celo_bench.suite import load_registry

    reg = load_registry()
    task = build_task(reg.task("smoke_digits_mlp"))
    steps, seeds = task.spec.steps, np.array([0, 1])
    make = builder(reg.optimizer("celo"), num_steps=steps, checkpoint=str(WEIGHTS / "celo" / "theta.state"))
    res = run_job(task, make, {}, seeds, num_steps=steps, strategy=Strategy("scan", "vmap"))
    assert res.train_loss.shape == (2, steps + 1) and np.isfinite(res.train_loss).all()
    first, last = res.eval_loss["train"][:, 0], res.eval_loss["train"][:, -1]
    assert (last < first).all(), (first, last)
