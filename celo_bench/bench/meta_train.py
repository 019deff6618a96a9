"""``bench meta-train``: seconds per outer step of meta-training, per learned architecture.

One outer step of ``celo-bench meta-train`` is one compiled program: the truncated PES
estimate over every task instance and antithetic pair (16 instances x 2 x 50 inner steps
on the ``cpu`` preset), the outer AdamW update and the phase mask
(:mod:`celo_bench.metatrain.trainer`). This probe builds the trainer of each architecture
exactly as the command would (same preset, tasks, estimator, seed and initial
meta-parameters; nothing is written), runs the first outer step (compile + run, reported
apart), then times `steps` further outer steps **interleaved** across the architectures
(load from other processes hits all alike) and keeps the median.

The four architectures are those of the paper's equal-budget comparison: Celo (phase 1;
phase 2 runs the same inner step plus the scheduler), RNN-MLP-LOpt, AdaFac-MLP-LOpt and
VeLO-S. Results go to ``<out>/meta_train.json`` (:mod:`celo_bench.bench.results`).

References:
    Moudgil et al., *Celo: Training Versatile Learned Optimizers on a Compute Diet*,
    arXiv:2501.12670 (the meta-training recipe timed here).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

ARCHITECTURES: tuple[tuple[str, str], ...] = (
    ("celo", "1"), ("rnn_mlp_lopt", "joint"), ("adafac_mlp_lopt", "joint"), ("velo_s", "joint"),
)
"""(architecture, phase) timed by default: the four of the equal-budget comparison."""


@dataclass
class MetaTrainStepTime:
    """One architecture's row: the first (compiling) outer step and the median of the rest."""

    arch: str
    phase: str
    preset: str
    first_step_seconds: float | None = None
    seconds_per_step: float | None = None
    samples: list[float] = field(default_factory=list)
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "arch": self.arch, "phase": self.phase, "preset": self.preset,
            "first_step_seconds": self.first_step_seconds, "seconds_per_step": self.seconds_per_step,
            "samples": len(self.samples),
        }
        if self.error:
            d["error"] = self.error
        return d


def _runner(arch: str, phase: str, preset: str, seed: int) -> Callable[[], None]:
    """The outer steps of `arch`'s trainer from its initial state; each call runs one and blocks."""
    from celo_bench.metatrain.config import preset_config
    from celo_bench.metatrain.trainer import MetaTrainer

    cfg = preset_config(arch, preset, phase=phase, seed=seed)
    trainer = MetaTrainer(cfg, tempfile.gettempdir())  # the folder is never written: run() is not called
    state = trainer.initial_state()
    carry = [state["theta"], state["opt_state"], state["pes"]]
    data, step = trainer.family.data, [0]

    def one() -> None:
        key = jax.random.fold_in(trainer.k_steps, step[0])
        theta, opt_state, pes, _ = jax.block_until_ready(trainer._step(*carry, data, key))
        carry[:] = [theta, opt_state, pes]
        step[0] += 1

    return one


def measure(
    archs: Sequence[tuple[str, str]] = ARCHITECTURES,
    *,
    steps: int = 5,
    preset: str = "cpu",
    seed: int = 0,
    on_compile: Callable[[str, str], None] | None = None,
) -> list[MetaTrainStepTime]:
    """Seconds per outer step of every ``(arch, phase)`` of `archs` on the `preset` settings.

    Args:
        archs: Architectures and phases to time (default: :data:`ARCHITECTURES`).
        steps: Timed outer steps per architecture after the first (interleaved).
        preset, seed: The meta-training settings, as ``celo-bench meta-train --preset --seed``.
        on_compile: Called with (arch, phase) before each first step (progress).

    Returns one :class:`MetaTrainStepTime` per architecture; one that cannot be built or
    run (e.g. its data is missing) has ``seconds_per_step=None`` and the reason.
    """
    rows = [MetaTrainStepTime(a, p, preset) for a, p in archs]
    runners: dict[int, Callable[[], None]] = {}
    for i, row in enumerate(rows):
        if on_compile:
            on_compile(row.arch, row.phase)
        try:
            call = _runner(row.arch, row.phase, preset, seed)
            t0 = time.perf_counter()
            call()
            row.first_step_seconds = time.perf_counter() - t0
            runners[i] = call
        except Exception as e:  # recorded in the row: one broken architecture never hides the others
            row.error = f"{type(e).__name__}: {e}"[:300]
    for _ in range(steps):
        for i, call in runners.items():
            t0 = time.perf_counter()
            call()
            rows[i].samples.append(time.perf_counter() - t0)
    for row in rows:
        if row.samples:
            row.seconds_per_step = float(np.median(row.samples))
    return rows


__all__ = ["ARCHITECTURES", "MetaTrainStepTime", "measure"]
