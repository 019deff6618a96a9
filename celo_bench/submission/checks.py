"""The code checks of a submission, run inside the validation worker process.

Each check exercises the factory the way the engine does: hyper-parameters arrive as
traced arrays, the optimizer is built inside a jitted (and vmapped) program, and
``update(grads, state, params, loss=loss)`` is called every step. The tiny task is a
two-layer tanh network regressing fixed random data (four float32 leaves, 49 values).

Checks stop at the first failure (later ones build on earlier ones) and each failure
says what is wrong and how to fix it.
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


def describe(e: BaseException) -> str:
    """``Type: first line of the message`` (tracebacks stay out of one-line reports)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


# --------------------------------------------------------------------------- tiny task
def tiny_problem():
    """``(params, loss_fn)``: a 4-8-1 tanh MLP on 32 fixed random examples (MSE)."""
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32, 4)), jnp.float32)
    y = jnp.asarray(np.sin(rng.normal(size=(32, 1))), jnp.float32)

    def loss_fn(p):
        h = jnp.tanh(x @ p["hidden"]["w"] + p["hidden"]["b"])
        return jnp.mean((h @ p["out"]["w"] + p["out"]["b"] - y) ** 2)

    return loss_fn


def init_params(key):
    import jax
    import jax.numpy as jnp

    k1, k2 = jax.random.split(key)
    return {
        "hidden": {"w": 0.5 * jax.random.normal(k1, (4, 8), jnp.float32), "b": jnp.zeros((8,), jnp.float32)},
        "out": {"w": 0.3 * jax.random.normal(k2, (8, 1), jnp.float32), "b": jnp.zeros((1,), jnp.float32)},
    }


def leaf_name(path) -> str:
    import jax

    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path) or jax.tree_util.keystr(path)


def hp_array(hp: Mapping[str, Any]) -> dict:
    """A point as float32 arrays: traced, not constants, once passed into jit."""
    import jax.numpy as jnp

    return {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}


