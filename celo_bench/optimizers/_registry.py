"""Factory registry: the Python half of an optimizer spec (the TOML names a factory here).

A factory is called as ``factory(**hyper_parameters, num_steps=T)`` for hand-crafted
optimizers and ``factory(meta_params, **hyper_parameters, num_steps=T)`` for learned ones,
and returns an ``optax.GradientTransformationExtraArgs``. Hyper-parameters may be traced
arrays: factories must not branch on their values in Python, so the engine can vmap over
a learning-rate grid without recompiling.

Each factory declares the valid range of its arguments with
:func:`celo_bench.optimizers._domain.domain`; :attr:`FactoryEntry.domain` exposes it so
that conformance checks can see which arguments are covered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import optax

from celo_bench.errors import UnknownNameError
from celo_bench.optimizers._domain import Rule, check, rules_of

Factory = Callable[..., optax.GradientTransformation]


@dataclass(frozen=True)
class FactoryEntry:
    """One registered factory and whether it takes meta-parameters (a learned optimizer)."""

    name: str
    fn: Factory
    learned: bool = False
    init_meta_params: Callable | None = None  # key -> meta-parameter tree (learned only)

    @property
    def domain(self) -> Mapping[str, Rule]:
        """Argument name -> valid range, as the factory declares it (empty if undeclared)."""
        return rules_of(self.fn)

    def check_arguments(self, **arguments: object) -> None:
        """Check `arguments` against :attr:`domain` without building anything (e.g. a spec's
        defaults and grid, or a run's horizon, before meta-parameters are loaded).

        Raises:
          HyperparameterError: the first argument outside its declared range.
        """
        check(self.name, self.domain, arguments)


REGISTERED_FACTORIES: dict[str, FactoryEntry] = {}
"""Factory name -> its :class:`FactoryEntry`: every registered optimizer factory (hand-crafted,
extra, learned and submitted ones)."""


def register(name: str, fn: Factory, *, learned: bool = False, init_meta_params: Callable | None = None) -> None:
    """Add a factory; names are unique."""
    if name in REGISTERED_FACTORIES and REGISTERED_FACTORIES[name].fn is not fn:
        raise ValueError(f"optimizer factory '{name}' is already registered")
    REGISTERED_FACTORIES[name] = FactoryEntry(name, fn, learned, init_meta_params)


def factory(name: str) -> FactoryEntry:
    if name not in REGISTERED_FACTORIES:
        raise UnknownNameError("optimizer factory", name, REGISTERED_FACTORIES)
    return REGISTERED_FACTORIES[name]
