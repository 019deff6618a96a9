r"""Truncated Persistent Evolution Strategies (Vicol et al., ICML 2021) with antithetic pairs.

Setting (the Celo paper's recipe, arXiv:2501.12670; learned_optimization's ``TruncatedPES``;
Vicol et al., *Unbiased Gradient Estimation in Unrolled Computation Graphs with Persistent
Evolution Strategies*, arXiv:2112.13835): ``N`` task
instances each run an inner training episode of horizon ``T`` (log-uniform in
``[min_horizon, max_horizon]``), advanced ``K`` (truncation) steps per outer step. For
instance ``i`` the outer step draws :math:`\epsilon_i \sim \mathcal N(0, \sigma^2 I)` and
unrolls a **pair** of inner states, one with :math:`\theta + \epsilon_i` and one with
:math:`\theta - \epsilon_i` (same data, same resets). With per-step meta-losses
:math:`L^\pm_{t}` (the normalised inner training loss) the estimate is

.. math::
   \hat g_i = \frac{1}{2\sigma^2 K} \sum_{t=1}^{K} (L^+_t - L^-_t)\, A_{i,t},\qquad
   A_{i,t} = \begin{cases} \xi_i + \epsilon_i & \text{no reset in this truncation up to } t\\
   \epsilon_i & \text{otherwise}\end{cases}

where :math:`\xi_i` accumulates the perturbations of the earlier truncations of the same
episode (this is what makes PES unbiased for the gradient of the Gaussian-smoothed
total loss, unlike truncated ES). :math:`\hat g = \frac1N \sum_i \hat g_i`; the
accumulator becomes :math:`\epsilon_i` after a reset and :math:`\xi_i + \epsilon_i`
otherwise. Antithetic pairs make the loss's own value (any baseline) cancel exactly.

Implementation choices (documented deviations from the reference):

* an instance whose episode is over resets **at the start** of its next step and trains
  from the fresh state in that same step, so every step has a loss (the reference spends
  one masked step on the reset); the per-step accumulator switch above is exact where
  the reference switches per truncation with its mean loss difference;
* perturbations are drawn only on trainable leaves (``mask``); the reference perturbs
  frozen leaves too and then discards their gradient, which only adds noise.

All ``2N`` inner states of an outer step advance in **one** ``vmap`` inside one
``lax.scan``, so the whole estimate is a single compiled program.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from celo_bench.metatrain.tasks import TaskFamily

MakeOpt = Callable[[Any, jax.Array], optax.GradientTransformationExtraArgs]
"""``(theta, num_steps) -> learned optimizer``; ``num_steps`` is a traced int32."""


class InnerState(NamedTuple):
    """One inner training episode; a PES state holds ``2N`` of them (positive, then negative)."""

    params: Any
    opt_state: Any
    cfg: Any
    member: jax.Array  # int32: which member task (dataset) of the family
    step: jax.Array  # int32: steps taken in this episode (starts at the random offset)
    length: jax.Array  # int32: the episode's horizon T
    key: jax.Array  # the instance's own key stream, shared by a +/- pair


class PESState(NamedTuple):
    inner: InnerState
    accum: Any  # theta-shaped, leading axis N: perturbations of the current episode


class PESOut(NamedTuple):
    meta_loss: jax.Array  # mean over instances and steps of (L+ + L-)/2, NaN -> nan_loss_value
    instance_loss: jax.Array  # (N,)
    resets: jax.Array  # (N,) number of episode resets during this truncation


def tree_where(cond: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree_util.tree_map(lambda x, y: jnp.where(cond, x, y).astype(y.dtype), a, b)


def sample_horizon(key: jax.Array, low: int, high: int) -> jax.Array:
    """An int32 in ``[low, high]``, log-uniform (``floor(exp(U[log low, log(high+1)))``)."""
    u = jax.random.uniform(key, (), jnp.float32, np.log(low), np.log(high + 1.0))
    return jnp.clip(jnp.floor(jnp.exp(u)), low, high).astype(jnp.int32)


@dataclass(frozen=True)
class TruncatedPES:
    """The estimator; pure functions of ``(theta, state, data, key)`` (see module docstring)."""

    family: TaskFamily
    make_opt: MakeOpt
    instances_per_member: int = 8
    truncation: int = 50
    min_horizon: int = 100
    max_horizon: int = 2000
    initial_offset: int = 2000
    std: float = 0.01
    nan_loss_value: float = 20.0
    mask: Any = None  # theta-shaped bools (True = trainable); None = all

    @property
    def num_instances(self) -> int:
        return len(self.family.members) * self.instances_per_member

    def members(self) -> jax.Array:
        return jnp.repeat(jnp.arange(len(self.family.members), dtype=jnp.int32), self.instances_per_member)

    # ------------------------------------------------------------------ inner episodes
    def fresh(self, theta: Any, key: jax.Array, member: jax.Array) -> InnerState:
        """A new episode: task configuration, horizon, initial parameters, optimizer state."""
        k_cfg, k_len, k_init, k_next = jax.random.split(key, 4)
        cfg = self.family.sample_cfg(k_cfg, member)
        length = sample_horizon(k_len, self.min_horizon, self.max_horizon)
        params = self.family.init(k_init, cfg)
        opt_state = self.make_opt(theta, length).init(params)
        return InnerState(params, opt_state, cfg, member, jnp.asarray(0, jnp.int32), length, k_next)

    def inner_step(self, theta: Any, st: InnerState, data: Any) -> tuple[InnerState, tuple]:
        """Reset if the episode is over, then one training step; returns (state, (loss, reset))."""
        k_reset, k_batch, k_next = jax.random.split(st.key, 3)
        reset = st.step >= st.length
        st = tree_where(reset, self.fresh(theta, k_reset, st.member), st)
        loss, grads = jax.value_and_grad(self.family.loss)(st.params, st.cfg, data, k_batch)
        opt = self.make_opt(theta, st.length)
        updates, opt_state = opt.update(grads, st.opt_state, st.params, loss=loss)
        params = optax.apply_updates(st.params, updates)
        new = st._replace(params=params, opt_state=opt_state, step=st.step + 1, key=k_next)
        return new, (self.family.normalize(loss), reset)

    def unroll(self, thetas: Any, inner: InnerState, data: Any) -> tuple[InnerState, jax.Array, jax.Array]:
        """``truncation`` steps of all instances: losses and reset flags of shape (K, instances)."""
        step = jax.vmap(self.inner_step, in_axes=(0, 0, None))

        def body(carry, _):
            carry, (loss, reset) = step(thetas, carry, data)
            return carry, (loss, reset)

        inner, (losses, resets) = jax.lax.scan(body, inner, None, length=self.truncation)
        return inner, losses, resets

    # ------------------------------------------------------------------ state and perturbations
    def init(self, theta: Any, key: jax.Array) -> PESState:
        """``N`` fresh episodes (unperturbed theta), duplicated for the pairs, random offsets."""
        n = self.num_instances
        k_inst, k_off = jax.random.split(key)
        one = jax.vmap(self.fresh, in_axes=(None, 0, 0))(theta, jax.random.split(k_inst, n), self.members())
        if self.initial_offset > 0:  # desynchronise the episodes (reference: offset < 2000)
            one = one._replace(step=jax.random.randint(k_off, (n,), 0, self.initial_offset, jnp.int32))
        inner = jax.tree_util.tree_map(lambda x: jnp.concatenate([x, x]), one)
        accum = jax.tree_util.tree_map(lambda t: jnp.zeros((n,) + jnp.shape(t), jnp.float32), theta)
        return PESState(inner, accum)

    def perturbations(self, theta: Any, key: jax.Array) -> Any:
        """``N`` draws of N(0, std^2) per trainable leaf (zeros on frozen leaves)."""
        leaves, treedef = jax.tree_util.tree_flatten(theta)
        mask = [True] * len(leaves) if self.mask is None else treedef.flatten_up_to(self.mask)
        keys = jax.random.split(key, len(leaves))
        n = self.num_instances
        eps = [
            self.std * jax.random.normal(k, (n,) + jnp.shape(t), jnp.float32) if m
            else jnp.zeros((n,) + jnp.shape(t), jnp.float32)
            for k, t, m in zip(keys, leaves, mask, strict=True)
        ]
        return treedef.unflatten(eps)

    # ------------------------------------------------------------------ the estimate
    def instance_grads(self, theta: Any, state: PESState, data: Any, key: jax.Array):
        """Per-instance estimates ``g_i`` (leading axis N), the next state and :class:`PESOut`."""
        n, k = self.num_instances, self.truncation
        eps = self.perturbations(theta, key)
        thetas = jax.tree_util.tree_map(lambda t, e: jnp.concatenate([t + e, t - e]), theta, eps)
        inner, losses, resets = self.unroll(thetas, state.inner, data)
        pos, neg, reset = losses[:, :n], losses[:, n:], resets[:, :n]
        after = jnp.cumsum(reset.astype(jnp.int32), axis=0) > 0  # (K, N): step in a new episode
        delta = pos - neg
        d_before = jnp.sum(jnp.where(after, 0.0, delta), axis=0) / k
        d_after = jnp.sum(jnp.where(after, delta, 0.0), axis=0) / k
        scale = 1.0 / (2.0 * self.std**2)

        def per_leaf(acc, e):
            shape = (n,) + (1,) * (e.ndim - 1)
            return scale * (d_before.reshape(shape) * (acc + e) + d_after.reshape(shape) * e)

        grads = jax.tree_util.tree_map(per_leaf, state.accum, eps)
        restarted = after[-1]
        accum = jax.tree_util.tree_map(
            lambda acc, e: jnp.where(restarted.reshape((n,) + (1,) * (e.ndim - 1)), e, acc + e),
            state.accum, eps,
        )
        instance_loss = jnp.mean((pos + neg) / 2.0, axis=0)
        meta_loss = jnp.mean(instance_loss)
        meta_loss = jnp.where(jnp.isnan(meta_loss), self.nan_loss_value, meta_loss)
        out = PESOut(meta_loss, instance_loss, jnp.sum(reset, axis=0))
        return grads, PESState(inner, accum), out

    def estimate(self, theta: Any, state: PESState, data: Any, key: jax.Array):
        """The PES gradient (mean over instances), the next state and :class:`PESOut`."""
        grads, state, out = self.instance_grads(theta, state, data, key)
        return jax.tree_util.tree_map(lambda g: jnp.mean(g, axis=0), grads), state, out


__all__ = ["InnerState", "PESOut", "PESState", "TruncatedPES", "sample_horizon", "tree_where"]
