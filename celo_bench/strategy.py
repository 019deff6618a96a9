"""Execution strategy: how a job's runs and steps map onto compiled programs (no JAX here).

``steps="scan"`` compiles the steps between two evaluations into one ``lax.scan``;
``steps="loop"`` calls a jitted block of ``block_size`` steps from Python; ``steps="split"``
calls two programs from Python every step: the task's gradient, compiled once per task and
shared by every optimizer's job, and the optimizer's update, the only training program a job
compiles for itself. ``runs="vmap"`` trains all runs of a job in one batched program;
``runs="sequential"`` reuses one compiled single-run program.
``xla_opt_level`` is XLA's backend optimisation level for the job's programs (None: XLA's
default, 2 at the time of writing).

Defaults are per backend and model family, chosen by measurement on a 2-core CPU with
jax 0.10. On a CPU every family uses ``split``: compile dominates the small tasks of the quick
tier, and a job's scan re-compiled the task's backward pass for every optimizer (the
quick tier's learned-optimizer training task: 372 s of the grid's 1,030 s of
compile). With ``split`` an Adam-family job compiles its update in 0.3-4 s and the task's
gradient once, at the price of two calls per step from Python and no fusion of gradient and
update (measured under load on ``quick_digits_lopt``, 4 optimizers x 21 runs: compile 160 -> 72 s, execution
34 -> 31 s; the whole quick tier, cold, idle: compile 1,030 -> 730 s summed over jobs, execution
370 -> 487 s, wall 12 min 32 s -> 12 min 0 s). Convolution gradients
inside ``scan`` run 30-70x slower than a jitted step called from Python, and vmapping a
convnet over runs is ~4.5x slower than running them in sequence, so convnets and ViTs run
their runs in sequence. On accelerators everything is scanned and vmapped (one launch per
block of steps, fused gradient and update).

The optimisation level is XLA's default unless set (``run --xla-opt-level``). Level 0 was
measured as a default for cheap CPU jobs and not kept: once the evaluation programs are
shared by the jobs of a task, an Adam job on the quick tier's MLP costs 1.7 s of CPU at the
default level against 2.1 s at level 0 (compile 2.4 -> 1.2 s, execution 1.5 -> 2.9 s), and a
learned optimizer's execution slows ~8x at level 0. The level changes numbers (float
rounding), so it is part of the run key when set; so are the steps and runs strategies
when set by hand. The measured default of a device is not (it is a property of the device,
whose numbers differ anyway), and each record says which strategy ran.

Everything here is plain Python so that planning (run keys) never loads JAX.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celo_bench.errors import CeloBenchError

STEPS_CHOICES = ("scan", "loop", "split")
RUNS_CHOICES = ("vmap", "sequential")
XLA_OPT_LEVELS = (0, 1, 2, 3)
BACKENDS = ("cpu", "gpu", "tpu")

PROGRAMS_PER_CHUNK = 2
"""Programs a chunk of a job compiles for itself: the optimizer's init and a block of training
steps (a ``lax.scan`` over the steps between two evaluations with ``scan``; ``block_size``
unrolled steps with ``loop``; the optimizer's update with ``split``). See
celo_bench.engine._train."""
SHARED_PER_SHAPE = 2
"""Programs shared by every job of a task with the same runs per program (and vmap or not):
the evaluation chunk and, with ``scan``/``loop``, the final minibatch loss or, with
``steps="split"``, the task's gradient (which also gives the final loss)."""
ENGINE_PROGRAMS_PER_CHUNK = PROGRAMS_PER_CHUNK + SHARED_PER_SHAPE
"""Programs the engine reports per chunk of a job, whatever its strategy: its own two plus the
two shared ones (4)."""
START_PER_TASK = 1
"""The program that draws every seed's initial parameters and data order, once per task."""

# family -> (steps, runs) on CPU; anything unlisted uses split + vmap.
_CPU_DEFAULTS: dict[str, tuple[str, str]] = {
    "conv": ("split", "sequential"),
    "vit": ("split", "sequential"),
}
_CPU_DEFAULT = ("split", "vmap")

@dataclass(frozen=True)
class Strategy:
    """How to execute a job; recorded in every run record (overrides also enter run keys)."""

    steps: str = "scan"
    runs: str = "vmap"
    block_size: int = 1
    xla_opt_level: int | None = None

    def __post_init__(self) -> None:
        if self.steps not in STEPS_CHOICES:
            raise ValueError(f"steps strategy must be one of {STEPS_CHOICES}, got {self.steps!r}")
        if self.runs not in RUNS_CHOICES:
            raise ValueError(f"runs strategy must be one of {RUNS_CHOICES}, got {self.runs!r}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        if self.xla_opt_level is not None and self.xla_opt_level not in XLA_OPT_LEVELS:
            raise ValueError(f"xla_opt_level must be one of {XLA_OPT_LEVELS}, got {self.xla_opt_level}")

    @property
    def label(self) -> str:
        """E.g. ``scan+vmap`` or ``scan+vmap@O0`` (recorded in every run record)."""
        base = f"{self.steps}+{self.runs}"
        return base if self.xla_opt_level is None else f"{base}@O{self.xla_opt_level}"

    def as_dict(self) -> dict:
        """How the run was executed, for its record's provenance."""
        return {"steps": self.steps, "runs": self.runs, "block_size": self.block_size,
                "xla_opt_level": self.xla_opt_level}


_OVERRIDE_FLAGS = (("steps", STEPS_CHOICES, "--steps-strategy"), ("runs", RUNS_CHOICES, "--runs-strategy"),
                   ("xla_opt_level", XLA_OPT_LEVELS, "--xla-opt-level"))


def check_overrides(override: Mapping[str, Any] | None) -> None:
    """Reject a bad ``steps``/``runs``/``xla_opt_level`` override with the flag that sets it.

    Raises:
      CeloBenchError: e.g. ``--steps-strategy must be one of scan, loop, split, got 'x'``.
    """
    for key, choices, flag in _OVERRIDE_FLAGS:
        value = (override or {}).get(key)
        if value is not None and value not in choices:
            raise CeloBenchError(f"{flag} must be one of {', '.join(map(str, choices))}, got '{value}'")


def default_strategy(
    family: str,
    backend: str,
    override: Mapping[str, Any] | None = None,
) -> Strategy:
    """The measured default for `family` on `backend` ("cpu", "gpu", "tpu"), then `override`.

    An ``override`` may set ``steps``, ``runs`` and ``xla_opt_level``.
    """
    steps_s, runs_s = ("scan", "vmap") if backend != "cpu" else _CPU_DEFAULTS.get(family, _CPU_DEFAULT)
    override = dict(override or {})
    return Strategy(steps=override.get("steps", steps_s), runs=override.get("runs", runs_s),
                    xla_opt_level=override.get("xla_opt_level"))


_ACCELERATOR_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda12-pjrt", "libtpu",
                        "jax-rocm60-plugin", "jax-rocm7-plugin", "jax-metal")


def backend_kind() -> str:
    """The JAX backend this machine will use, known without importing JAX.

    ``$JAX_PLATFORMS`` (its first entry) when set; otherwise ``gpu``/``tpu`` when an
    accelerator plugin of JAX is installed, else ``cpu``. It picks the default strategy of
    the planned jobs; run keys do not depend on it.
    """
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        first = platforms.split(",")[0]
        return {"cuda": "gpu", "rocm": "gpu"}.get(first, first)
    for dist in _ACCELERATOR_PLUGINS:
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        return "tpu" if dist == "libtpu" else "gpu"
    return "cpu"


__all__ = [
    "BACKENDS",
    "RUNS_CHOICES",
    "STEPS_CHOICES",
    "XLA_OPT_LEVELS",
    "Strategy",
    "backend_kind",
    "check_overrides",
    "default_strategy",
]
