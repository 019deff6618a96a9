"""The parts of planning that need JAX: model sizes, and a short timed probe on this device.

:func:`task_sizes` traces each task's model abstractly (``jax.eval_shape``: shapes only, no
training) to count its parameters and estimate one run's device memory, which decides how
a job splits into programs. :func:`calibrate` trains a few steps of Adam (its learning-rate
grid x the suite's seeds, one vmapped job) and of Celo (the seeds) on one task per family,
on synthetic stand-in data of the task's exact shapes (:mod:`celo_bench.data.synthetic`),
and turns the timings into rates that :func:`celo_bench.pricing.project` scales to the
whole grid. Hand-crafted optimizers are projected at Adam's rate, learned ones at Celo's.

Within a family, a task's per-step time is scaled from the probed task's by
``batch_size x parameters x tokens per example`` (a proxy for its FLOPs); compile time is
taken as the probed task's. The projection is a rough guide (about 2x either way), not a
measurement: ``scripts/device_check.py`` measures all 17 paper tasks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from celo_bench import assembly, optimizers, plan
from celo_bench.data import dataset_info
from celo_bench.data.synthetic import synthetic_name
from celo_bench.engine import memory, run_job
from celo_bench.errors import CeloBenchError, CheckpointError
from celo_bench.pricing import ENGINE_PROGRAMS_PER_CHUNK, Plan, TaskSize, project
from celo_bench.strategy import default_strategy
from celo_bench.suite import OptimizerSpec, Registry, TaskSpec

PROBE_STEPS = 20
"""Default probe horizon (a multiple of every paper task's ``eval_every`` = 10)."""
PROBE_OPTIMIZERS = ("adam", "celo")


def pin_to_host() -> None:
    """Make JAX use the CPU in this process (call before anything initialises a backend).

    Planning traces model shapes only; pinning keeps it from touching, or preallocating the
    memory of, an accelerator that a running grid may be using. No effect once a backend is up.
    """
    jax.config.update("jax_platforms", "cpu")


def device_backend() -> str:
    """The backend JAX runs on here: ``cpu``, ``gpu`` or ``tpu``."""
    return jax.default_backend()


def device_budget() -> int:
    """Bytes one program may plan for on this process's first device (:mod:`memory`)."""
    return memory.device_memory_budget()


def task_size(spec: TaskSpec, num_steps: int | None = None) -> TaskSize:
    """Parameters, bytes per example and estimated bytes per run of `spec` (no data, no device).

    Raises:
      DataMissingError: an offline dataset without registered facts cannot be read.
    """
    info = dataset_info(spec.dataset, spec.data)
    model = assembly.build_model_only(spec, info)
    params, _ = jax.eval_shape(model.init, jax.ShapeDtypeStruct((2,), jnp.uint32))
    n_params = int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))
    ex = memory.example_bytes(info)
    per_run = memory.bytes_per_run(
        n_params, ex, batch_size=spec.batch_size, eval_batches=spec.eval_batches,
        last_eval_batches=spec.last_eval_batches, num_steps=num_steps or spec.steps,
        output_bytes=memory.output_bytes(info, spec.family),
    )
    return TaskSize(n_params=n_params, example_bytes=ex, bytes_per_run=per_run)


def task_sizes(specs: Iterable[TaskSpec]) -> dict[str, TaskSize]:
    """:func:`task_size` of each distinct task (by name; the spec's own horizon)."""
    out: dict[str, TaskSize] = {}
    for spec in specs:
        if spec.name not in out:
            out[spec.name] = task_size(spec)
    return out


