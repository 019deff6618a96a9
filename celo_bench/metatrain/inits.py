"""Where meta-training starts: the reference initialisation, or a measured re-initialisation.

``reference`` is the registry's ``init_meta_params`` (the reference implementation's haiku
initialisers, :mod:`celo_bench.optimizers.learned`). The other schemes change **only the
starting meta-parameters** of a run, never the update rule: the optimizer that the
weights are run with is the same code, so the published weights and the golden values are
untouched. Each is chosen per architecture by the preset's table
(:data:`celo_bench.metatrain.config.ARCH_SETTINGS`) and recorded in the run's card.

``velo_unit_controls`` (VeLO-S on the ``cpu`` preset). HyperV2 builds each tensor's MLP as
``ff_mult * mean_k(c_k theta_k)`` over its ``K`` stacked MLPs and multiplies the step by a
raw ``lr_mult``, both read from the LSTM output ``h`` through linear heads initialised like
haiku's (weights ``1/sqrt(H)``, biases 0). Google's VeLO has ``ff_mult = 100``, which
makes the interpolated MLP about the scale of one freshly initialised MLP; VeLO-S has
``ff_mult = 1``, so with the reference initialisation the MLP is ~1/50 of that scale, the
output of its three layers ~1e-5 of it, and ``lr_mult`` ~ +-0.03: the initial update is
~1e-9 of the parameters per step (Adam at 1e-3: ~5e-4), the inner loss does not move,
and the PES estimate is pure noise (its signal-to-noise equals that of the dead ``linear``
layer, whose true gradient is 0). Every meta-gradient passes through products of these
small factors, a high-order saddle that a 2,000-step budget does not leave (the paper's
100k steps random-walk out of it). This scheme sets the two heads' **biases**:
``rnn_to_controls/b = sqrt(K)`` (so ``mean_k(c_k theta_k)`` of K independent haiku-initialised
MLPs has the scale of one) and ``step_size/b = 1`` (``lr_mult`` about 1, the step of
Celo's phase 1 at its initialisation); every weight stays the reference draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from celo_bench.errors import CeloBenchError


def _velo_unit_controls(theta: dict) -> dict:
    rnn = dict(theta["rnn_params"])
    k = int(jnp.shape(rnn["rnn_to_controls"]["b"])[0])
    rnn["rnn_to_controls"] = {**rnn["rnn_to_controls"], "b": jnp.full((k,), math.sqrt(k), jnp.float32)}
    rnn["step_size"] = {**rnn["step_size"], "b": jnp.ones_like(rnn["step_size"]["b"])}
    return {**theta, "rnn_params": rnn}


SCHEMES: dict[str, tuple[tuple[str, ...] | None, Callable[[Any], Any] | None, str]] = {
    "reference": (None, None, "the reference implementation's initialisation (haiku initialisers)"),
    "velo_unit_controls": (
        ("velo_s", "velo_4000"), _velo_unit_controls,
        "reference weights; rnn_to_controls/b = sqrt(K), step_size/b = 1 (the interpolated MLP at "
        "the scale of one initialised MLP, lr_mult about 1)",
    ),
}
"""scheme -> (architectures it applies to (None: all), the change, what it does)."""


def check(scheme: str, arch: str) -> None:
    """Raise a clear error for an unknown scheme or one made for another architecture."""
    if scheme not in SCHEMES:
        raise CeloBenchError(f"unknown meta_init '{scheme}'; choose one of: {', '.join(SCHEMES)}")
    archs = SCHEMES[scheme][0]
    if archs is not None and arch not in archs:
        raise CeloBenchError(f"meta_init '{scheme}' is made for {', '.join(archs)}, not '{arch}'")


def scheme_description(scheme: str) -> str:
    return SCHEMES[scheme][2]


def initial_meta_params(arch: str, scheme: str, key: jax.Array, init_fn: Callable[[jax.Array], Any]) -> Any:
    """``init_fn(key)`` (the registry's random draw), changed by `scheme` (module docstring)."""
    check(scheme, arch)
    theta = init_fn(key)
    change = SCHEMES[scheme][1]
    return theta if change is None else change(theta)


__all__ = ["SCHEMES", "check", "initial_meta_params", "scheme_description"]
