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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
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
class Setting:
    """One execution setting a user may choose: declared once, as a field of :class:`Strategy`.

    Everything else derives from the declaration: the option of every command that plans or
    reads a grid (``celo_bench/cli/_plan_options.py``), the ``[strategy]`` table a task spec
    may hold (:mod:`celo_bench.suite`), the validation of overrides, the run key's
    ``execution`` (:func:`celo_bench.plan.expand`) and ``prune``'s reading of the settings a
    record states. Adding one touches the field below, the engine that obeys it and a test.
    """

    name: str  # the Strategy field, the key in overrides, a record's provenance and the run key
    flag: str  # the command-line option
    choices: tuple
    help: str

    @property
    def type(self) -> type:
        return type(self.choices[0])


def _setting(default: Any, flag: str, choices: tuple, help: str) -> Any:
    """A :class:`Strategy` field that users may set (see :class:`Setting`)."""
    return field(default=default, metadata={"setting": (flag, choices, help)})


@dataclass(frozen=True)
class Strategy:
    """How to execute a job; recorded in every run record (settings set by hand enter run keys).

    The fields made with ``_setting`` are the execution settings (:data:`SETTINGS`);
    ``block_size`` is an engine option (``EngineSettings.block_size``), not a setting.
    """

    steps: str = _setting("scan", "--steps-strategy", STEPS_CHOICES,
                          "scan | loop | split (default: split on a CPU, scan on accelerators).")
    runs: str = _setting("vmap", "--runs-strategy", RUNS_CHOICES,
                         "vmap | sequential (default: vmap; sequential for convnets and ViTs on a CPU).")
    block_size: int = 1
    xla_opt_level: int | None = _setting(None, "--xla-opt-level", XLA_OPT_LEVELS,
                                         "XLA backend optimisation level 0-3 (default: XLA's).")

    def __post_init__(self) -> None:
        for s in SETTINGS:
            value = getattr(self, s.name)
            if value is not None and value not in s.choices:
                raise ValueError(f"{s.name} must be one of {s.choices}, got {value!r}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")

    @property
    def label(self) -> str:
        """E.g. ``scan+vmap`` or ``scan+vmap@O0`` (recorded in every run record)."""
        base = f"{self.steps}+{self.runs}"
        return base if self.xla_opt_level is None else f"{base}@O{self.xla_opt_level}"

    def as_dict(self) -> dict:
        """How the run was executed, for its record's provenance."""
        return asdict(self)


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(f.name, *f.metadata["setting"]) for f in fields(Strategy) if "setting" in f.metadata
)
"""The execution settings, in declaration order (the fields of :class:`Strategy` made with
``_setting``)."""


def check_overrides(override: Mapping[str, Any] | None, settings: Sequence[Setting] | None = None) -> None:
    """Reject an unknown setting or a bad value of one, with the flag that sets it.

    `settings`: the declared settings to check against (default :data:`SETTINGS`).

    Raises:
      CeloBenchError: e.g. ``--steps-strategy must be one of scan, loop, split, got 'x'``.
    """
    known = {s.name: s for s in (SETTINGS if settings is None else settings)}
    for key, value in (override or {}).items():
        if key not in known:
            raise CeloBenchError(f"unknown execution setting '{key}'; the settings are: {', '.join(known)}")
        s = known[key]
        if value is not None and value not in s.choices:
            raise CeloBenchError(f"{s.flag} must be one of {', '.join(map(str, s.choices))}, got '{value}'")


def flags(override: Mapping[str, Any] | None) -> str:
    """The options that give `override` on a command line, e.g. ``" --steps-strategy loop"``
    ("" when nothing is set): hints name them so their command plans the same keys."""
    by_name = {s.name: s for s in SETTINGS}
    return "".join(f" {by_name[k].flag} {v}" for k, v in (override or {}).items()
                   if v is not None and k in by_name)


def stated(execution: Mapping[str, Any] | None) -> dict[str, Any]:
    """The execution settings a record states (its provenance's ``execution``), as overrides."""
    return {s.name: execution[s.name] for s in SETTINGS
            if isinstance(execution, Mapping) and execution.get(s.name) is not None}


def default_strategy(
    family: str,
    backend: str,
    override: Mapping[str, Any] | None = None,
) -> Strategy:
    """The measured default for `family` on `backend` ("cpu", "gpu", "tpu"), then `override`
    (any of :data:`SETTINGS`; None values are not overrides)."""
    steps_s, runs_s = ("scan", "vmap") if backend != "cpu" else _CPU_DEFAULTS.get(family, _CPU_DEFAULT)
    override = {k: v for k, v in (override or {}).items() if v is not None}
    return Strategy(**{"steps": steps_s, "runs": runs_s, **override})


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
    "SETTINGS",
    "STEPS_CHOICES",
    "XLA_OPT_LEVELS",
    "Setting",
    "Strategy",
    "backend_kind",
    "check_overrides",
    "default_strategy",
    "flags",
    "stated",
]