@dataclass
class Probe:
    """One timed job: `runs` runs of `optimizer` on `task` for `num_steps` steps."""

    task: str
    family: str
    optimizer: str
    runs: int
    num_steps: int
    strategy: str
    programs: int
    runs_per_program: int
    compile_s: float  # all programs of the job
    run_s: float  # execution, evaluations included
    peak_bytes: int | None
    weights: str  # "checkpoint" | "random (timing only)" | ""

    @property
    def run_step_s(self) -> float:
        """Seconds per training step of one run."""
        return self.run_s / max(1, self.runs * self.num_steps)

    @property
    def steps_per_s_per_run(self) -> float:
        """Training steps per second of each run while it trains (runs of one vmapped program
        advance together; sequential runs one after another)."""
        in_flight = self.runs_per_program if self.strategy.split("@")[0].endswith("vmap") else 1
        return self.runs * self.num_steps / max(1e-12, self.run_s) / in_flight

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"run_step_s": self.run_step_s, "steps_per_s_per_run": self.steps_per_s_per_run}


def make_builder(spec: OptimizerSpec, num_steps: int, *, allow_random: bool = True):
    """(builder, weights label): a learned optimizer without weights gets random meta-parameters
    when `allow_random` (its speed does not depend on their values)."""
    entry = optimizers.factory(spec.factory)
    if not entry.learned:
        return optimizers.builder(spec, num_steps=num_steps), ""
    try:
        return optimizers.builder(spec, num_steps=num_steps), "checkpoint"
    except CheckpointError:
        if not allow_random or entry.init_meta_params is None:
            raise
    meta = entry.init_meta_params(jax.random.PRNGKey(0))
    return optimizers.builder(spec, num_steps=num_steps, meta_params=meta), "random (timing only)"


