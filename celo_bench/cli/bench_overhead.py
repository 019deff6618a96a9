"""``celo-bench bench overhead``: per-step time of every optimizer relative to Adam.

The paper's runtime table (paper-protocol.md §7) on this machine: the runtime task is the
reference's ``ImageMLP_Cifar100_128x128x128_Relu`` (a 3x128 ReLU MLP on 32x32x3 inputs,
100 classes, batch 128) on generated data, since only speed matters. Each optimizer's
whole training step (forward, backward, optimizer update, parameter update) runs as one
jitted ``lax.scan`` over `unroll` fixed batches, like learned_optimization's
``timings.task_family_runtime_stats``. Compilation is excluded; the repeats of all
optimizers are **interleaved** so that load from other processes hits every optimizer
alike, and the median is reported. Learned optimizers use their checkpoint when one is
available and a random meta-parameter draw otherwise (timing does not depend on values).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import typer

from celo_bench.cli._common import Format, FormatOpt, console, emit_json, out, split_names

RUNTIME_TASK = {"hidden": (128, 128, 128), "image_shape": (32, 32, 3), "classes": 100, "batch": 128}


@dataclass
class Timing:
    optimizer: str
    kind: str
    ms_per_step: float | None
    ratio_vs_adam: float | None
    meta_params: str = ""
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        d = {"optimizer": self.optimizer, "kind": self.kind, "ms_per_step": self.ms_per_step,
             "ratio_vs_adam": self.ratio_vs_adam}
        if self.meta_params:
            d["meta_params"] = self.meta_params
        if self.error:
            d["error"] = self.error
        return d


def _runtime_task(unroll: int, seed: int):
    """Init and loss of the runtime MLP plus `unroll` generated batches."""
    import jax
    import jax.numpy as jnp
    import optax

    from celo_bench.models.mlp import MLP

    cfg = RUNTIME_TASK
    net = MLP(cfg["hidden"], cfg["classes"])
    n_in = int(jnp.prod(jnp.asarray(cfg["image_shape"])))
    k_p, k_x, k_y = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = net.init(k_p, jnp.zeros((1, n_in)))["params"]
    xs = jax.random.uniform(k_x, (unroll, cfg["batch"], n_in))
    ys = jax.random.randint(k_y, (unroll, cfg["batch"]), 0, cfg["classes"])

    def loss_fn(p, x, y):
        logits = net.apply({"params": p}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return params, loss_fn, (xs, ys)


def _build(spec, num_steps: int):
    """The optimizer of `spec` with representative hyper-parameters; returns (opt, note)."""
    import jax

    from celo_bench.errors import CheckpointError
    from celo_bench.optimizers import builder
    from celo_bench.optimizers._registry import factory

    hparams = {k: v[len(v) // 2] for k, v in spec.grid.items()}
    entry = factory(spec.factory)
    meta, note = None, ""
    if entry.learned:
        from celo_bench.optimizers.checkpoint import load_for_spec

        try:
            meta, note = load_for_spec(spec), "checkpoint"
        except CheckpointError:
            meta, note = entry.init_meta_params(jax.random.PRNGKey(0)), "random init"
    return builder(spec, num_steps=num_steps, meta_params=meta)(hparams), note


def _program(opt, params, loss_fn, batches):
    import jax
    import optax

    def run(p, s):
        def body(carry, batch):
            p, s = carry
            loss, grads = jax.value_and_grad(loss_fn)(p, *batch)
            updates, s = opt.update(grads, s, p, loss=loss)
            return (optax.apply_updates(p, updates), s), loss

        return jax.lax.scan(body, (p, s), batches)

    state = opt.init(params)
    compiled = jax.jit(run).lower(params, state).compile()
    return lambda: jax.block_until_ready(compiled(params, state))


def measure(names: list[str] | None = None, *, repeats: int = 7, unroll: int = 10,
            num_steps: int = 1000, seed: int = 0, progress: bool = False) -> list[Timing]:
    """Median ms per training step of each optimizer and its ratio to Adam's.

    Args:
      names: optimizers to time (default: every spec in the registry); Adam is always timed.
      repeats: timed calls per optimizer (interleaved across optimizers).
      unroll: training steps per call (one jitted ``lax.scan``).
      num_steps: the horizon given to optimizers that take one (learned ones).
    """
    import numpy as np

    from celo_bench.suite import load_registry

    reg = load_registry()
    names = list(names or sorted(reg.optimizers))
    names = ["adam"] + [n for n in names if n != "adam"]
    params, loss_fn, batches = _runtime_task(unroll, seed)
    timings = {n: Timing(n, reg.optimizer(n).kind, None, None) for n in names}
    programs = {}
    for name in names:
        if progress:
            console.print(f"compiling {name}...")
        try:
            opt, note = _build(reg.optimizer(name), num_steps)
            programs[name] = _program(opt, params, loss_fn, batches)
            programs[name]()  # warm-up
            timings[name].meta_params = note
        except Exception as e:  # one broken optimizer must not hide the others
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


def overhead(
    optimizers: list[str] = typer.Option(None, "--optimizers", "-o", help="Subset to time (default: all)."),
    repeats: int = typer.Option(7, "--repeats", help="Timed calls per optimizer (interleaved)."),
    unroll: int = typer.Option(10, "--unroll", help="Training steps per timed call."),
    fmt: Format = FormatOpt,
) -> None:
    """Per-step time of every optimizer vs Adam on the runtime task (3x128 MLP, CIFAR-100 shape)."""
    from rich.table import Table

    rows = measure(split_names(optimizers), repeats=repeats, unroll=unroll, progress=fmt == Format.text)
    if fmt == Format.json:
        emit_json([r.as_json() for r in rows])
        return
    table = Table(title="Optimizer overhead: 3x128 ReLU MLP, 32x32x3 -> 100 classes, batch 128")
    for col in ("optimizer", "kind", "ms/step", "x Adam", "note"):
        table.add_column(col, justify="right" if col in ("ms/step", "x Adam") else "left")
    for r in rows:
        ms = "-" if r.ms_per_step is None else f"{r.ms_per_step:.2f}"
        ratio = "-" if r.ratio_vs_adam is None else f"{r.ratio_vs_adam:.2f}"
        table.add_row(r.optimizer, r.kind, ms, ratio, r.error or r.meta_params)
    out.print(table)


def register(app: typer.Typer) -> None:
    from celo_bench.cli._bench_app import bench_app

    bench_app.command("overhead")(overhead)