def fmt_point(hp: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={float(v):g}" for k, v in sorted(hp.items())) or "no hyper-parameters"


TRACED_FIX = ("hyper-parameters (and the step count) are traced arrays inside jit/vmap: don't branch "
              "on their values in Python (`if lr > ...`, float(lr)); use jnp.where, lax.cond or optax "
              "schedules")


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
        self.loss_fn = tiny_problem()

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

    def make(self, fn: Callable, hp: Mapping[str, Any]):
        """Build the optimizer like the engine: defaults + point, num_steps, extra-args support."""
        import optax

        kwargs = {**self.defaults, **hp, "num_steps": STEPS}
        opt = fn(self.meta, **kwargs) if self.kind == "learned" else fn(**kwargs)
        if not isinstance(opt, optax.GradientTransformation):
            raise CheckFailed(
                "return_type", f"{self.factory_name} returned a {type(opt).__name__}, not an "
                "optax.GradientTransformation",
                "return an optax transformation: e.g. optax.chain(...), or "
                "optax.GradientTransformationExtraArgs(init_fn, update_fn)",
            )
        if not isinstance(opt, optax.GradientTransformationExtraArgs):
            opt = optax.with_extra_args_support(opt)
        return opt

    # -- running
    def step(self, opt, params, state):
        import jax
        import optax

        loss, grads = jax.value_and_grad(self.loss_fn)(params)
        updates, state = opt.update(grads, state, params, loss=loss)
        return optax.apply_updates(params, updates), state, updates, loss

    def check_first_update(self, fn) -> None:
        """Build with plain floats; trace init and update abstractly (``jax.eval_shape``, no
        compilation) to check the updates' tree, shapes and dtypes."""
        import jax

        hp = self.points[0]
        try:
            opt = self.make(fn, hp)
        except CheckFailed:
            raise
        except Exception as e:
            raise CheckFailed("build", f"{self.factory_name}({fmt_point(hp)}, num_steps={STEPS}) raised "
                              f"{describe(e)}", "run it by hand with these arguments and fix the error") from None
        self.passed.append("build")
        params = init_params(jax.random.PRNGKey(0))
        try:
            state = jax.eval_shape(opt.init, params)
        except Exception as e:
            raise CheckFailed("init", f"init(params) raised {describe(e)}",
                              "init must accept any pytree of float arrays and return the state") from None
        try:
            updates = jax.eval_shape(lambda p, s: self.step(opt, p, s)[2], params, state)
        except Exception as e:
            raise CheckFailed("update", f"update(grads, state, params, loss=loss) raised {describe(e)}",
                              "update must accept the params and a `loss` keyword (add **extra_args "
                              "if unused), return (updates, new_state), and not branch in Python on "
                              "array values") from None
        p_def, u_def = jax.tree_util.tree_structure(params), jax.tree_util.tree_structure(updates)
        if p_def != u_def:
            raise CheckFailed("structure", f"updates have tree structure {u_def}, the params have {p_def}",
                              "return exactly one update per parameter, in the params' tree "
                              "(e.g. jax.tree.map(f, grads))")
        for (path, p), u in zip(jax.tree_util.tree_leaves_with_path(params),
                                jax.tree_util.tree_leaves(updates), strict=True):
            if getattr(u, "shape", None) != p.shape:
                raise CheckFailed("shape", f"the update of '{leaf_name(path)}' has shape "
                                  f"{getattr(u, 'shape', type(u).__name__)}, its parameter {p.shape}",
                                  "each update must have its parameter's shape (no reduction or "
                                  "reshaping of the returned tree)")
            if getattr(u, "dtype", None) != p.dtype:
                raise CheckFailed("dtype", f"the update of '{leaf_name(path)}' has dtype {u.dtype}, its "
                                  f"parameter {p.dtype}", "cast each update to its parameter's dtype "
                                  "(u.astype(p.dtype))")
        self.passed += ["init", "update", "structure", "shape", "dtype"]

    def step_fn(self, fn) -> Callable:
        """``(hp, params, state) -> (params, state, updates, loss)``, building the optimizer
        from (traced) `hp` inside the program, as the engine does. A new closure each call,
        so jitting it traces and compiles afresh."""

        def one(hp, params, state):
            return self.step(self.make(fn, hp), params, state)

        return one

    def jitted(self, fn, step, hp, params, state):
        """Call a jitted step, turning tracing errors into failures that teach."""
        import jax

        try:
            return step(hp, params, state)
        except CheckFailed:
            raise
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
                jax.errors.TracerIntegerConversionError, jax.errors.TracerArrayConversionError) as e:
            raise CheckFailed("jit", f"building or updating under jax.jit failed: {describe(e)}",
                              TRACED_FIX) from None
        except Exception as e:
            raise CheckFailed("jit", f"the jitted update failed: {describe(e)}",
                              "make init/update pure JAX functions (no NumPy on traced values, no "
                              "Python side effects)") from None

    def check_jitted(self, fn) -> list[list[Any]]:
        """STEPS jitted updates at every check point, hyper-parameters traced: all finite.

        Returns each point's parameters after every step (for the vmap and determinism checks).
        """
        import jax
        import numpy as np

        step = jax.jit(self.step_fn(fn))
        trajectories = []
        for hp in self.points:
            params = init_params(jax.random.PRNGKey(0))
            state = self.make(fn, hp).init(params)
            traj = []
            for t in range(STEPS):
                params, state, updates, loss = self.jitted(fn, step, hp_array(hp), params, state)
                traj.append((params, state))
                for path, u in jax.tree_util.tree_leaves_with_path(updates):
                    u = np.asarray(u)
                    if not np.isfinite(u).all():
                        bad = "NaN" if np.isnan(u).any() else "inf"
                        raise CheckFailed(
                            "finite", f"the update of '{leaf_name(path)}' contains {bad} at step {t} "
                            f"({fmt_point(hp)}) on a tiny 4-8-1 MLP regression",
                            "guard divisions and square roots with an epsilon, clip extreme values, "
                            "and check the update math on a small example")
                if not np.isfinite(float(loss)):
                    raise CheckFailed("finite", f"the loss became non-finite at step {t} ({fmt_point(hp)})",
                                      "the updates blow up on a tiny problem: check their scale")
            trajectories.append(traj)
        self.passed += ["jit", "finite"]
        return trajectories

    def check_deterministic(self, fn, trajectory) -> None:
        """A fresh build and compilation from the same seed gives bitwise-equal parameters."""
        import jax
        import numpy as np

        hp = self.points[0]
        step = jax.jit(self.step_fn(fn))
        params = init_params(jax.random.PRNGKey(0))
        state = self.make(fn, hp).init(params)
        for _ in range(STEPS):
            params, state, _, _ = self.jitted(fn, step, hp_array(hp), params, state)
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(trajectory[-1][0]),
                                jax.tree_util.tree_leaves(params), strict=True):
            if not np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True):
                d = float(np.nanmax(np.abs(np.asarray(a) - np.asarray(b))))
                raise CheckFailed("deterministic", f"two runs with the same seed and {fmt_point(hp)} give "
                                  f"different '{leaf_name(path)}' (max difference {d:.3g})",
                                  "don't use Python/NumPy randomness, time or global state; draw noise "
                                  "with jax.random from a key kept in the optimizer state")
        self.passed.append("deterministic")

    def check_vmap(self, fn, trajectories) -> None:
        """vmap over the check points (hyper-parameters as a traced batch): same as one at a time.

        Two steps are compared: enough to catch state kept outside the optimizer state, few
        enough that a diverging point (the search space's largest) has not amplified float
        differences between the batched and unbatched programs.
        """
        import jax
        import jax.numpy as jnp
        import numpy as np

        idx = list(range(len(self.points))) if len(self.points) > 1 else [0, 0]
        stack = lambda *xs: jnp.stack(xs)  # noqa: E731
        hp = jax.tree_util.tree_map(stack, *[hp_array(self.points[i]) for i in idx])
        params = jax.tree_util.tree_map(stack, *[init_params(jax.random.PRNGKey(0)) for _ in idx])
        state = jax.tree_util.tree_map(stack, *[self.make(fn, self.points[i]).init(init_params(
            jax.random.PRNGKey(0))) for i in idx])
        step = jax.jit(jax.vmap(self.step_fn(fn)))
        try:
            for _ in range(2):
                params, state, _, _ = step(hp, params, state)
        except CheckFailed:
            raise
        except Exception as e:
            raise CheckFailed("vmap", f"jax.vmap over the search space failed: {describe(e)}", TRACED_FIX) from None
        for j, i in enumerate(idx):
            single = trajectories[i][1][0]
            for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(single),
                                    jax.tree_util.tree_leaves(params), strict=True):
                a, b = np.asarray(a), np.asarray(b)[j]
                scale = max(1.0, float(np.nanmax(np.abs(a), initial=0.0)))
                if not np.allclose(a, b, rtol=1e-4, atol=1e-5 * scale, equal_nan=True):
                    raise CheckFailed("vmap", f"vmapped runs differ from one-at-a-time runs for "
                                      f"'{leaf_name(path)}' at {fmt_point(self.points[i])}", "keep update "
                                      "free of Python state shared between calls and of batch-dependent logic")
        self.passed.append("vmap")

    def run_all(self) -> None:
        fn = self.factory()
        self.passed.append("factory")
        self.check_signature(fn)
        self.passed.append("signature")
        self.check_first_update(fn)
        trajectories = self.check_jitted(fn)
        self.check_deterministic(fn, trajectories[0])
        self.check_vmap(fn, trajectories)