def probe_job(
    job: plan.Job,
    *,
    horizon: int | None = None,
    memory_budget: int | None = None,
    allow_random_weights: bool = True,
) -> Probe:
    """Train `job` (its task on synthetic data) once and time it.

    Args:
      job: a planned job; its task's dataset is replaced by the synthetic stand-in.
      horizon: unused; kept for callers that pass the grid's horizon.
      memory_budget: bytes per program (default: :func:`memory.device_memory_budget`).
      allow_random_weights: time learned optimizers without weights on random meta-parameters.
    """
    spec = replace(job.task, dataset=synthetic_name(job.task.dataset))
    task = assembly.build_task(spec)
    make, weights = make_builder(job.optimizer, job.num_steps, allow_random=allow_random_weights)
    R = len(job.runs)
    # What `run` executes for this job (planned for this machine's backend).
    strat = job.strategy or default_strategy(spec.family, jax.default_backend(), spec.strategy)
    names = sorted(job.runs[0].hparams)
    hparams = {k: np.array([r.hparams[k] for r in job.runs]) for k in names}
    seeds = np.array([r.seed for r in job.runs])
    budget = memory_budget or memory.device_memory_budget()
    cap: int | None = None
    while True:  # the engine's per-run estimate can be low: halve the programs on OOM
        try:
            with memory.PeakSampler() as peak:
                res = run_job(task, make, hparams, seeds, num_steps=job.num_steps, strategy=strat,
                              memory_budget=budget, max_runs_per_program=cap)
            break
        except Exception as e:
            if not memory.is_oom(e) or cap == 1:
                raise
            cap = max(1, (cap or R) // 2)
    return Probe(
        task=spec.name, family=spec.family, optimizer=job.optimizer.name, runs=R,
        num_steps=job.num_steps, strategy=res.strategy, programs=res.programs,
        runs_per_program=_runs_per_program(R, res.programs), compile_s=res.compile_seconds, run_s=res.run_seconds,
        peak_bytes=peak.peak, weights=weights,
    )


def _chunks(programs: int) -> int:
    return max(1, programs // ENGINE_PROGRAMS_PER_CHUNK)


def _runs_per_program(R: int, programs: int) -> int:
    return -(-R // _chunks(programs))


def _proxy(spec: TaskSpec, size: TaskSize | None) -> float:
    """batch x parameters x tokens per example: scales a probed task's step time to its family."""
    tokens = int(spec.data.get("seq_len", 1))
    return float(spec.batch_size * max(1, size.n_params if size else 1) * tokens)


def representatives(p: Plan, registry: Registry) -> dict[str, str]:
    """family -> the first task of that family in plan `p`."""
    out: dict[str, str] = {}
    for j in p.jobs:
        out.setdefault(j.family, j.task)
    return out


def calibrate(
    p: Plan,
    registry: Registry,
    *,
    probe_steps: int = PROBE_STEPS,
    seeds: int | None = None,
    memory_budget: int | None = None,
    families: Sequence[str] | None = None,
    on_probe=None,
) -> dict[str, Any]:
    """Probe one task per family of plan `p` with Adam and Celo; project the grid's time.

    Args:
      p: the plan (:func:`celo_bench.pricing.price`).
      registry: the spec registry.
      probe_steps: training steps per probe (a multiple of the tasks' ``eval_every``).
      seeds: seeds per grid point in the probes (default: the suite's).
      memory_budget: bytes per program (default: the device's budget).
      families: only these families (default: every family of the plan).
      on_probe: called with each :class:`Probe` as it finishes.

    Returns:
      ``{"device", "platform", "probe_steps", "probes": [...], "rates": {...}, **projection}``.

    Raises:
      CeloBenchError: `probe_steps` is not a multiple of a probed task's ``eval_every``.
    """
    suite = registry.suite(p.suite)
    reps = {f: t for f, t in representatives(p, registry).items() if not families or f in families}
    sizes = {k: TaskSize(**v) for k, v in p.sizes.items()}
    horizon = {j.task: j.num_steps for j in p.jobs}
    probes: list[Probe] = []
    family_rates: dict[str, dict[str, dict[str, float]]] = {}
    for family, task in reps.items():
        jobs = plan.expand(registry, suite, tasks=[task], optimizers=list(PROBE_OPTIMIZERS),
                           seeds=seeds, steps=probe_steps, data="synthetic")
        rates: dict[str, dict[str, float]] = {}
        for job in jobs:
            pr = probe_job(job, horizon=horizon.get(task), memory_budget=memory_budget)
            probes.append(pr)
            if on_probe:
                on_probe(pr)
            kind = "learned" if job.optimizer.kind == "learned" else "handcrafted"
            rates[kind] = {"compile_s": pr.compile_s / _chunks(pr.programs), "run_step_s": pr.run_step_s}
        if "handcrafted" not in rates or "learned" not in rates:
            raise CeloBenchError(f"the calibration needs both adam and celo in the registry (task {task})")
        family_rates[family] = rates
    per_task: dict[str, dict[str, dict[str, float]]] = {}
    for j in p.jobs:
        if j.family not in family_rates or j.task in per_task:
            continue
        rep = reps[j.family]
        scale = _proxy(registry.task(j.task), sizes.get(j.task)) / _proxy(registry.task(rep), sizes.get(rep))
        per_task[j.task] = {k: {"compile_s": r["compile_s"], "run_step_s": r["run_step_s"] * scale}
                            for k, r in family_rates[j.family].items()}
    dev = jax.devices()[0]
    return {
        "device": getattr(dev, "device_kind", str(dev)), "platform": dev.platform,
        "probe_steps": probe_steps, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "probes": [pr.as_dict() for pr in probes], "representatives": reps,
        "rates": per_task, **project(p, per_task),
    }


def rates_for(probes: Sequence[Probe], kinds: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """Per-kind rates (``compile_s`` per chunk, ``run_step_s``) of one task's probes.

    `kinds` maps optimizer name -> ``handcrafted`` | ``learned``.
    """
    return {kinds[pr.optimizer]: {"compile_s": pr.compile_s / _chunks(pr.programs), "run_step_s": pr.run_step_s}
            for pr in probes}


__all__ = ["PROBE_OPTIMIZERS", "PROBE_STEPS", "Probe", "calibrate", "device_backend", "device_budget",
           "make_builder", "pin_to_host", "probe_job", "rates_for", "representatives", "task_size",
           "task_sizes"]
