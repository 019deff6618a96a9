"""Execution strategy: how a job's runs and steps map onto compiled programs (no JAX here).

``steps="scan"`` compiles the whole horizon into one ``lax.scan``; ``steps="loop"`` calls a
jitted block of ``block_size`` steps from Python. ``runs="vmap"`` trains all runs of a job
in one batched program; ``runs="sequential"`` reuses one compiled single-run program.
``xla_opt_level`` is XLA's backend optimisation level for the job's programs (None: XLA's
default, 2 at the time of writing).

Defaults are per backend and model family, chosen by measurement on a 2-core CPU with
jax 0.10: ``scan`` beats a Python loop 13-20x on small MLPs, but convolution gradients
inside ``scan`` run 30-70x slower than a jitted step called from Python, and vmapping a
convnet over runs is ~4.5x slower than running them in sequence. On accelerators
everything is scanned and vmapped.

On CPU, small jobs are compiled at optimisation level 0: on the quick tier compiling took
84 % of the grid's time, and level 0 compiles a small MLP job ~3x faster for ~2x its
(short) execution. The level is chosen per job from its expected execution cost
(:func:`expected_cost`), a pure function of the planned job, so it is part of the run key:
the level changes the numbers (by float rounding), so runs compiled differently are never
mixed.

Everything here is plain Python so that planning (run keys) never loads JAX.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping
from dataclasses import dataclass

STEPS_CHOICES = ("scan", "loop")
RUNS_CHOICES = ("vmap", "sequential")
XLA_OPT_LEVELS = (0, 1, 2, 3)
BACKENDS = ("cpu", "gpu", "tpu")

# family -> (steps, runs) on CPU; anything unlisted uses scan + vmap.
_CPU_DEFAULTS: dict[str, tuple[str, str]] = {
    "conv": ("loop", "sequential"),
    "vit": ("loop", "sequential"),
}

# Relative cost of one example's forward+backward pass per family (MLP on 8x8 digits = 1),
# measured on the quick tier; unknown families count as expensive (never level 0).
_FAMILY_COST: dict[str, float] = {
    "mlp": 1.0,
    "ae": 1.0,
    "lopt": 4.0,
    "conv": 4.0,
    "transformer": 8.0,
    "rnn": 8.0,
}
CHEAP_JOB = 3.0e6
"""Jobs whose :func:`expected_cost` is at most this compile at level 0 on CPU."""


@dataclass(frozen=True)
class Strategy:
    """How to execute a job; recorded in every run record and part of every run key."""

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

    def as_key(self) -> dict:
        """The part of a run key that says how the run was executed."""
        return {"steps": self.steps, "runs": self.runs, "block_size": self.block_size,
                "xla_opt_level": self.xla_opt_level}


def expected_cost(family: str, runs: int, steps: int, batch_size: int) -> float:
    """Examples processed by a job, weighted by its family's per-example cost (unitless)."""
    return _FAMILY_COST.get(family, float("inf")) * runs * (steps + 1) * batch_size


def default_strategy(
    family: str,
    backend: str,
    override: Mapping[str, str] | None = None,
    *,
    runs: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
) -> Strategy:
    """The measured default for `family` on `backend` ("cpu", "gpu", "tpu"), then `override`.

    With the job's size (`runs`, `steps`, `batch_size`) a cheap CPU job also gets
    ``xla_opt_level=0``; an ``override`` may set ``steps``, ``runs`` and ``xla_opt_level``.
    """
    steps_s, runs_s = ("scan", "vmap") if backend != "cpu" else _CPU_DEFAULTS.get(family, ("scan", "vmap"))
    level: int | None = None
    if backend == "cpu" and None not in (runs, steps, batch_size):
        if expected_cost(family, runs, steps, batch_size) <= CHEAP_JOB:  # type: ignore[arg-type]
            level = 0
    override = dict(override or {})
    if "xla_opt_level" in override:
        level = override["xla_opt_level"]
    return Strategy(steps=override.get("steps", steps_s), runs=override.get("runs", runs_s),
                    xla_opt_level=level)


_ACCELERATOR_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda12-pjrt", "libtpu",
                        "jax-rocm60-plugin", "jax-rocm7-plugin", "jax-metal")


def backend_kind() -> str:
    """The JAX backend this machine will use, known without importing JAX.

    ``$JAX_PLATFORMS`` (its first entry) when set; otherwise ``gpu``/``tpu`` when an
    accelerator plugin of JAX is installed, else ``cpu``. Run keys depend on it through the
    default strategy, so a key planned here is the key executed here.
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
    "CHEAP_JOB",
    "RUNS_CHOICES",
    "STEPS_CHOICES",
    "XLA_OPT_LEVELS",
    "Strategy",
    "backend_kind",
    "default_strategy",
    "expected_cost",
]
