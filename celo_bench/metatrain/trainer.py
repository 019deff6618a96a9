"""The outer loop: PES estimates, AdamW on the meta-parameters, checkpoints, identical resume.

One outer step is one compiled program (``jax.jit``): the PES estimate over every task
instance and perturbation pair, the outer AdamW update and the phase mask. The key of
outer step ``s`` is ``fold_in(run_key, s)``, so the random stream does not depend on how
the run was split into sessions: a run killed and resumed from its last checkpoint
continues exactly (bit for bit on the same machine) as an uninterrupted one.

The resumable state (``OUT/resume/state.msgpack``, flax-msgpack) holds the outer step,
the run key, the meta-parameters, the AdamW state and the whole PES state (every inner
episode's parameters, optimizer state and key, and the perturbation accumulators).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

from celo_bench import fileio
from celo_bench.errors import CeloBenchError, CheckpointError, UnknownNameError
from celo_bench.metatrain import artifacts, inits
from celo_bench.metatrain.config import MetaTrainConfig, arch_settings, validate
from celo_bench.metatrain.pes import TruncatedPES
from celo_bench.metatrain.phases import (
    FROZEN,
    check_phase,
    factory_kwargs,
    outer_optimizer,
    trainable_mask,
)
from celo_bench.metatrain.tasks import TaskFamily, available, build_family
from celo_bench.optimizers import REGISTERED_FACTORIES, factory
from celo_bench.optimizers import checkpoint as ckpt
from celo_bench.provenance import provenance

RESUME_DIR, RESUME_STATE, RESUME_META = "resume", "state.msgpack", "run.json"
INIT_DIR = "init"
StepCallback = Callable[[int, int, float], None]
"""``(outer step done, total, meta-loss)``; raising from it stops the run (like a kill)."""


@dataclass
class RunResult:
    out: Path
    checkpoint: Path
    outer_iterations: int
    meta_loss: list[float]
    wall_seconds: float
    resumed_from: int
    card: dict

    @property
    def meta_loss_first(self) -> float | None:
        return artifacts.window_means(self.meta_loss)[0]

    @property
    def meta_loss_last(self) -> float | None:
        return artifacts.window_means(self.meta_loss)[1]


def learned_entry(arch: str):
    """The registry entry of a learned optimizer, or a clear error (names only learned ones)."""
    learned = sorted(n for n, e in REGISTERED_FACTORIES.items() if e.learned and e.init_meta_params)
    if arch not in REGISTERED_FACTORIES:
        raise UnknownNameError("learned optimizer", arch, learned)
    entry = factory(arch)
    if not entry.learned or entry.init_meta_params is None:
        raise CeloBenchError(
            f"'{arch}' is not a learned optimizer and has no meta-parameters to train; "
            f"choose one of: {', '.join(learned)}"
        )
    return entry


def make_opt_fn(arch: str, phase: str) -> Callable[[Any, jax.Array], optax.GradientTransformationExtraArgs]:
    entry, kwargs = learned_entry(arch), factory_kwargs(arch, phase)

    def make(theta, num_steps):
        opt = entry.fn(theta, num_steps=num_steps, **kwargs)
        return opt if isinstance(opt, optax.GradientTransformationExtraArgs) else (
            optax.with_extra_args_support(opt)
        )

    return make


def load_init(arch: str, path: str | Path) -> Any:
    """Meta-parameters of `arch` from a ``theta.state`` file or a folder holding one."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / ckpt.FILENAME
    if not p.is_file():
        raise CheckpointError(f"--init {path}: no {ckpt.FILENAME} there; pass a file or its folder")
    template = jax.eval_shape(learned_entry(arch).init_meta_params, jax.random.PRNGKey(0))
    return jax.tree_util.tree_map(jnp.asarray, ckpt.load(p, template))


