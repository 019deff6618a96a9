"""The code checks of a submission, run inside the validation worker process.

The numeric checks are the benchmark's own conformance checks
(:func:`celo_bench.conformance.check_optimizer`, the same ones every registered optimizer
passes): hyper-parameters arrive as traced arrays, the optimizer is built inside a jitted
(and vmapped) program, its state is carried through ``lax.scan``, and
``update(grads, state, params, loss=loss)`` is called every step, on
:func:`celo_bench.conformance.tiny_mlp` (a two-layer tanh network regressing fixed random
data, four float32 leaves, 49 values). Added here: the factory's presence and signature
before, and determinism (a fresh trace gives bitwise-equal parameters) after.

Checks stop at the first failure (later ones build on earlier ones) and each failure
says what is wrong and how to fix it. JAX and :mod:`celo_bench.conformance` are imported
inside the checks: the parent ``celo-bench validate`` process imports this module for
:class:`Failure` and must start without JAX.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

STEPS = 5
"""Updates per check run (also the ``num_steps`` horizon given to the factory)."""


@dataclass(frozen=True)
class Failure:
    """One failed check: a short name, what is wrong, and what to do about it."""

    check: str
    problem: str
    fix: str

    def line(self) -> str:
        return f"{self.check}: {self.problem} -- fix: {self.fix}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class CheckFailed(Exception):
    """Raised by a check; carries the :class:`Failure`."""

    def __init__(self, check: str, problem: str, fix: str):
        super().__init__(problem)
        self.failure = Failure(check, problem, fix)


# --------------------------------------------------------------------------- the checks
class Checker:
    """Runs the checks in order on one imported module; records passed check names."""

    def __init__(self, module, *, kind: str, defaults: Mapping[str, Any], points: list[dict],
                 meta_params: Any = None, factory: str = "make_optimizer"):
        self.module, self.kind, self.defaults = module, kind, dict(defaults)
        self.points = points or [{}]
        self.meta = meta_params
        self.factory_name = factory
        self.passed: list[str] = []

    # -- building
    def factory(self) -> Callable:
        fn = getattr(self.module, self.factory_name, None)
        if fn is None or not callable(fn):
            what = "defines no" if fn is None else f"has a non-callable {type(fn).__name__} named"
            raise CheckFailed(
                "factory", f"optimizer.py {what} function `{self.factory_name}`",
                f"define `def {self.factory_name}({'meta_params, ' if self.kind == 'learned' else ''}"
                "*, learning_rate, num_steps)` returning an optax.GradientTransformation "
                "(see submissions/template/optimizer.py)",
            )
        return fn

    def check_signature(self, fn: Callable) -> None:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError) as e:
            raise CheckFailed("signature", f"cannot read the signature of {self.factory_name} ({e})",
                              "make it a plain Python function") from None
        params = list(sig.parameters.values())
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
        named = [p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if self.kind == "learned":
            if not named or named[0].kind not in (named[0].POSITIONAL_ONLY, named[0].POSITIONAL_OR_KEYWORD):
                raise CheckFailed("signature", f"{self.factory_name} takes no positional meta-parameter "
                                  "argument", f"a learned factory is `{self.factory_name}(meta_params, *, "
                                  "num_steps, ...)`: the checkpoint's tree is passed first")
            named = named[1:]
        given = set(self.defaults) | set(self.points[0]) | {"num_steps"}
        accepted = {p.name for p in named if p.kind is not p.POSITIONAL_ONLY}
        for name in sorted(given):
            if name not in accepted and not var_kw:
                where = ("the run's horizon, always passed" if name == "num_steps"
                         else "set in submission.toml")
                raise CheckFailed(
                    "signature", f"{self.factory_name} does not accept the keyword '{name}' ({where})",
                    f"add `{name}` as a keyword argument of {self.factory_name}"
                    + (" (ignore it if unused)" if name == "num_steps" else " or remove it from submission.toml"),
                )
        for p in named:
            if p.default is p.empty and p.name not in given:
                raise CheckFailed(
                    "signature", f"{self.factory_name} requires '{p.name}' but submission.toml gives no value",
                    f"add {p.name} to [defaults] or [search_space], or give it a default value",
                )

    def make_fn(self, fn: Callable) -> Callable[[Mapping[str, Any]], Any]:
        """``make(point)``: the factory called like the engine calls it (defaults + point,
        ``num_steps``, the meta-parameters first for a learned submission)."""

        def make(hp: Mapping[str, Any]):
            kwargs = {**self.defaults, **hp, "num_steps": STEPS}
            return fn(self.meta, **kwargs) if self.kind == "learned" else fn(**kwargs)

        return make

    # -- running
    def check_conformance(self, fn: Callable) -> None:
        """The benchmark's conformance checks at every check point (no progress
        requirement: a search space's end may be a bad setting on the tiny problem)."""
        from celo_bench import conformance

        checks = [c for c in conformance.CHECKS if c not in ("hparams", "progress")]
        problems = conformance.check_optimizer(
            self.make_fn(fn), self.points, objective=conformance.tiny_mlp(), steps=STEPS,
            progress=False, require_effect=False, name=self.factory_name,
        )
        if problems:
            first = problems[0]
            self.passed += checks[: checks.index(first.check)] if first.check in checks else []
            raise CheckFailed(first.check, first.message, first.fix)
        self.passed += checks

    def check_deterministic(self, fn: Callable) -> None:
        """Two fresh traces and compilations from the same start give bitwise-equal parameters."""
        import jax
        import numpy as np

        from celo_bench import conformance

        objective = conformance.tiny_mlp()
        hp = conformance.as_arrays(self.points[0])
        runs = [jax.jit(conformance.scan_fn(self.make_fn(fn), objective, STEPS))(hp, objective.params)[0]
                for _ in range(2)]
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(runs[0]),
                                jax.tree_util.tree_leaves(runs[1]), strict=True):
            if not np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True):
                d = float(np.nanmax(np.abs(np.asarray(a) - np.asarray(b))))
                raise CheckFailed("deterministic", f"two runs with the same seed and "
                                  f"{conformance.fmt_point(self.points[0])} give different "
                                  f"'{conformance.leaf_name(path)}' (max difference {d:.3g})",
                                  "don't use Python/NumPy randomness, time or global state; draw noise "
                                  "with jax.random from a key kept in the optimizer state")
        self.passed.append("deterministic")

    def run_all(self) -> None:
        fn = self.factory()
        self.passed.append("factory")
        self.check_signature(fn)
        self.passed.append("signature")
        self.check_conformance(fn)
        self.check_deterministic(fn)
