"""Hand-made run records for the scoring and report tests (written with Store.write)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from celo_bench.store import Store
from celo_bench.suite import Registry, SuiteSpec

EVAL_EVERY = 10


def record(
    task: str, optimizer: str, seed: int, curve: Sequence[float], *, lr: float | None = 1e-3,
    status: str = "ok", kind: str = "handcrafted", suite: str = "fx", version: str = "1",
    eval_every: int = EVAL_EVERY, diverged_step: int | None = None, run_seconds: float = 1.0,
    num_steps: int | None = None,
) -> dict:
    """One record whose ``eval_train_loss`` is `curve` at steps 0, eval_every, ... T.

    A ``failed`` record has no curves; pass its horizon as `num_steps`.
    """
    curve = np.asarray(curve, dtype=np.float32)
    steps = np.arange(curve.size, dtype=np.int64) * eval_every
    T = int(num_steps if num_steps is not None else steps[-1])
    hp = {} if lr is None else {"learning_rate": lr}
    inner = ",".join(f"{k}={v:g}" for k, v in sorted(hp.items()))
    train = np.interp(np.arange(T + 1), steps, curve).astype(np.float32)
    rec = {
        "key": f"{task}-{optimizer}-{lr}-{seed}-v{version}-T{T}", "suite": suite, "suite_version": version,
        "task": task, "optimizer": optimizer, "optimizer_kind": kind,
        "hparams": json.dumps(hp, sort_keys=True), "hparam_id": f"{optimizer}[{inner}]",
        "learning_rate": lr, "seed": seed, "num_steps": T, "status": status,
        "message": "" if status == "ok" else status, "diverged_step": diverged_step,
        "train_loss": train, "eval_steps": steps, "eval_train_loss": curve,
        "eval_valid_loss": curve + 0.1, "eval_test_loss": curve + 0.2,
        "compile_seconds": 0.5, "run_seconds": run_seconds, "job_runs": 1, "strategy": "scan+vmap",
        "config": "{}", "provenance": {},
    }
    if status == "failed":
        for c in ("train_loss", "eval_steps", "eval_train_loss", "eval_valid_loss", "eval_test_loss"):
            rec[c] = None
    return rec


def write(root: Path, records: Sequence[dict]) -> Path:
    Store(root).write_many(records)
    return root


def registry(tasks: Sequence[str], optimizers: Sequence[str], steps: int, name: str = "fx",
             version: str = "1", **kw) -> Registry:
    """A registry holding only a suite (the scoring code needs no task or optimizer spec)."""
    suite = SuiteSpec(name=name, version=version, tasks=tuple(tasks), optimizers=tuple(optimizers),
                      steps=steps, **kw)
    return Registry(tasks={}, optimizers={}, suites={name: suite})


def decaying(n: int, start: float, end: float) -> np.ndarray:
    """A strictly decreasing geometric curve of n points from start to end."""
    return start * (end / start) ** (np.arange(n) / (n - 1))


def grid_records(tasks: Sequence[str], optimizers: dict[str, tuple[str, float]], seeds: int = 3,
                 n: int = 11, lrs: Sequence[float] = (1e-3, 1e-2, 1e-1), suite: str = "fx",
                 version: str = "1") -> list[dict]:
    """A full small grid: every optimizer name -> (kind, quality); lower quality = lower loss.

    The middle learning rate is best for tuned optimizers, so tuning picks an interior point;
    learned optimizers get one untuned point.
    """
    rng = np.random.default_rng(0)
    out = []
    for t_i, task in enumerate(tasks):
        for name, (kind, quality) in optimizers.items():
            grid = [None] if kind == "learned" else list(lrs)
            for j, lr in enumerate(grid):
                penalty = 1.0 if lr is None else 1.0 + abs(j - len(grid) // 2) * 0.3
                for s in range(seeds):
                    end = quality * penalty * (1 + 0.05 * rng.standard_normal()) * (1 + t_i)
                    out.append(record(task, name, s, decaying(n, 2.0 * (1 + t_i), end), lr=lr,
                                      kind=kind, suite=suite, version=version))
    return out