class MetaTrainer:
    """Meta-train ``cfg.arch`` into folder `out` (see :mod:`celo_bench.metatrain.artifacts`)."""

    def __init__(self, cfg: MetaTrainConfig, out: str | Path, family: TaskFamily | None = None):
        validate(cfg)
        check_phase(cfg.arch, cfg.phase)
        inits.check(cfg.meta_init, cfg.arch)
        if cfg.arch == "celo" and cfg.phase == "2" and not cfg.init:
            raise CeloBenchError(
                "celo phase 2 trains the scheduler on top of a phase-1 MLP: pass --init "
                "PHASE1_DIR (or omit --phase to run both phases)"
            )
        self.cfg, self.out = cfg, Path(out).expanduser()
        self.entry = learned_entry(cfg.arch)
        self.family = family or build_family(
            cfg.tasks, image_size=cfg.image_size, hidden=cfg.hidden, batch_size=cfg.batch_size,
            reparam_range=cfg.reparam_range,
        )
        self.missing = [t for t in cfg.tasks if t not in self.family.members]
        self.run_key = jax.random.PRNGKey(cfg.seed)
        k_theta, self.k_pes, self.k_steps = jax.random.split(self.run_key, 3)
        theta = load_init(cfg.arch, cfg.init) if cfg.init else inits.initial_meta_params(
            cfg.arch, cfg.meta_init, k_theta, self.entry.init_meta_params)
        self.theta0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), theta)
        self.mask = trainable_mask(cfg.arch, cfg.phase, self.theta0)
        self.pes = TruncatedPES(
            family=self.family, make_opt=make_opt_fn(cfg.arch, cfg.phase),
            instances_per_member=cfg.instances_per_task, truncation=cfg.truncation,
            min_horizon=cfg.min_horizon, max_horizon=cfg.max_horizon,
            initial_offset=cfg.initial_offset, std=cfg.std, nan_loss_value=cfg.nan_loss_value,
            mask=self.mask,
        )
        self.outer = outer_optimizer(cfg.outer_lr, cfg.weight_decay, self.mask)
        self._step = jax.jit(self._outer_step)

    # ------------------------------------------------------------------ state
    def _outer_step(self, theta, opt_state, pes_state, data, key):
        grad, pes_state, out = self.pes.estimate(theta, pes_state, data, key)
        grad = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
        updates, opt_state = self.outer.update(grad, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state, pes_state, out

    def initial_state(self) -> dict:
        return {
            "step": jnp.asarray(0, jnp.int32),
            "key": self.run_key,
            "theta": self.theta0,
            "opt_state": self.outer.init(self.theta0),
            "pes": jax.jit(self.pes.init)(self.theta0, self.k_pes),
        }

    def _resume(self) -> tuple[dict, list[float], list[float], float]:
        """The saved state (or the initial one), its meta-loss history and wall time."""
        from flax import serialization  # heavy (all of flax); only resuming and saving need it

        meta_path = self.out / RESUME_DIR / RESUME_META
        if not meta_path.is_file():
            return self.initial_state(), [], [], 0.0
        meta = json.loads(meta_path.read_text())
        if meta.get("config") != _jsonable(self.cfg.resume_key()):
            raise CeloBenchError(
                f"{self.out} holds a meta-training run with other settings (see {meta_path}); "
                "pass another --out to start a new run"
            )
        state = self.initial_state()
        data = (self.out / RESUME_DIR / RESUME_STATE).read_bytes()
        state = serialization.from_bytes(state, data)
        n = int(state["step"])
        return state, meta["meta_loss"][:n], meta["seconds"][:n], float(meta["wall_seconds"])

    def _save(self, state: dict, losses: list[float], seconds: list[float], wall: float) -> Path:
        from flax import serialization  # heavy (all of flax); only resuming and saving need it

        step = int(state["step"])
        card = self.card(step, losses, wall)
        folder = self.out / "checkpoints" / f"{step:07d}"
        artifacts.write_checkpoint(folder, state["theta"], card)
        path = artifacts.write_checkpoint(self.out, state["theta"], card)
        artifacts.write_spec(self.out, card)
        artifacts.write_curve(self.out, losses, seconds, f"{self.cfg.arch} ({card['label']}, "
                              f"phase {self.cfg.phase})")
        rdir = self.out / RESUME_DIR
        fileio.atomic_write_bytes(rdir / RESUME_STATE, serialization.to_bytes(jax.device_get(state)))
        artifacts.write_json(rdir / RESUME_META, {
            "config": _jsonable(self.cfg.resume_key()), "step": step, "meta_loss": losses,
            "seconds": seconds, "wall_seconds": wall,
        })
        return path

    # ------------------------------------------------------------------ card
    def card(self, step: int, losses: list[float], wall: float) -> dict:
        cfg, prov = self.cfg, provenance()
        first, last = artifacts.window_means(losses)
        frozen = list(FROZEN.get((cfg.arch, cfg.phase), ()))
        return {
            "architecture": cfg.arch, "label": artifacts.label(cfg.preset), "preset": cfg.preset,
            "phase": cfg.phase, "factory_kwargs": factory_kwargs(cfg.arch, cfg.phase),
            "frozen": frozen, "tasks": list(self.family.members), "tasks_missing": self.missing,
            "model": "64-" + "-".join(str(h) for h in cfg.hidden) + "-10 ReLU",
            "batch_size": cfg.batch_size, "augmentation": self.family.augmentation,
            "estimator": {
                "kind": "truncated PES, antithetic", "std": cfg.std, "truncation": cfg.truncation,
                "min_horizon": cfg.min_horizon, "max_horizon": cfg.max_horizon,
                "initial_offset": cfg.initial_offset, "instances_per_task": cfg.instances_per_task,
                "meta_objective": "mean normalised inner training loss", "nan_loss_value": cfg.nan_loss_value,
            },
            "outer_optimizer": {"kind": "AdamW", "lr": cfg.outer_lr, "weight_decay": cfg.weight_decay},
            "outer_step": step, "outer_iterations": cfg.outer_iterations, "seed": cfg.seed,
            "budget_outer_steps": step + artifacts.prior_outer_steps(cfg.init),
            "init": cfg.init, "meta_init": None if cfg.init else {"scheme": cfg.meta_init,
                                                                "what": inits.scheme_description(cfg.meta_init)},
            "arch_settings": arch_settings(cfg.preset, cfg.arch),
            "meta_loss_first": first, "meta_loss_last": last,
            "wall_seconds": wall,
            "device": f"{prov.get('device', '')} ({prov.get('backend', '')}, {os.cpu_count()} CPU cores)",
            "provenance": prov, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    # ------------------------------------------------------------------ loop
    def run(self, on_step: StepCallback | None = None) -> RunResult:
        """Run (or continue) to ``cfg.outer_iterations``; checkpoints as it goes."""
        self.out.mkdir(parents=True, exist_ok=True)
        state, losses, seconds, wall = self._resume()
        start = int(state["step"])
        if start == 0:  # the starting point, for before/after comparisons (``--init`` or random)
            init_file = self.out / INIT_DIR / ckpt.FILENAME
            if not init_file.is_file():
                ckpt.write(init_file, artifacts.jax_to_numpy(self.theta0))
        total, every = self.cfg.outer_iterations, self.cfg.checkpoint_every
        data = self.family.data
        theta, opt_state, pes_state = state["theta"], state["opt_state"], state["pes"]
        t_session, path = time.perf_counter(), self.out / "theta.state"
        for step in range(start, total):
            t0 = time.perf_counter()
            theta, opt_state, pes_state, out = self._step(
                theta, opt_state, pes_state, data, jax.random.fold_in(self.k_steps, step)
            )
            loss = float(out.meta_loss)
            losses.append(loss)
            seconds.append(time.perf_counter() - t0)
            done = step + 1
            if done % every == 0 or done == total:
                state = {"step": jnp.asarray(done, jnp.int32), "key": self.run_key, "theta": theta,
                         "opt_state": opt_state, "pes": pes_state}
                path = self._save(state, losses, seconds, wall + time.perf_counter() - t_session)
            if on_step is not None:
                on_step(done, total, loss)
        wall += time.perf_counter() - t_session
        if start >= total and not path.is_file():
            path = self._save(state, losses, seconds, wall)
        card = self.card(max(start, total), losses, wall)
        return RunResult(self.out, path, max(start, total), losses, wall, start, card)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=list))


__all__ = ["MetaTrainer", "RunResult", "available", "learned_entry", "load_init", "make_opt_fn"]
