"""Celo (Moudgil et al., TMLR 2025): a per-parameter MLP update with a learned LR scheduler.

Meta-parameters (33 leaves, 37,089 values)::

    ff_mod_stack/~/{w0__0..w0__13, w1, w2, b0, b1, b2}   leading axis 1 (param_inits)
    lstm_init_state/{hidden, cell}                        (1, 64)
    rnn_params/{linear, linear_1, linear_2, rnn/linear, rnn_to_controls, step_size}

References:
  Moudgil, Knyazev, Lajoie & Belilovsky, "Celo: Training Versatile Learned Optimizers
  on a Compute Diet", TMLR 2025, arXiv:2501.12670 (code: github.com/amoudgl/celo).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from celo_bench.optimizers._domain import NUM_STEPS, Choice, Keys, domain
from celo_bench.optimizers._registry import register
from celo_bench.optimizers.learned import _common as c
from celo_bench.optimizers.learned._ffmod import ff_step, ffmod_stack_init

MOM_DECAYS = (0.9, 0.99, 0.999)
RMS_DECAYS = (0.999,)
FAC_DECAYS = (0.9, 0.99, 0.999)
HIDDEN = 64
N_GLOBAL = 18  # 9 progress + 9 loss features


class CeloState(NamedTuple):
    """Per run: accumulators per leaf (decay axis first), step count, one LSTM state, loss buffer.

    The reference tiles the LSTM state over tensors, but its input has no per-tensor
    information, so every row stays identical; one row is kept here.
    """

    m: Any
    rms: Any
    fac: Any
    iteration: jax.Array
    lstm: c.LSTMState
    loss_buffer: c.LossBuffer


def init_scheduler_params(key: jax.Array, *, controls: bool) -> tuple[dict, dict]:
    """``lstm_init_state`` and ``rnn_params`` of the Celo / Celo-Adam scheduler (haiku init)."""
    k_rnn, k_ctrl, k_step = jax.random.split(key, 3)
    rnn = c.mixed_lstm_init(k_rnn, N_GLOBAL, HIDDEN)
    if controls:
        rnn["rnn_to_controls"] = c.linear_init(k_ctrl, HIDDEN, 1)
    rnn["step_size"] = c.linear_init(k_step, HIDDEN, 1)
    return c.lstm_state_init(HIDDEN), dict(sorted(rnn.items()))


def scheduler_step(rnn: dict, lstm: c.LSTMState, iteration, num_steps, buf: c.LossBuffer):
    """The learned scheduler: returns ``(s, new_lstm)``; ``lr_mult = 0.1 exp(s)``.

    Input is ``[fraction_left(t/T) (9), loss_features (9)]`` -- no per-tensor information,
    so the reference's per-tensor LSTM is one global LSTM with batch 1 and its
    max-over-tensors mixing is a no-op. The ``rnn_to_controls`` head is a softmax over a
    single value (always 1) and is not evaluated.
    """
    x = jnp.concatenate([c.fraction_embed(iteration, num_steps), c.loss_buffer_features(buf)])
    h, lstm = c.mixed_lstm(rnn, x[None], lstm)
    s = c.linear(rnn["step_size"], h)[0, 0]
    return s, lstm


def as_vector(p: jax.Array) -> jax.Array:
    """Scalars are handled as shape (1,) (the reference reshapes them too)."""
    return p.reshape(p.shape or (1,))


def init_meta_params(key: jax.Array) -> dict:
    """A random Celo theta with the published tree (haiku initialisers)."""
    k_ff, k_s = jax.random.split(key)
    lstm_init, rnn = init_scheduler_params(k_s, controls=True)
    return {
        "ff_mod_stack": ffmod_stack_init(k_ff, 1),
        "lstm_init_state": lstm_init,
        "rnn_params": rnn,
    }


@domain(meta_params=Keys(("ff_mod_stack", "lstm_init_state", "rnn_params")), num_steps=NUM_STEPS,
        train_phase=Choice((1, 2)))
def celo(meta_params: dict, *, num_steps: int, train_phase: int = 2):
    r"""Celo as an optax transformation; ``update(grads, state, params, loss=loss)``.

    Per step, with ``g = clip(grad, -1000, 1000)`` and accumulators that
    already include ``g`` (momentum :math:`\beta=.9,.99,.999`, RMS .999, Adafactor-style
    .9, .99, .999):

    .. math::
      x_p = N(\text{features}(p, g, m, v, \ldots)) \in \mathbb{R}^{30},\quad
      (d, a, \cdot) = \mathrm{MLP}(x_p),\quad
      \Delta p = -\lambda_t\, d\, e^{10^{-3} a}\, 10^{-3}\, \mathrm{rms}(p),

    where ``rms(p) = sqrt(mean(p^2) + 1e-9)`` over the tensor (steps scale with the
    parameter's size) and :math:`\lambda_t = 0.1\, e^{s_t}` comes from an LSTM fed
    only with training progress ``t/T`` and loss-trend features (``T = num_steps``).

    Args:
      meta_params: the theta pytree (see module docstring); traced values are fine.
      num_steps: the run horizon ``T``; it enters only through the scheduler.
      train_phase: 2 (published Celo) multiplies by :math:`\lambda_t`; 1 does not.

    Raises:
      HyperparameterError: `num_steps` is not a positive integer, `train_phase` is not 1
        or 2, or `meta_params` is not a tree with Celo's top-level keys.

    References:
      Moudgil, Knyazev, Lajoie & Belilovsky, "Celo: Training Versatile Learned Optimizers on a
      Compute Diet", TMLR 2025, arXiv:2501.12670.
    """
    mlp = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[0], meta_params["ff_mod_stack"]["~"])
    rnn = meta_params["rnn_params"]
    lstm0 = meta_params["lstm_init_state"]

    def init_fn(params):
        def zeros(p, k):
            return jnp.zeros((k,) + as_vector(p).shape, c.F32)

        return CeloState(
            m=jax.tree_util.tree_map(lambda p: zeros(p, len(MOM_DECAYS)), params),
            rms=jax.tree_util.tree_map(lambda p: zeros(p, len(RMS_DECAYS)), params),
            fac=jax.tree_util.tree_map(
                lambda p: c.factored_init(as_vector(p), len(FAC_DECAYS)), params
            ),
            iteration=jnp.asarray(0, jnp.int32),
            lstm=c.LSTMState(jnp.asarray(lstm0["hidden"]), jnp.asarray(lstm0["cell"])),
            loss_buffer=c.loss_buffer_init(num_steps),
        )

    def update_fn(grads, state, params=None, *, loss=None, **_):
        if loss is None or params is None:
            raise ValueError("celo needs params and update(..., loss=loss)")
        buf = c.loss_buffer_update(state.loss_buffer, loss)
        s, lstm = scheduler_step(rnn, state.lstm, state.iteration, num_steps, buf)
        lr_mult = 0.1 * jnp.exp(s)

        leaves, treedef = jax.tree_util.tree_flatten(params)
        g_l = treedef.flatten_up_to(grads)
        m_l, v_l = treedef.flatten_up_to(state.m), treedef.flatten_up_to(state.rms)
        f_l = treedef.flatten_up_to(state.fac)
        out_u, out_m, out_v, out_f = [], [], [], []
        for p, g, m, v, f in zip(leaves, g_l, m_l, v_l, f_l, strict=True):
            shape = p.shape
            p, g = as_vector(p), jnp.clip(as_vector(g), -1000.0, 1000.0)
            m = c.ema(m, g[None], c.as_decays(MOM_DECAYS, p.ndim))
            v = c.ema(v, (g * g)[None], jnp.clip(c.as_decays(RMS_DECAYS, p.ndim), 0, 1))
            f, rf, cf = c.factored_update(f, g, c.as_decays(FAC_DECAYS, p.ndim))
            step = ff_step(mlp, p, g, m, v, f, rf, cf)
            if train_phase > 1:
                step = lr_mult * step
            out_u.append((-step).reshape(shape))
            out_m.append(m)
            out_v.append(v)
            out_f.append(f)
        new_state = CeloState(
            m=treedef.unflatten(out_m),
            rms=treedef.unflatten(out_v),
            fac=treedef.unflatten(out_f),
            iteration=state.iteration + 1,
            lstm=lstm,
            loss_buffer=buf,
        )
        return treedef.unflatten(out_u), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


register("celo", celo, learned=True, init_meta_params=init_meta_params)
