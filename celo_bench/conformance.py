"""Conformance: does an optimizer behave the way the engine runs it?

The engine builds an optimizer from hyper-parameters that are traced arrays (it vmaps over
the learning-rate grid), carries its state through ``lax.scan`` inside ``jit``, and calls
``update(grads, state, params, loss=loss)`` every step. :func:`check_optimizer` does the same
on a small problem and returns every way the optimizer falls short, as :class:`Problem`
lines, instead of raising: the tests assert the list is empty for every registered
optimizer, and ``celo-bench validate`` prints it for a submission
(:mod:`celo_bench.submission.checks` reuses the pieces below).

Checks, in order (later ones need the earlier ones):

1. ``build`` / ``return_type`` / ``init`` / ``update``: built with concrete hyper-parameters,
   the factory returns an ``optax.GradientTransformation`` that initialises and whose update
   traces (``jax.eval_shape``, nothing compiled);
2. ``structure`` / ``shape`` / ``dtype``: one update per parameter, with its shape and dtype;
   ``state``: one update leaves the state's tree, shapes and dtypes unchanged (what
   ``lax.scan`` needs to carry it);
3. ``jit`` / ``scan``: ``steps`` updates in one jitted ``lax.scan``, hyper-parameters traced;
4. ``finite``: every update and loss of every point is finite;
5. ``vmap``: the points batched by ``jax.vmap`` (hyper-parameters and initial parameters
   batched) match the one-at-a-time run after two updates; ``hparams``: different points
   give different parameters (the traced values are really used);
6. ``progress``: the best point lowers the loss (optional: a random learned optimizer
   need not).

The default problem, :func:`mixed_rank_quadratic`, has 0-, 1-, 2- and 4-D float32 leaves
(the 4-D one laid out like a flax convolution kernel, HWIO).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from celo_bench.errors import describe

STEPS = 10
"""Updates per conformance run (also a sensible ``num_steps`` for the factory)."""

CHECKS = ("build", "return_type", "init", "update", "structure", "shape", "dtype", "state", "jit",
          "finite", "vmap", "hparams", "progress")
"""Check names in the order :func:`check_optimizer` runs them."""

Make = Callable[[Mapping[str, Any]], optax.GradientTransformation]
"""``make(hparams) -> optimizer``; `hparams` may be traced (as the engine calls it)."""


@dataclass(frozen=True)
class Problem:
    """One failed check: a short name, what is wrong, and how to fix it."""

    check: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


@dataclass(frozen=True)
class Objective:
    """A small training problem: float32 initial parameters and a scalar loss of them."""

    params: Any
    loss: Callable[[Any], jax.Array]
    description: str


def mixed_rank_quadratic() -> Objective:
    """``sum_leaf 0.5 * sum(c * (x - t)^2)`` over leaves of shape (), (3,), (4, 3), (2, 2, 3, 4).

    Curvatures ``c`` lie in [0.05, 0.15] so that gradient descent is stable up to a learning
    rate of 13 (the top of the widest baseline grid is 10); targets and starts are fixed
    draws of a seeded generator.
    """
    rng = np.random.default_rng(7)
    shapes = {"scalar": (), "bias": (3,), "dense": (4, 3), "conv": (2, 2, 3, 4)}

    def draw(f):
        return {k: jnp.asarray(f(s), jnp.float32) for k, s in shapes.items()}

    target = draw(lambda s: rng.normal(size=s))
    curv = draw(lambda s: rng.uniform(0.05, 0.15, size=s))
    init = draw(lambda s: rng.normal(size=s))

    def loss(p):
        terms = jax.tree.map(lambda x, t, c: 0.5 * jnp.sum(c * (x - t) ** 2), p, target, curv)
        return sum(jax.tree.leaves(terms))

    return Objective(init, loss, "a quadratic with 0-, 1-, 2- and 4-D parameters")


def tiny_mlp() -> Objective:
    """A 4-8-1 tanh MLP regressing 32 fixed random examples (MSE); four leaves, 49 values."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32, 4)), jnp.float32)
    y = jnp.asarray(np.sin(rng.normal(size=(32, 1))), jnp.float32)
    params = {
        "hidden": {"w": jnp.asarray(0.5 * rng.normal(size=(4, 8)), jnp.float32),
                   "b": jnp.zeros((8,), jnp.float32)},
        "out": {"w": jnp.asarray(0.3 * rng.normal(size=(8, 1)), jnp.float32),
                "b": jnp.zeros((1,), jnp.float32)},
    }

    def loss(p):
        h = jnp.tanh(x @ p["hidden"]["w"] + p["hidden"]["b"])
        return jnp.mean((h @ p["out"]["w"] + p["out"]["b"] - y) ** 2)

    return Objective(params, loss, "a tiny 4-8-1 MLP regression")


