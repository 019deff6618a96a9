"""The valid range of every optimizer argument, declared beside its factory.

A factory decorated with :func:`domain` checks each declared argument before it builds
anything and raises :class:`~celo_bench.errors.HyperparameterError` (a ``ValueError``)
whose one line names the factory, the argument, the value and the valid range::

    adam: b1 = 1.5 is outside its domain; b1 must be in [0, 1)

Only concrete values are checked (Python and NumPy scalars, concrete JAX arrays, every
element of an array). A JAX tracer -- a hyper-parameter traced by ``jit``/``vmap``/``grad``,
as the engine passes learning rates -- is not looked at: its value is unknown when the
factory runs, and branching on it would break tracing.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

import jax
import numpy as np

from celo_bench.errors import HyperparameterError

F = TypeVar("F", bound=Callable[..., Any])


def _num(x: float) -> str:
    return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"


@dataclass(frozen=True)
class Interval:
    """A real interval (``integer=True``: its integers); NaN and infinities are never in it.

    ``none_ok`` also admits ``None``; ``schedule_ok`` admits a callable (an optax schedule).
    """

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    none_ok: bool = False
    schedule_ok: bool = False

    def text(self) -> str:
        kind = "an integer in " if self.integer else ""
        span = (f"{'(' if self.low_open or self.low == -math.inf else '['}{_num(self.low)}, "
                f"{_num(self.high)}{')' if self.high_open or self.high == math.inf else ']'}")
        extra = [w for w, ok in (("None", self.none_ok), ("a schedule", self.schedule_ok)) if ok]
        return ("" if kind else "in ") + kind + span + (f" (or {' or '.join(extra)})" if extra else "")

    def problem(self, value: Any) -> str | None:
        """Why `value` is outside the interval, or None when it is inside (or traced)."""
        if value is None:
            return None if self.none_ok else "is None"
        if self.schedule_ok and callable(value):
            return None
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return f"is a {type(value).__name__}, not a number"
        if not np.all(np.isfinite(arr)):
            return "is not finite"
        if self.integer and not np.all(arr == np.round(arr)):
            return "is not an integer"
        lo_bad = arr <= self.low if self.low_open else arr < self.low
        hi_bad = arr >= self.high if self.high_open else arr > self.high
        return "is out of range" if np.any(lo_bad) or np.any(hi_bad) else None


@dataclass(frozen=True)
class Choice:
    """One of a few allowed values (compared with ``==``; booleans: ``Choice((False, True))``)."""

    values: tuple[Any, ...]

    def text(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def problem(self, value: Any) -> str | None:
        try:
            ok = any(bool(np.all(np.asarray(value) == v)) for v in self.values) and np.ndim(value) == 0
        except (TypeError, ValueError):
            ok = False
        return None if ok else "is not allowed"


@dataclass(frozen=True)
class Keys:
    """A meta-parameter tree: a mapping holding at least these top-level keys.

    Checked on traced trees too (only the structure is read, never a value).
    """

    keys: tuple[str, ...]

    def text(self) -> str:
        return "a mapping with the keys " + ", ".join(self.keys) + " (the checkpoint's tree)"

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return f"is a {type(value).__name__}, not a mapping"
        missing = [k for k in self.keys if k not in value]
        return f"lacks {', '.join(missing)}" if missing else None


Rule = Interval | Choice | Keys

# The rules most arguments share.
LEARNING_RATE = Interval(0.0, schedule_ok=True)
"""Step size: finite and >= 0 (0 leaves the parameters unchanged), or an optax schedule."""
NUM_STEPS = Interval(1, integer=True)
"""A run's horizon: a positive integer."""
OPTIONAL_NUM_STEPS = Interval(1, integer=True, none_ok=True)
"""The horizon of an optimizer that does not use it: a positive integer or None."""
DECAY = Interval(0.0, 1.0, high_open=True)
"""An EMA decay or momentum coefficient: [0, 1) (at 1 nothing is ever averaged in)."""
NON_NEGATIVE = Interval(0.0)
POSITIVE = Interval(0.0, low_open=True)
POSITIVE_INT = Interval(1, integer=True)
NON_NEGATIVE_INT = Interval(0, integer=True)
FLAG = Choice((False, True))
FINITE = Interval()


def _is_traced(value: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value))


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"<{type(value).__name__} with keys {', '.join(map(str, list(value)[:6]))}>"
    try:
        small = np.ndim(value) == 0 or np.size(value) <= 4
    except Exception:  # an object NumPy cannot size
        small = True
    return repr(value) if small else f"<array of shape {np.shape(value)}>"


def check(owner: str, rules: Mapping[str, Rule], arguments: Mapping[str, Any]) -> None:
    """Raise :class:`HyperparameterError` for the first concrete argument outside its rule."""
    for name, rule in rules.items():
        if name not in arguments:
            continue
        value = arguments[name]
        if not isinstance(rule, Keys) and _is_traced(value):
            continue
        why = rule.problem(value)
        if why is not None:
            shown = _show(value)
            raise HyperparameterError(
                f"{owner}: {name} = {shown} {why}; {name} must be {rule.text()}"
            )


def domain(**rules: Rule) -> Callable[[F], F]:
    """Decorate a factory: check the named arguments (defaults included) on every call.

    The wrapped function keeps the factory's signature (``inspect.signature`` follows
    ``__wrapped__``) and exposes the rules as ``__domain__``.

    Raises:
      TypeError: at decoration, for a rule naming no parameter of the factory.
    """

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)
        unknown = sorted(set(rules) - set(sig.parameters))
        if unknown:
            raise TypeError(f"{fn.__name__}: domain rules for unknown parameters {unknown}")

        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError:
                return fn(*args, **kwargs)  # Python's own message for a wrong call
            bound.apply_defaults()
            check(checked.__name__, rules, bound.arguments)
            return fn(*args, **kwargs)

        checked.__domain__ = MappingProxyType(dict(rules))  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return wrap


def rules_of(fn: Callable) -> Mapping[str, Rule]:
    """The rules `fn` declares (empty for an undecorated factory, e.g. a submission)."""
    return getattr(fn, "__domain__", MappingProxyType({}))
