"""Every optimizer, hand-crafted or learned, behind one function: :func:`build`."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optax

from celo_bench.errors import CeloBenchError
from celo_bench.optimizers import extra, handcrafted  # noqa: F401  (registers factories)
from celo_bench.optimizers._registry import REGISTERED_FACTORIES, FactoryEntry, factory, register
from celo_bench.suite import OptimizerSpec, canonical_json, load_registry
from celo_bench.task import OptimizerBuilder


def _load_learned() -> None:
    try:
        from celo_bench.optimizers import learned  # noqa: F401  (registers factories)
    except ImportError as e:  # pragma: no cover - only while the package is partial
        if "celo_bench.optimizers.learned" not in str(e):
            raise


_load_learned()


def _check_hparams(spec: OptimizerSpec, hparams: Mapping[str, Any]) -> None:
    import inspect

    fn = factory(spec.factory).fn
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    accepted = [n for n in sig.parameters if n not in ("meta_params", "num_steps")]
    for name in hparams:
        if name not in accepted:
            raise CeloBenchError(
                f"hyper-parameter '{name}' is not accepted by optimizer '{spec.name}'; "
                f"accepted: {', '.join(accepted)}"
            )


def _bound_defaults(fn: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """`defaults` completed with `fn`'s own keyword defaults: a spec that spells out a default
    (``train_phase: 2``) builds the same optimizer as one that leaves it out."""
    own = {k: p.default for k, p in inspect.signature(fn).parameters.items()
           if p.default is not inspect.Parameter.empty}
    return {**own, **defaults}


def _program_key(spec: OptimizerSpec, entry: FactoryEntry, defaults: Mapping[str, Any],
                 num_steps: int) -> tuple | None:
    """What fixes the programs a builder traces, its hyper-parameters' and meta-parameters'
    values aside (they are inputs): the factory and its fixed arguments. None when those do
    not serialise (nothing is then shared)."""
    try:
        fixed = canonical_json(_bound_defaults(entry.fn, defaults))
    except (TypeError, ValueError):
        return None
    return (spec.factory, id(entry.fn), fixed, num_steps)


def builder(
    spec: OptimizerSpec,
    *,
    num_steps: int,
    checkpoint: str | None = None,
    meta_params: Any = None,
    sha256: str | None = None,
) -> OptimizerBuilder:
    """Return the :class:`~celo_bench.task.OptimizerBuilder` of `spec`: ``make(hparams) ->
    GradientTransformationExtraArgs``.

    Meta-parameters of a learned optimizer are loaded once here (from `meta_params`,
    `checkpoint`, or the spec's checkpoint source) and closed over; hyper-parameters
    arrive at call time and may be traced. `sha256`, when given, is the hash the loaded
    checkpoint bytes must have (the one planned into the run keys).
    """
    entry: FactoryEntry = factory(spec.factory)
    defaults = dict(spec.defaults)
    if entry.learned and meta_params is None:
        from celo_bench.optimizers.checkpoint import load_for_spec

        meta_params = load_for_spec(spec, checkpoint, sha256=sha256)
    # the engine compiles one program for every learned optimizer's builder with this key
    return Builder(entry, defaults, num_steps, meta_params if entry.learned else None,
                   _program_key(spec, entry, defaults, num_steps))


@dataclass(frozen=True, eq=False)
class Builder:
    """The registry's :class:`~celo_bench.task.OptimizerBuilder`: a registered factory with its
    spec's `defaults` and the run horizon `num_steps` bound (see :func:`builder`)."""

    entry: FactoryEntry
    defaults: Mapping[str, Any]
    num_steps: int
    meta_params: Any = None
    program_key: tuple | None = None

    def __call__(self, hparams: Mapping[str, Any], meta_params: Any = None) -> optax.GradientTransformationExtraArgs:
        kwargs = {**self.defaults, **dict(hparams)}
        if self.entry.learned:
            theta = meta_params if meta_params is not None else self.meta_params
            opt = self.entry.fn(theta, **kwargs, num_steps=self.num_steps)
        else:
            opt = self.entry.fn(**kwargs, num_steps=self.num_steps)
        if not isinstance(opt, optax.GradientTransformationExtraArgs):
            opt = optax.with_extra_args_support(opt)
        return opt


def build(
    name: str, *, num_steps: int, checkpoint: str | None = None, **hparams: Any
) -> optax.GradientTransformationExtraArgs:
    """Build optimizer `name` (a spec in ``baselines/``) for a run of `num_steps` steps.

    Example (run as a doctest by ``tests/test_doctests.py``)::

        >>> import jax.numpy as jnp
        >>> from celo_bench.optimizers import build
        >>> opt = build("adam", num_steps=1000, learning_rate=1e-3)
        >>> params = {"w": jnp.ones(3)}
        >>> state = opt.init(params)
        >>> grads = {"w": jnp.array([1.0, -2.0, 0.5])}
        >>> updates, state = opt.update(grads, state, params, loss=jnp.float32(1.0))
        >>> [round(float(u), 6) for u in updates["w"]]  # Adam's first step: -lr * sign(g)
        [-0.001, 0.001, -0.001]
    """
    spec = load_registry().optimizer(name)
    _check_hparams(spec, {**spec.defaults, **hparams})
    return builder(spec, num_steps=num_steps, checkpoint=checkpoint)(hparams)


__all__ = ["REGISTERED_FACTORIES", "Builder", "OptimizerBuilder", "build", "builder", "factory", "register"]