# --------------------------------------------------------------------------- tree checks
def leaf_name(path) -> str:
    """``'hidden/w'`` for a key path (dict keys, sequence indices, attribute names)."""
    parts = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
    return "/".join(parts) or "<root>"


def check_updates(params: Any, updates: Any) -> list[Problem]:
    """Updates have the params' tree, and each leaf its parameter's shape and dtype.

    Works on arrays and on ``jax.ShapeDtypeStruct`` (from ``jax.eval_shape``).
    """
    p_def, u_def = jax.tree.structure(params), jax.tree.structure(updates)
    if p_def != u_def:
        return [Problem("structure", f"updates have tree structure {u_def}, the params have {p_def}",
                        "return exactly one update per parameter, in the params' tree "
                        "(e.g. jax.tree.map(f, grads))")]
    out = []
    for (path, p), u in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(updates),
                            strict=True):
        if getattr(u, "shape", None) != p.shape:
            out.append(Problem("shape", f"the update of '{leaf_name(path)}' has shape "
                               f"{getattr(u, 'shape', type(u).__name__)}, its parameter {p.shape}",
                               "each update must have its parameter's shape (no reduction or "
                               "reshaping of the returned tree)"))
        elif getattr(u, "dtype", None) != p.dtype:
            out.append(Problem("dtype", f"the update of '{leaf_name(path)}' has dtype "
                               f"{getattr(u, 'dtype', None)}, its parameter {p.dtype}",
                               "cast each update to its parameter's dtype (u.astype(p.dtype))"))
    return out


def check_state(before: Any, after: Any) -> list[Problem]:
    """An update keeps the state's tree, shapes and dtypes (``lax.scan`` carries it)."""
    b_def, a_def = jax.tree.structure(before), jax.tree.structure(after)
    if b_def != a_def:
        return [Problem("state", f"update changes the state's tree from {b_def} to {a_def}",
                        "return a state of the same structure as init's")]
    for (path, b), a in zip(jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(after),
                            strict=True):
        sb, sa = (jnp.shape(b), jnp.result_type(b)), (jnp.shape(a), jnp.result_type(a))
        if sb != sa:
            return [Problem("state", f"update changes state leaf '{leaf_name(path)}' from "
                            f"{sb[1]}{list(sb[0])} to {sa[1]}{list(sa[0])}",
                            "keep every state leaf's shape and dtype fixed (cast with "
                            ".astype, count with an int32 array)")]
    return []


def first_mismatch(a: Any, b: Any, *, rtol: float = 1e-4, atol: float = 1e-5) -> str | None:
    """Name of the first leaf where trees `a` and `b` differ beyond the tolerances (NaNs equal).

    ``atol`` is scaled by the leaf's largest magnitude (at least 1).
    """
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        scale = max(1.0, float(np.max(np.abs(x[np.isfinite(x)]), initial=0.0)))
        if not np.allclose(x, y, rtol=rtol, atol=atol * scale, equal_nan=True):
            return leaf_name(path)
    return None


def fmt_point(hp: Mapping[str, Any]) -> str:
    """``"learning_rate=0.001"`` (sorted), or ``"defaults"`` for an empty point."""
    return ", ".join(f"{k}={float(v):g}" for k, v in sorted(hp.items())) or "defaults"


