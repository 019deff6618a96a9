"""``bench step-time``: seconds per training step of ONE run, per (task, optimizer), on this device.

The wall-clock speedup (``SU_time = SU * c_ref / c_opt``, :mod:`celo_bench.score`) needs
the cost ``c`` of one step of one run of each optimizer on each task. Job timings from the
grid cannot give it: jobs vmap different numbers of runs and share the machine. This probe
builds each task with the runner's assembly (:func:`celo_bench.assembly.build_task`: the
real model and the real data) and each optimizer with :func:`celo_bench.optimizers.builder`
at the middle point of its grid (learned optimizers load the weights the runner would,
from :func:`celo_bench.inputs.weights_input`; one without weights here is skipped with the
reason), compiles one jitted program of `unroll` training steps (forward, backward,
optimizer update, parameter update; ``lax.scan`` over one fixed batch of the task's
batch size), runs it `warmup` times, then times `repeats` calls **interleaved** across the
task's optimizers (load from other processes hits all alike) and keeps the median.

Results go to ``<out>/step_time-<device kind>.json`` (see :mod:`celo_bench.timings`),
merged with the rows already there for other (task, optimizer) pairs of the same kind.

References:
    Moudgil et al., *Celo: Training Versatile Learned Optimizers on a Compute Diet*,
    arXiv:2501.12670 (per-step optimizer overhead).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from celo_bench import inputs, optimizers, timings
from celo_bench.assembly import build_task
from celo_bench.bench import results
from celo_bench.bench.results import DEFAULT_OUT
from celo_bench.errors import CeloBenchError
from celo_bench.provenance import provenance
from celo_bench.suite import OptimizerSpec, load_registry
from celo_bench.task import Task


@dataclass
class StepTime:
    """One (task, optimizer) row: median seconds per step of one run, or why it was skipped."""

    task: str
    optimizer: str
    kind: str
    seconds_per_step: float | None = None
    samples: int = 0
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"task": self.task, "optimizer": self.optimizer, "kind": self.kind,
                             "seconds_per_step": self.seconds_per_step,
                             "ms_per_step": None if self.seconds_per_step is None else self.seconds_per_step * 1e3,
                             "samples": self.samples}
        if self.error:
            d["error"] = self.error
        return d


def device_kind() -> tuple[str, str]:
    """(device kind, platform) of the first JAX device, e.g. ``("NVIDIA H200", "gpu")``."""
    dev = jax.devices()[0]
    return str(getattr(dev, "device_kind", dev)), str(dev.platform)


def _middle(grid: dict[str, Sequence[float]]) -> dict[str, float]:
    return {k: float(v[len(v) // 2]) for k, v in sorted(grid.items())}


def _make(spec: OptimizerSpec, grid: dict[str, Sequence[float]], num_steps: int) -> optax.GradientTransformationExtraArgs:
    """`spec`'s optimizer at the middle of `grid`; learned ones load the runner's weights.

    Raises:
        CeloBenchError: a learned optimizer has no weights here (the message says how to get them).
    """
    w = inputs.weights_input(spec)
    if w is not None and w.unavailable:
        raise CeloBenchError(w.unavailable)
    make = optimizers.builder(spec, num_steps=num_steps, checkpoint=w.path if w else None,
                              sha256=w.sha256 if w else None)
    return make(_middle(grid))


def _program(task: Task, opt: optax.GradientTransformationExtraArgs, unroll: int, seed: int) -> Callable[[], Any]:
    """A compiled program of `unroll` training steps of one run; the call runs it and blocks."""
    train = task.dataset.splits["train"]
    b = task.spec.batch_size
    batch = {k: np.asarray(v[:b]) for k, v in train.items()}
    params, state = task.model.init(jax.random.PRNGKey(seed))
    opt_state = opt.init(params)
    key = jax.random.PRNGKey(seed + 1)

    def run(p, s, o, batch):
        def body(carry, i):
            p, s, o = carry
            (loss, s), grads = jax.value_and_grad(
                lambda q: task.model.loss(q, s, jax.random.fold_in(key, i), batch), has_aux=True)(p)
            updates, o = opt.update(grads, o, p, loss=loss)
            return (optax.apply_updates(p, updates), s, o), loss

        return jax.lax.scan(body, (p, s, o), np.arange(unroll))

    compiled = jax.jit(run).lower(params, state, opt_state, batch).compile()
    return lambda: jax.block_until_ready(compiled(params, state, opt_state, batch))


def measure(
    suite: str, *, tasks: Sequence[str] | None = None, optimizers_: Sequence[str] | None = None,
    repeats: int = 5, unroll: int = 10, warmup: int = 1, seed: int = 0,
    on_compile: Callable[[str, str], None] | None = None,
) -> list[StepTime]:
    """Median seconds per step of one run for every (task, optimizer) of `suite`.

    Args:
        suite: Suite whose tasks, optimizers, grids and horizon are timed.
        tasks, optimizers_: Subsets (default: the suite's).
        repeats: Timed calls per pair (interleaved across a task's optimizers).
        unroll: Training steps per call (one jitted ``lax.scan``).
        warmup: Untimed calls after compiling.
        on_compile: Called with (task, optimizer) before each compiles (progress).

    Returns one :class:`StepTime` per pair, in suite order; a pair that cannot be built
    (data not prepared, weights missing, a failing optimizer) has ``seconds_per_step=None``
    and its reason (one broken pair never hides the others).

    Raises:
        UnknownNameError: an unknown suite, task or optimizer.
        CeloBenchError: a task or optimizer that is not in the suite.
    """
    reg = load_registry()
    spec = reg.suite(suite)
    task_names = list(tasks or spec.tasks)
    opt_names = list(optimizers_ or spec.optimizers)
    for what, names, allowed in (("task", task_names, spec.tasks), ("optimizer", opt_names, spec.optimizers)):
        extra = [n for n in names if n not in allowed]
        if extra:
            raise CeloBenchError(f"{what} {', '.join(extra)} not in suite '{suite}' ({', '.join(allowed)}): "
                                 f"pick from the suite or time another suite")
    rows: list[StepTime] = []
    for tname in task_names:
        tspec = reg.task(tname)
        num_steps = spec.steps or tspec.steps
        ospecs = {o: reg.optimizer(o) for o in opt_names}
        here = {o: StepTime(tname, o, s.kind) for o, s in ospecs.items()}
        rows += here.values()
        try:
            task = build_task(tspec)
        except CeloBenchError as e:
            for r in here.values():
                r.error = str(e)
            continue
        programs: dict[str, Callable[[], Any]] = {}
        for oname, ospec in ospecs.items():
            if on_compile:
                on_compile(tname, oname)
            try:
                grid = dict(spec.grids.get(oname) or ospec.grid)
                programs[oname] = _program(task, _make(ospec, grid, num_steps), unroll, seed)
                for _ in range(warmup):
                    programs[oname]()
            except Exception as e:  # recorded in the pair's row: one broken optimizer never hides the others
                here[oname].error = f"{type(e).__name__}: {e}"[:300]
                programs.pop(oname, None)
        samples: dict[str, list[float]] = {o: [] for o in programs}
        for _ in range(repeats):
            for oname, call in programs.items():
                t0 = time.perf_counter()
                call()
                samples[oname].append((time.perf_counter() - t0) / unroll)
        for oname, s in samples.items():
            here[oname].seconds_per_step, here[oname].samples = float(np.median(s)), len(s)
    return rows


def write(rows: Sequence[StepTime], out: str | os.PathLike = DEFAULT_OUT, *, suite: str,
          settings: dict[str, Any] | None = None) -> Path:
    """Write ``<out>/step_time-<device kind>.json``: the measured rows, plus the rows already
    stored there for other (task, optimizer) pairs (same device kind, by the file's name).

    Raises:
        CeloBenchError: `out` cannot be written.
    """
    kind, platform = device_kind()
    new = {(r.task, r.optimizer): {**r.as_json(), "suite": suite} for r in rows if r.seconds_per_step is not None}
    old = timings.read_document(out, kind) or {}
    kept = [r for r in old.get("rows") or []
            if isinstance(r, dict) and (r.get("task"), r.get("optimizer")) not in new]
    merged = sorted([*kept, *new.values()], key=lambda r: (str(r.get("task")), str(r.get("optimizer"))))
    return results.write(
        out, timings.name(kind), machine={**provenance(), "device_kind": kind, "platform": platform},
        settings={"suite": suite, "device_kind": kind, "platform": platform, **(settings or {})},
        rows=merged,
    )


__all__ = ["StepTime", "device_kind", "measure", "write"]
