"""``bench engine``: the engine's one-program job against one-run-at-a-time Python loops.

The baseline is what research code usually does (and what the reference evaluation loop
does): host-side batches fed to a jitted training step and a jitted evaluation called
from a Python loop, one run after another (:mod:`celo_bench.engine.reference`). Both
sides share the model, data, seeds and evaluation protocol, and produce the same curves;
compile time is excluded from both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from celo_bench import optimizers
from celo_bench.assembly import build_task
from celo_bench.engine import Strategy, run_job
from celo_bench.engine.reference import reference_run
from celo_bench.suite import TaskSpec, load_registry

BENCH_TASK = TaskSpec(
    name="bench_digits_mlp",
    family="image_mlp",
    dataset="digits",
    batch_size=64,
    steps=1000,
    model={"kind": "mlp", "hidden": [32], "activation": "relu"},
    description="8x8 digits, MLP 64-32-10, batch 64 (the paper's meta-training shape).",
)
BENCH_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
BENCH_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class EngineBench:
    """One measurement: seconds are wall time of all runs (compile excluded), medians of repeats."""

    runs: int
    steps: int
    engine_seconds: float
    engine_compile_seconds: float
    loop_seconds: float
    max_abs_diff: float

    @property
    def ratio(self) -> float:
        """How many times faster the engine trains the job than the per-step loop."""
        return self.loop_seconds / self.engine_seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs, "steps": self.steps,
            "engine_seconds": round(self.engine_seconds, 4),
            "engine_compile_seconds": round(self.engine_compile_seconds, 3),
            "loop_seconds": round(self.loop_seconds, 4),
            "ratio": round(self.ratio, 2),
            "max_abs_diff": self.max_abs_diff,
        }


def bench_engine(steps: int = 1000, optimizer: str = "adam", repeats: int = 3) -> EngineBench:
    """Time one 15-run job (5 learning rates x 3 seeds) both ways; returns seconds and ratio.

    Each side is timed `repeats` times and its median kept (the machine's noise, not the
    code, is what varies between repeats). ``max_abs_diff`` is the largest difference of
    the train-loss curves of the two sides (they train the same runs).

    Raises:
        ValueError: `steps` is not a multiple of the task's ``eval_every`` (10).
        UnknownNameError: `optimizer` is not a registered optimizer.
    """
    task = build_task(replace(BENCH_TASK, steps=steps))
    make = optimizers.builder(load_registry().optimizer(optimizer), num_steps=steps)
    lrs = np.repeat(np.array(BENCH_LRS), len(BENCH_SEEDS))
    seeds = np.tile(np.array(BENCH_SEEDS), len(BENCH_LRS))
    hp = {"learning_rate": lrs}
    engines = [
        run_job(task, make, hp, seeds, num_steps=steps, strategy=Strategy("scan", "vmap"))
        for _ in range(repeats)
    ]
    engine = engines[0]
    loop_totals, diff = [], 0.0
    for _ in range(repeats):
        total = 0.0
        for r, (lr, seed) in enumerate(zip(lrs, seeds, strict=True)):
            ref = reference_run(task, make({"learning_rate": lr}), int(seed), steps)
            total += ref.seconds
            diff = max(diff, float(np.nanmax(np.abs(engine.train_loss[r] - ref.train_loss))))
        loop_totals.append(total)
    return EngineBench(
        runs=len(seeds), steps=steps, engine_seconds=float(np.median([e.run_seconds for e in engines])),
        engine_compile_seconds=engine.compile_seconds, loop_seconds=float(np.median(loop_totals)),
        max_abs_diff=diff,
    )