def as_arrays(hp: Mapping[str, Any]) -> dict[str, jax.Array]:
    """A point as float32 arrays: traced, not constants, once passed into jit."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}


# --------------------------------------------------------------------------- running
def step(opt: optax.GradientTransformation, loss_fn: Callable, params: Any, state: Any):
    """One engine step: ``(params, state, updates, loss)`` after ``update(..., loss=loss)``."""
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = opt.update(grads, state, params, loss=loss)
    return optax.apply_updates(params, updates), state, updates, loss


def scan_fn(make: Make, objective: Objective, steps: int) -> Callable:
    """``(hp, params0) -> (params after each step, flags (steps, leaves, 2), losses)``.

    ``flags[t, leaf]`` is (every value of the update finite, some value NaN).

    Builds the optimizer from `hp` and initialises it inside the traced program, then runs
    `steps` updates with ``lax.scan``, as the engine does. A new function on every call, so
    ``jax.jit`` of it traces afresh.
    """

    def run(hp, params0):
        opt = make(hp)
        if not isinstance(opt, optax.GradientTransformationExtraArgs):
            opt = optax.with_extra_args_support(opt)

        def body(carry, _):
            params, state = carry
            params, state, updates, loss = step(opt, objective.loss, params, state)
            flags = jnp.stack([jnp.stack([jnp.all(jnp.isfinite(u)), jnp.any(jnp.isnan(u))])
                               for u in jax.tree.leaves(updates)])
            return (params, state), (params, flags, loss)

        _, (traj, finite, losses) = jax.lax.scan(body, (params0, opt.init(params0)), None,
                                                 length=steps)
        return traj, finite, losses

    return run


def stack(trees: Sequence[Any]) -> Any:
    """Stack equal-structure trees on a new leading axis (a vmap batch)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


TRACED_FIX = ("hyper-parameters (and the step count) are traced arrays inside jit/vmap: don't "
              "branch on their values in Python (`if lr > ...`, float(lr)); use jnp.where, "
              "lax.cond or optax schedules")
PURE_FIX = ("make init/update pure JAX functions (no NumPy on traced values, no Python side "
            "effects)")


def _traced_fix(e: BaseException) -> str:
    """The fix for an error raised while tracing: a Python branch on a traced value, or other."""
    tracing = (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
               jax.errors.TracerIntegerConversionError, jax.errors.TracerArrayConversionError)
    return TRACED_FIX if isinstance(e, tracing) else PURE_FIX


