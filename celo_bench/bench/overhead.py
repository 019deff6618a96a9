"""``bench overhead``: per-step time of every optimizer relative to Adam (the paper's runtime table).

The runtime task is the reference's ``ImageMLP_Cifar100_128x128x128_Relu`` (a 3x128 ReLU
MLP on 32x32x3 inputs, 100 classes, batch 128), built by the same task assembly as every
benchmark task from CIFAR-100's dataset facts, and fed generated batches, since only speed
matters (no dataset is needed). Each optimizer's whole training step (forward, backward,
optimizer update, parameter update) runs as one jitted ``lax.scan`` over `unroll` fixed
batches, like learned_optimization's ``timings.task_family_runtime_stats``. Compilation
is excluded; the repeats of all optimizers are **interleaved**, so that load from other
processes hits every optimizer alike, and the median is kept. Learned optimizers use their
checkpoint when one is available and a random meta-parameter draw otherwise (the time of
a step does not depend on the values).

References:
    Moudgil et al., *Celo: Training Versatile Learned Optimizers on a Compute Diet*,
    arXiv:2501.12670 (the runtime table's protocol).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import optax

from celo_bench import optimizers
from celo_bench.assembly import build_model_only
from celo_bench.data import dataset_info
from celo_bench.errors import CheckpointError
from celo_bench.optimizers.checkpoint import load_for_spec
from celo_bench.suite import OptimizerSpec, TaskSpec, load_registry
from celo_bench.task import Model

RUNTIME_TASK = TaskSpec(
    name="runtime_mlp_cifar100",
    family="image_mlp",
    dataset="cifar100",
    batch_size=128,
    steps=1000,
    model={"kind": "mlp", "hidden": [128, 128, 128], "activation": "relu"},
    description="ImageMLP_Cifar100_128x128x128_Relu: 3x128 ReLU MLP, 32x32x3 -> 100 classes, batch 128.",
)
TITLE = "Optimizer overhead: 3x128 ReLU MLP, 32x32x3 -> 100 classes, batch 128"


@dataclass
class Timing:
    """One optimizer's row: median ms per training step, its ratio to Adam, or why it failed."""

    optimizer: str
    kind: str
    ms_per_step: float | None = None
    ratio_vs_adam: float | None = None
    meta_params: str = ""  # learned: "checkpoint" or "random init"
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"optimizer": self.optimizer, "kind": self.kind,
                             "ms_per_step": self.ms_per_step, "ratio_vs_adam": self.ratio_vs_adam}
        if self.meta_params:
            d["meta_params"] = self.meta_params
        if self.error:
            d["error"] = self.error
        return d


def runtime_task(unroll: int, seed: int = 0) -> tuple[Model, dict[str, jax.Array]]:
    """The runtime task's model and `unroll` generated batches.

    Returns ``(model, batches)``: ``batches["image"]`` is uint8 of shape
    ``(unroll, 128, 32, 32, 3)`` and ``batches["label"]`` int32 of shape ``(unroll, 128)``.
    """
    info = dataset_info(RUNTIME_TASK.dataset)
    model = build_model_only(RUNTIME_TASK, info)
    k_x, k_y = jax.random.split(jax.random.PRNGKey(seed))
    shape = (unroll, RUNTIME_TASK.batch_size)
    batches = {
        "image": jax.random.randint(k_x, shape + tuple(info["image_shape"]), 0, 256).astype(np.uint8),
        "label": jax.random.randint(k_y, shape, 0, int(info["num_classes"])),
    }
    return model, batches


def build_for_timing(spec: OptimizerSpec, num_steps: int) -> tuple[optax.GradientTransformationExtraArgs, str]:
    """`spec`'s optimizer at the middle point of its grid; returns ``(optimizer, meta_params note)``."""
    hparams = {k: v[len(v) // 2] for k, v in spec.grid.items()}
    entry = optimizers.factory(spec.factory)
    meta, note = None, ""
    if entry.learned:
        try:
            meta, note = load_for_spec(spec), "checkpoint"
        except CheckpointError:
            if entry.init_meta_params is None:
                raise
            meta, note = entry.init_meta_params(jax.random.PRNGKey(0)), "random init"
    return optimizers.builder(spec, num_steps=num_steps, meta_params=meta)(hparams), note


def _program(opt: optax.GradientTransformationExtraArgs, model: Model, batches, seed: int) -> Callable[[], Any]:
    """A compiled ``unroll``-step training scan; the returned call runs it once and blocks."""
    params, state = model.init(jax.random.PRNGKey(seed))
    key = jax.random.PRNGKey(seed + 1)

    def loss_fn(p, s, batch):
        return model.loss(p, s, key, batch)

    def run(p, s, o):
        def body(carry, batch):
            p, s, o = carry
            (loss, s), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, s, batch)
            updates, o = opt.update(grads, o, p, loss=loss)
            return (optax.apply_updates(p, updates), s, o), loss

        return jax.lax.scan(body, (p, s, o), batches)

    opt_state = opt.init(params)
    compiled = jax.jit(run).lower(params, state, opt_state).compile()
    return lambda: jax.block_until_ready(compiled(params, state, opt_state))


def measure(
    names: Sequence[str] | None = None,
    *,
    repeats: int = 7,
    unroll: int = 10,
    num_steps: int = 1000,
    seed: int = 0,
    on_compile: Callable[[str], None] | None = None,
) -> list[Timing]:
    """Median ms per training step of each optimizer and its ratio to Adam's.

    Args:
      names: optimizers to time (default: every spec in the registry); Adam is always
        timed, first.
      repeats: timed calls per optimizer (interleaved across optimizers).
      unroll: training steps per call (one jitted ``lax.scan``).
      num_steps: the horizon given to optimizers that take one (schedules, learned ones).
      on_compile: called with each optimizer's name before it compiles (progress).

    Returns one :class:`Timing` per optimizer in `names` order; an optimizer that cannot
    be built or compiled has ``ms_per_step=None`` and its error (one broken optimizer
    never hides the others).

    Raises:
        UnknownNameError: a name is not a registered optimizer.
    """
    reg = load_registry()
    names = list(names or sorted(reg.optimizers))
    names = ["adam"] + [n for n in names if n != "adam"]
    specs = {n: reg.optimizer(n) for n in names}
    model, batches = runtime_task(unroll, seed)
    timings = {n: Timing(n, specs[n].kind) for n in names}
    programs: dict[str, Callable[[], Any]] = {}
    for name in names:
        if on_compile:
            on_compile(name)
        try:
            opt, note = build_for_timing(specs[name], num_steps)
            programs[name] = _program(opt, model, batches, seed)
            programs[name]()  # warm-up
            timings[name].meta_params = note
        except Exception as e:  # recorded in the optimizer's row: one broken optimizer never hides the others
            timings[name].error = f"{type(e).__name__}: {e}"[:200]
    samples: dict[str, list[float]] = {n: [] for n in programs}
    for _ in range(repeats):
        for name, call in programs.items():
            t0 = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - t0) / unroll * 1e3)
    for name, s in samples.items():
        timings[name].ms_per_step = float(np.median(s))
    base = timings["adam"].ms_per_step
    for t in timings.values():
        if t.ms_per_step is not None and base:
            t.ratio_vs_adam = t.ms_per_step / base
    return [timings[n] for n in names]
