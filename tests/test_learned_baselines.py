"""VeLO, RNN-MLP-LOpt, AdaFac-MLP-LOpt, NN-Adam: trees from the spec and stated behaviours."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from celo_bench.optimizers import factory
from celo_bench.optimizers.checkpoint import flatten
from celo_bench.optimizers.learned import adafac_mlp, nn_adam, velo

# Appendix B: (leaves, values) and a few distinguishing shapes per architecture.
TREES = {
    "velo_s": (33, 46337, {("ff_mod_stack", "~", "w0__13"): (32, 3, 4),
                           ("rnn_params", "linear_2", "w"): (30, 64),
                           ("rnn_params", "rnn_to_controls", "w"): (64, 32)}),
    "velo_4000": (33, 2320385, {("ff_mod_stack", "~", "b2"): (256, 3),
                                ("rnn_params", "rnn/linear", "w"): (1024, 2048),
                                ("lstm_init_state", "cell"): (1, 512)}),
    "rnn_mlp_lopt": (16, 35799, {("ffmod_params", "mlp/~/linear_0", "w"): (54, 32),
                                 ("rnn_params", "rnn/linear", "w"): (116, 256),
                                 ("rnn_to_ff_params", "rnn_to_ff", "w"): (64, 17),
                                 ("rnn_to_in_params", "rnn_to_in", "b"): (18,),
                                 ("initial_from_mlp",): (16,)}),
    "adafac_mlp_lopt": (9, 197, {("nn", "~", "w0"): (39, 4), ("nn", "~", "w2"): (4, 2),
                                 ("rms_decays",): (1,), ("adafactor_decays",): (3,)}),
    "nn_adam": (10, 21896, {("per_layer_lr",): (), ("rnn_params", "rnn/linear", "w"): (83, 256),
                            ("rnn_to_controls_params", "rnn_to_controls", "w"): (64, 4)}),
}
PARAMS = {"b": jnp.linspace(-0.2, 0.3, 4), "w": (jnp.arange(12.0).reshape(3, 4) - 5.5) / 10,
          "s": jnp.asarray(0.5)}
GRADS = {"b": jnp.array([0.01, -0.02, 0.03, -0.04]), "w": 0.1 * jnp.sin(jnp.arange(12.0)).reshape(3, 4),
         "s": jnp.asarray(0.2)}


@pytest.mark.parametrize("name", list(TREES))
def test_tree_matches_spec(name):
    leaves, values, shapes = TREES[name]
    tree = flatten(jax.eval_shape(factory(name).init_meta_params, jax.random.PRNGKey(0)))
    assert len(tree) == leaves
    assert sum(int(np.prod(v.shape)) for v in tree.values()) == values
    for key, shape in shapes.items():
        assert tuple(tree[key].shape) == shape, key


def _updates(opt, steps=1, params=PARAMS, grads=GRADS):
    state, update = opt.init(params), jax.jit(opt.update)
    for i in range(steps):
        u, state = update(grads, state, params, loss=jnp.float32(2.0 - 0.1 * i))
    return u, state


def _traced_updates(make, thetas, steps=1):
    """Updates for several meta-parameter draws with ONE compile (theta is a traced input)."""

    @jax.jit
    def run(theta):
        opt = make(theta)
        state, u = opt.init(PARAMS), None
        for i in range(steps):
            u, state = opt.update(GRADS, state, PARAMS, loss=jnp.float32(2.0 - 0.1 * i))
        return u

    return [run(t) for t in thetas]


def test_adafac_learned_decays_map_as_stated():
    theta = jnp.array([0.0, 0.1, -0.2])
    beta0 = np.array([0.9, 0.99, 0.999])
    expected = 1 - (1 - beta0) * np.exp(10 * np.array([0.0, 0.1, -0.2]))
    np.testing.assert_allclose(adafac_mlp.learned_decay(beta0, theta), expected, rtol=1e-5)
    # Zero offsets are the published initial decays.
    np.testing.assert_allclose(adafac_mlp.learned_decay(beta0, jnp.zeros(3)), beta0, rtol=1e-6)


def test_adafac_ignores_horizon_and_loss():
    theta = adafac_mlp.init_meta_params(jax.random.PRNGKey(0))
    u1, _ = _updates(adafac_mlp.adafac_mlp_lopt(theta, num_steps=10))
    u2, _ = _updates(adafac_mlp.adafac_mlp_lopt(theta, num_steps=10_000))
    for k in PARAMS:
        np.testing.assert_array_equal(u1[k], u2[k])


def test_nn_adam_with_zero_control_head_is_uncorrected_adam():
    """Published init: head weights 0, so hparams stay at lr 1e-4, b1 .9, b2 .999, eps 1e-8."""
    theta = nn_adam.init_meta_params(jax.random.PRNGKey(0))
    theta["rnn_to_controls_params"]["rnn_to_controls"]["b"] = jnp.zeros(4)
    opt = nn_adam.nn_adam(theta, num_steps=100)
    u, state = _updates(opt, steps=3)
    lr, b1, b2, eps = 1e-4, 0.9, 0.999, 1e-8
    for k, g in GRADS.items():
        g = np.asarray(g, np.float64)
        m = sum((1 - b1) * b1**i for i in range(3)) * g  # no bias correction
        v = sum((1 - b2) * b2**i for i in range(3)) * g * g
        np.testing.assert_allclose(u[k], -lr * (1 + eps) * m / (eps + np.sqrt(v + 1e-10)), rtol=2e-4)
    np.testing.assert_allclose(nn_adam._dec_lr(state.hparams["lr"]), 1e-4, rtol=1e-4)


def test_velo_step_multiplier_is_raw_and_signed():
    """No exp on the step-size head: flipping its sign flips the step."""
    theta = velo.init_meta_params(jax.random.PRNGKey(0), hidden=64, param_inits=32)

    def with_bias(b):
        t = jax.tree_util.tree_map(lambda x: x, theta)
        t["rnn_params"]["step_size"] = {"b": jnp.array([b]), "w": jnp.zeros((64, 1))}
        return t

    up, down = _traced_updates(lambda t: velo.velo(t, num_steps=100), [with_bias(0.5), with_bias(-0.5)])
    for k in PARAMS:
        np.testing.assert_allclose(up[k], -down[k], rtol=1e-6)
    assert any(np.abs(up[k]).max() > 0 for k in PARAMS)


def test_rnn_mlp_ignores_horizon():
    f = factory("rnn_mlp_lopt")
    theta = f.init_meta_params(jax.random.PRNGKey(0))
    u1, s1 = _updates(f.fn(theta, num_steps=10), steps=2)
    u2, _ = _updates(f.fn(theta, num_steps=5000), steps=2)
    for k in PARAMS:
        np.testing.assert_array_equal(u1[k], u2[k])
    assert s1.from_mlp.shape == (3, 16) and s1.from_lstm.shape == (18,)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["velo_s", "rnn_mlp_lopt"])  # per-tensor LSTM states under vmap
def test_runs_in_engine_vmapped_over_seeds(name):
    from celo_bench.assembly import build_task
    from celo_bench.engine import Strategy, run_job
    from celo_bench.optimizers import builder
    from celo_bench.suite import load_registry

    reg = load_registry()
    task = build_task(reg.task("smoke_digits_mlp"))
    theta = factory(name).init_meta_params(jax.random.PRNGKey(0))
    make = builder(reg.optimizer(name), num_steps=10, meta_params=theta)
    res = run_job(task, make, {}, np.array([0, 1]), num_steps=10, strategy=Strategy("scan", "vmap"))
    assert res.train_loss.shape == (2, 11) and np.isfinite(res.train_loss).all()
    assert not np.array_equal(res.train_loss[0], res.train_loss[1])  # seeds differ