def _nonfinite_problems(points, flags, losses, params, objective) -> list[Problem]:
    """`flags` (points, steps, leaves, 2) from :func:`scan_fn` and `losses` (points, steps)."""
    names = [leaf_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    out = []
    for i, hp in enumerate(points):
        flags_i = np.asarray(flags[i])
        bad = np.argwhere(~flags_i[..., 0])
        if len(bad):
            t, leaf = bad[0]
            what = "NaN" if flags_i[t, leaf, 1] else "inf"
            out.append(Problem("finite", f"the update of '{names[leaf]}' contains {what} at step {t} "
                               f"({fmt_point(hp)}) on {objective.description}",
                               "guard divisions and square roots with an epsilon, clip extreme "
                               "values, and check the update math on a small example"))
        elif not np.isfinite(np.asarray(losses[i])).all():
            t = int(np.argmin(np.isfinite(np.asarray(losses[i]))))
            out.append(Problem("finite", f"the loss became non-finite at step {t} ({fmt_point(hp)})",
                               "the updates blow up on a small problem: check their scale"))
    return out


def check_optimizer(
    make: Make,
    points: Sequence[Mapping[str, Any]] = ({},),
    *,
    objective: Objective | None = None,
    steps: int = STEPS,
    progress: bool = True,
    require_effect: bool = True,
    name: str = "the factory",
) -> list[Problem]:
    """Every way `make`'s optimizer fails the engine's contract, at each of `points`.

    Args:
      make: ``make(hparams) -> optax.GradientTransformation``; it merges any fixed defaults
        itself (as :func:`celo_bench.optimizers.builder` does) and is called with concrete
        values first, then with traced float32 arrays.
      points: the tuned hyper-parameters to try (e.g. a grid's end points), each a mapping
        name -> number; ``({},)`` when nothing is tuned.
      objective: the problem (default :func:`mixed_rank_quadratic`).
      steps: updates per run.
      progress: also require that the best point ends with a lower loss than it started.
      require_effect: require that different points give different parameters after
        `steps` updates (off for search spaces whose values may act only later, e.g. a
        schedule's length).
      name: how messages call the factory (e.g. ``make_optimizer``).

    Returns:
      The problems found, in check order (empty: conformant). Never raises for a fault of
      the optimizer: exceptions it raises become problems.
    """
    objective = objective or mixed_rank_quadratic()
    points = [dict(p) for p in points] or [{}]
    params = objective.params

    # 1-2. build, init and one abstract update per point: tree, shapes, dtypes, state.
    for hp in points:
        try:
            opt = make(hp)
        except Exception as e:
            return [Problem("build", f"{name} at {fmt_point(hp)} raised {describe(e)}",
                            "call it by hand with these arguments and fix the error")]
        if not isinstance(opt, optax.GradientTransformation):
            return [Problem("return_type", f"{name} returned a {type(opt).__name__}, not an "
                            "optax.GradientTransformation",
                            "return an optax transformation: e.g. optax.chain(...), or "
                            "optax.GradientTransformationExtraArgs(init_fn, update_fn)")]
        if not isinstance(opt, optax.GradientTransformationExtraArgs):
            opt = optax.with_extra_args_support(opt)
        try:
            state = jax.eval_shape(opt.init, params)
        except Exception as e:
            return [Problem("init", f"init(params) raised {describe(e)}",
                            "init must accept any pytree of float arrays and return the state")]
        try:
            _, new_state, updates, _ = jax.eval_shape(
                lambda p, s, opt=opt: step(opt, objective.loss, p, s), params, state)
        except Exception as e:
            return [Problem("update", f"update(grads, state, params, loss=loss) raised {describe(e)}",
                            "update must accept the params and a `loss` keyword (add "
                            "**extra_args if unused), return (updates, new_state), and not "
                            "branch in Python on array values")]
        found = check_updates(params, updates) + check_state(state, new_state)
        if found:
            return found

    # 3. jit + scan, hyper-parameters traced, one point.
    try:
        traj, finite, losses = jax.jit(scan_fn(make, objective, steps))(as_arrays(points[0]), params)
    except Exception as e:
        return [Problem("jit", f"{steps} updates under jax.jit and lax.scan failed at "
                        f"{fmt_point(points[0])}: {describe(e)}", _traced_fix(e))]

    # 4-5. every point at once under vmap (initial parameters batched too).
    idx = list(range(len(points))) if len(points) > 1 else [0, 0]
    try:
        b_traj, b_finite, b_losses = jax.jit(jax.vmap(scan_fn(make, objective, steps)))(
            stack([as_arrays(points[i]) for i in idx]), stack([params] * len(idx)))
    except Exception as e:
        return _nonfinite_problems(points[:1], finite[None], losses[None], params, objective) + [
            Problem("vmap", f"jax.vmap over {len(idx)} points failed: {describe(e)}",
                    _traced_fix(e))]
    problems = _nonfinite_problems([points[i] for i in idx], b_finite, b_losses, params, objective)
    n_cmp = min(2, steps)
    single = jax.tree.map(lambda x: x[n_cmp - 1], traj)
    batched = jax.tree.map(lambda x: x[0, n_cmp - 1], b_traj)
    leaf = None if problems else first_mismatch(single, batched)
    if leaf is not None:
        problems.append(Problem("vmap", f"the vmapped run differs from the single run for '{leaf}' "
                                f"after {n_cmp} updates at {fmt_point(points[0])}",
                                "keep update free of Python state shared between calls and of "
                                "batch-dependent logic"))

    # The traced hyper-parameters are really used: distinct points, distinct trajectories.
    distinct = len({tuple(sorted(hp.items())) for hp in points}) == len(points) > 1
    if require_effect and distinct and not problems:
        final = [jax.tree.map(lambda x, i=i: np.asarray(x[i, -1]), b_traj) for i in range(len(idx))]
        if all(first_mismatch(final[0], f, rtol=0.0, atol=0.0) is None for f in final[1:]):
            problems.append(Problem("hparams", f"{len(points)} different points "
                                    f"({'; '.join(fmt_point(hp) for hp in points)}) give identical "
                                    "parameters: the hyper-parameters are ignored",
                                    "build the update from the hyper-parameters passed to the "
                                    "factory, not from constants"))

    # 6. progress on the problem.
    if progress and not problems:
        start = float(objective.loss(params))
        final = np.asarray(jax.vmap(objective.loss)(jax.tree.map(lambda x: x[:, -1], b_traj)))
        if not np.nanmin(final) < start:
            problems.append(Problem("progress", f"no point lowers the loss of {objective.description} "
                                    f"in {steps} updates (start {start:.4g}, best {np.nanmin(final):.4g})",
                                    "check the sign of the update (u = -lr * direction)"))
    return problems
