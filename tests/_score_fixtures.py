"""Hand-made run records for the scoring and report tests (written with Store.write).

Every record carries the run key the plan gives it (:func:`planned_key`): scoring selects
records by planned key, so a record is scored exactly when :func:`registry` (or the real
registry, through ``write(..., reg)``) plans it.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from celo_bench.plan import expand
from celo_bench.store import Store
from celo_bench.suite import OptimizerSpec, Registry, SuiteSpec, TaskSpec

EVAL_EVERY = 10
LRS = (1e-3, 1e-2, 1e-1, 1.0)
ENV = {"device": "cpu", "backend": "cpu", "jax": "0.0.test", "jaxlib": "0.0.test", "optax": "0.0.test",
       "flax": "0.0.test"}
"""The environment every fixture record was made in (scoring refuses to mix two in a task)."""


def task_spec(name: str, steps: int = 100, eval_every: int = EVAL_EVERY) -> TaskSpec:
    return TaskSpec(name=name, family="mlp", dataset="synthetic:digits", batch_size=1, steps=steps,
                    model={"kind": "mlp"}, eval_every=eval_every)


def optimizer_spec(name: str, kind: str = "handcrafted", lrs: Sequence[float] = LRS) -> OptimizerSpec:
    if kind == "learned":
        return OptimizerSpec(name=name, kind=kind, factory=name, checkpoint={"source": f"hf://fixture/{name}"})
    return OptimizerSpec(name=name, kind=kind, factory=name, grid={"learning_rate": tuple(lrs)})


def planned_key(rec: dict, reg: Registry | None = None) -> str:
    """The key the plan gives `rec`'s run, from `reg`'s specs (default: the stub specs)."""
    tname, oname, seed, T = rec["task"], rec["optimizer"], int(rec["seed"]), int(rec["num_steps"])
    if T < 1:  # a failed record without a horizon: no plan holds it
        return f"unplanned-{tname}-{oname}-{seed}"
    reg = reg or Registry(tasks={}, optimizers={}, suites={})
    tspec = reg.tasks.get(tname) or task_spec(tname, T, int(rec.get("_eval_every", EVAL_EVERY)))
    ospec = reg.optimizers.get(oname) or optimizer_spec(oname, rec["optimizer_kind"])
    hp = json.loads(rec["hparams"])
    suite = SuiteSpec(name=rec["suite"], version=rec["suite_version"], tasks=(tname,), optimizers=(oname,),
                      seeds=seed + 1, steps=T, grids={oname: {k: (v,) for k, v in hp.items()}} if hp else {})
    small = Registry(tasks={tname: tspec}, optimizers={oname: ospec}, suites={})
    return next(r.key for r in expand(small, suite)[0].runs if r.seed == seed)


def record(
    task: str, optimizer: str, seed: int, curve: Sequence[float], *, lr: float | None = 1e-3,
    status: str = "ok", kind: str = "handcrafted", suite: str = "fx", version: str = "1",
    eval_every: int = EVAL_EVERY, diverged_step: int | None = None, run_seconds: float = 1.0,
    num_steps: int | None = None, env: Mapping[str, str] | None = None,
) -> dict:
    """One record whose ``eval_train_loss`` is `curve` at steps 0, eval_every, ... T.

    A ``failed`` record has no curves; pass its horizon as `num_steps`. `env` is its
    provenance (default :data:`ENV`).
    """
    curve = np.asarray(curve, dtype=np.float32)
    steps = np.arange(curve.size, dtype=np.int64) * eval_every
    T = int(num_steps if num_steps is not None else steps[-1])
    hp = {} if lr is None else {"learning_rate": lr}
    inner = ",".join(f"{k}={v:g}" for k, v in sorted(hp.items()))
    train = np.interp(np.arange(T + 1), steps, curve).astype(np.float32)
    rec = {
        "key": "", "suite": suite, "suite_version": version,
        "task": task, "optimizer": optimizer, "optimizer_kind": kind,
        "hparams": json.dumps(hp, sort_keys=True), "hparam_id": f"{optimizer}[{inner}]",
        "learning_rate": lr, "seed": seed, "num_steps": T, "status": status,
        "message": "" if status == "ok" else status, "diverged_step": diverged_step,
        "train_loss": train, "eval_steps": steps, "eval_train_loss": curve,
        "eval_valid_loss": curve + 0.1, "eval_test_loss": curve + 0.2,
        "compile_seconds": 0.5, "run_seconds": run_seconds, "job_runs": 1, "strategy": "scan+vmap",
        "config": "{}", "provenance": dict(ENV if env is None else env),
    }
    if status == "failed":
        for c in ("train_loss", "eval_steps", "eval_train_loss", "eval_valid_loss", "eval_test_loss"):
            rec[c] = None
    rec["_eval_every"] = eval_every
    rec["key"] = planned_key(rec)
    return rec


def write(root: Path, records: Sequence[dict], reg: Registry | None = None) -> Path:
    """Store `records`; with `reg`, each first gets the key `reg`'s specs plan for it."""
    store = Store(root)
    for rec in records:
        store.write({**rec, "key": planned_key(rec, reg) if reg is not None else rec["key"]})
    return root


def registry(tasks: Sequence[str], optimizers: Sequence[str] | Mapping[str, str | tuple], steps: int,
             name: str = "fx", version: str = "1", lrs: Sequence[float] = LRS, **kw) -> Registry:
    """Stub task and optimizer specs and suite `name` over them.

    `optimizers`: names (hand-crafted) or name -> kind (or the ``(kind, quality)`` pairs of
    :func:`grid_records`). Hand-crafted grids are `lrs`; learned optimizers have none.
    """
    kinds = {o: (k[0] if isinstance(k, tuple) else k) for o, k in optimizers.items()} \
        if isinstance(optimizers, Mapping) else dict.fromkeys(optimizers, "handcrafted")
    suite = SuiteSpec(name=name, version=version, tasks=tuple(tasks), optimizers=tuple(kinds),
                      steps=steps, **kw)
    return Registry(tasks={t: task_spec(t, steps) for t in tasks},
                    optimizers={o: optimizer_spec(o, k, lrs) for o, k in kinds.items()},
                    suites={name: suite})


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


TEMPLATE = Path(__file__).resolve().parents[1] / "submissions" / "template"


def make_submission(root: Path, name: str, learning_rates: Sequence[float] = (0.01, 0.1)) -> Path:
    """The submission template's folder as submission `name`, searched over `learning_rates`."""
    folder = root / name
    shutil.copytree(TEMPLATE, folder)
    toml = (folder / "submission.toml").read_text()
    toml = re.sub(r'^name = ".*"', f'name = "{name}"', toml, count=1, flags=re.M)
    toml = re.sub(r"^learning_rate = .*$", f"learning_rate = {list(learning_rates)}", toml, count=1, flags=re.M)
    (folder / "submission.toml").write_text(toml)
    return folder
