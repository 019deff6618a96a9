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
brings the interpolated MLP near the scale of one freshly initialised MLP; VeLO-S has
``ff_mult = 1``. Measured at the seed-0 draw: the controls are 0.02 +- 0.11, so the
interpolated MLP's weights are 0.019x those of one MLP (its output, through three layers,
~1e-5x), ``lr_mult`` is -0.26 to -0.20 per tensor, and the first update is 4e-11 RMS (Adam
at 1e-3: 9e-4); the inner loss does not move over 300 steps and the PES estimate has the
signal-to-noise of the dead ``linear`` layer, whose true gradient is 0. Every
meta-gradient passes through products of these small factors: a saddle that 1,000 outer
steps at 1e-3 (or 200 at 1e-2) did not leave. This scheme sets the two heads' **biases**:
``rnn_to_controls/b = sqrt(K)`` (the mean of K independent haiku-initialised MLPs times
sqrt(K) has the scale of one: measured 0.93x) and ``step_size/b = 1`` (``lr_mult`` 0.74 to
0.80, about the unit multiplier of Celo's phase 1); every weight stays the reference draw.
The first update is then 5e-6 RMS, the order of Celo's phase 1 at its initialisation
(1.3e-5), and meta-training learns (held-out meta-validation 2.33 -> 0.95 in 400 outer
steps at 1e-3).
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
