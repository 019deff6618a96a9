"""Spec loading and validation: tasks, optimizers and suites are TOML data, not code.

Layout (shipped inside the wheel under ``celo_bench/_specs``; read from the source tree
in an editable install)::

    tasks/<tier>/<task>.toml     one task each
    tasks/suites/<suite>.toml    suite manifests (tasks x optimizers x seeds x grids)
    baselines/<name>.toml        paper optimizers (hand-crafted and learned)
    baselines/extra/<name>.toml  optimizers beyond the paper (kind "extra")
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from celo_bench._schema import Field, float_list, read_toml, validate
from celo_bench.errors import SpecError, UnknownNameError

OPTIMIZER_KINDS = ("handcrafted", "learned", "extra", "submission")
SELECTION_RULES = ("mean_over_seeds", "per_seed")
KIND_LABELS = {"handcrafted": "hand-crafted", "learned": "learned", "extra": "extra",
               "submission": "submission"}


@dataclass(frozen=True)
class TaskSpec:
    """A training problem: model, dataset, batch size, horizon and evaluation cadence."""

    name: str
    family: str
    dataset: str
    batch_size: int
    steps: int
    model: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    eval_every: int = 10
    eval_batches: int = 5
    last_eval_batches: int = 10
    description: str = ""
    note: str = ""
    strategy: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def resolved(self) -> dict[str, Any]:
        """Everything that changes the numbers (the path does not)."""
        d = asdict(self)
        d.pop("path")
        d.pop("description")
        d.pop("note")
        return d


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer: a factory name, fixed defaults, a tuning grid, and (if learned) a checkpoint."""

    name: str
    kind: str
    factory: str
    defaults: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, tuple[float, ...]] = field(default_factory=dict)
    reference: str = ""
    needs_loss: bool = False
    checkpoint: dict[str, str] = field(default_factory=dict)
    meta_training: str = ""
    description: str = ""
    path: str = ""

    @property
    def tuned(self) -> bool:
        return bool(self.grid)

    @property
    def kind_label(self) -> str:
        """The leaderboard's "kind" cell. Learned optimizers also say whose weights they run:
        ``[checkpoint] label`` (e.g. "meta-trained here (cpu diet)"), else "published"."""
        if self.kind != "learned":
            return KIND_LABELS.get(self.kind, self.kind)
        return f"learned · {self.checkpoint.get('label') or 'published'}"

    def resolved(self) -> dict[str, Any]:
        """What changes a run's numbers. The grid does not (each run's own point is in its
        key), so widening a grid keeps the runs already stored."""
        d = asdict(self)
        for k in ("path", "description", "reference", "meta_training", "grid"):
            d.pop(k)
        return d


@dataclass(frozen=True)
class SuiteSpec:
    """A grid manifest: which tasks, optimizers, seeds, horizon and grids, and the scoring rule."""

    name: str
    version: str
    tasks: tuple[str, ...]
    optimizers: tuple[str, ...]
    seeds: int = 3
    steps: int | None = None
    grids: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=dict)
    selection: str = "mean_over_seeds"
    ema_alpha: float = 0.9
    description: str = ""
    path: str = ""


_TASK_FIELDS = {
    "name": Field((str,), required=True),
    "family": Field((str,), required=True),
    "dataset": Field((str,), required=True),
    "batch_size": Field((int,), required=True, positive=True),
    "steps": Field((int,), default=2000, positive=True),
    "eval_every": Field((int,), default=10, positive=True),
    "eval_batches": Field((int,), default=5, positive=True),
    "last_eval_batches": Field((int,), default=10, positive=True),
    "description": Field((str,), default=""),
    "note": Field((str,), default=""),
    "model": Field((dict,), required=True),
    "data": Field((dict,), default=None),
    "strategy": Field((dict,), default=None),
}
_STRATEGY_FIELDS = {
    "steps": Field((str,), choices=("scan", "loop")),
    "runs": Field((str,), choices=("vmap", "sequential")),
}
_OPT_FIELDS = {
    "name": Field((str,), required=True),
    "kind": Field((str,), required=True, choices=OPTIMIZER_KINDS),
    "factory": Field((str,), required=True),
    "defaults": Field((dict,), default=None),
    "grid": Field((dict,), default=None),
    "reference": Field((str,), default=""),
    "needs_loss": Field((bool,), default=False),
    "checkpoint": Field((dict,), default=None),
    "meta_training": Field((str,), default=""),
    "description": Field((str,), default=""),
}
_CHECKPOINT_FIELDS = {
    "source": Field((str,), required=True),
    "sha256": Field((str,), default=""),
    "note": Field((str,), default=""),
    "label": Field((str,), default=""),
    "make": Field((str,), default=""),
}
_SUITE_FIELDS = {
    "name": Field((str,), required=True),
    "version": Field((str,), required=True),
    "tasks": Field((list,), required=True),
    "optimizers": Field((list,), required=True),
    "seeds": Field((int,), default=3, positive=True),
    "steps": Field((int,), default=None, positive=True),
    "grids": Field((dict,), default=None),
    "selection": Field((str,), default="mean_over_seeds", choices=SELECTION_RULES),
    "ema_alpha": Field((float,), default=0.9),
    "description": Field((str,), default=""),
}


def _check_name(path: Path, name: str) -> None:
    if name != path.stem:
        raise SpecError(path, "name", f"'{name}' must equal the file name '{path.stem}'")


def parse_task(path: Path) -> TaskSpec:
    """Load and validate one task spec."""
    raw = validate(path, read_toml(path), _TASK_FIELDS)
    _check_name(path, raw["name"])
    model = raw["model"]
    if not isinstance(model.get("kind"), str):
        raise SpecError(path, "model.kind", "is required: the model family to build (e.g. 'mlp')")
    strategy = validate(path, raw["strategy"] or {}, _STRATEGY_FIELDS, prefix="strategy.")
    strategy = {k: v for k, v in strategy.items() if v is not None}
    if raw["steps"] % raw["eval_every"] != 0:
        raise SpecError(path, "steps", f"{raw['steps']} is not a multiple of eval_every={raw['eval_every']}")
    return TaskSpec(**{**raw, "data": raw["data"] or {}, "strategy": strategy, "path": str(path)})


def _grid(path: Path, key: str, table: Any) -> dict[str, tuple[float, ...]]:
    if not isinstance(table, dict):
        raise SpecError(path, key, f"expected a table of hyper-parameter -> list of values, got {table!r}")
    return {k: float_list(path, f"{key}.{k}", v) for k, v in table.items()}


def parse_optimizer(path: Path, kind_default: str | None = None) -> OptimizerSpec:
    """Load and validate one optimizer spec."""
    table = read_toml(path)
    if kind_default and "kind" not in table:
        table = {**table, "kind": kind_default}
    raw = validate(path, table, _OPT_FIELDS)
    _check_name(path, raw["name"])
    ckpt = raw["checkpoint"]
    if ckpt is not None:
        ckpt = validate(path, ckpt, _CHECKPOINT_FIELDS, prefix="checkpoint.")
    if raw["kind"] == "learned" and not ckpt:
        raise SpecError(path, "checkpoint", "learned optimizers need a [checkpoint] table with a source")
    grid = _grid(path, "grid", raw["grid"] or {})
    defaults = raw["defaults"] or {}
    for k in grid:
        if k in defaults:
            raise SpecError(path, f"grid.{k}", "is also set in [defaults]; tune it or fix it, not both")
    return OptimizerSpec(
        **{**raw, "defaults": defaults, "grid": grid, "checkpoint": ckpt or {}, "path": str(path)}
    )


def parse_suite(path: Path) -> SuiteSpec:
    """Load and validate one suite manifest (names are checked against the registry later)."""
    raw = validate(path, read_toml(path), _SUITE_FIELDS)
    _check_name(path, raw["name"])
    for key in ("tasks", "optimizers"):
        if not raw[key] or not all(isinstance(x, str) for x in raw[key]):
            raise SpecError(path, key, "expected a non-empty list of names")
    grids = {}
    for opt, table in (raw["grids"] or {}).items():
        grids[opt] = _grid(path, f"grids.{opt}", table)
    if not 0.0 <= raw["ema_alpha"] < 1.0:
        raise SpecError(path, "ema_alpha", f"must be in [0, 1), got {raw['ema_alpha']}")
    return SuiteSpec(
        **{**raw, "tasks": tuple(raw["tasks"]), "optimizers": tuple(raw["optimizers"]),
           "grids": grids, "path": str(path)}
    )


def spec_root() -> Path:
    """Folder holding ``tasks/`` and ``baselines/``: the wheel's copy, the source tree, or $CELO_BENCH_SPECS."""
    env = os.environ.get("CELO_BENCH_SPECS")
    if env:
        return Path(env)
    shipped = Path(__file__).parent / "_specs"
    if (shipped / "tasks").is_dir():
        return shipped
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Registry:
    """All specs found under one root, looked up by exact name."""

    tasks: dict[str, TaskSpec]
    optimizers: dict[str, OptimizerSpec]
    suites: dict[str, SuiteSpec]

    def task(self, name: str) -> TaskSpec:
        if name not in self.tasks:
            raise UnknownNameError("task", name, self.tasks)
        return self.tasks[name]

    def optimizer(self, name: str) -> OptimizerSpec:
        if name not in self.optimizers:
            raise UnknownNameError("optimizer", name, self.optimizers)
        return self.optimizers[name]

    def suite(self, name: str) -> SuiteSpec:
        if name not in self.suites:
            raise UnknownNameError("suite", name, self.suites)
        return self.suites[name]

    def with_optimizer(self, spec: OptimizerSpec) -> Registry:
        """A registry that also knows `spec` (used for submissions)."""
        return replace(self, optimizers={**self.optimizers, spec.name: spec})


def _unique(kind: str, items: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if item.name in out:
            raise SpecError(item.path, "name", f"{kind} '{item.name}' is also defined in {out[item.name].path}")
        out[item.name] = item
    return out


@functools.cache
def load_registry(root: Path | None = None) -> Registry:
    """Read every spec under `root` (default: :func:`spec_root`) and cross-check suite names."""
    root = Path(root) if root else spec_root()
    task_files = sorted(p for p in (root / "tasks").rglob("*.toml") if "suites" not in p.parts)
    suite_files = sorted((root / "tasks" / "suites").glob("*.toml"))
    opt_files = sorted((root / "baselines").glob("*.toml"))
    extra_files = sorted((root / "baselines" / "extra").glob("*.toml"))
    reg = Registry(
        tasks=_unique("task", [parse_task(p) for p in task_files]),
        optimizers=_unique(
            "optimizer",
            [parse_optimizer(p) for p in opt_files] + [parse_optimizer(p, "extra") for p in extra_files],
        ),
        suites=_unique("suite", [parse_suite(p) for p in suite_files]),
    )
    for suite in reg.suites.values():
        check_suite(reg, suite)
    return reg


def check_suite(reg: Registry, suite: SuiteSpec) -> None:
    """Every name a suite mentions must exist; errors point into the manifest."""
    for i, name in enumerate(suite.tasks):
        if name not in reg.tasks:
            raise SpecError(suite.path, f"tasks[{i}]", str(UnknownNameError("task", name, reg.tasks)))
    for i, name in enumerate(suite.optimizers):
        if name not in reg.optimizers:
            raise SpecError(
                suite.path, f"optimizers[{i}]", str(UnknownNameError("optimizer", name, reg.optimizers))
            )
    for name in suite.grids:
        if name not in reg.optimizers:
            raise SpecError(suite.path, f"grids.{name}", str(UnknownNameError("optimizer", name, reg.optimizers)))


def canonical_json(obj: Any) -> str:
    """Stable JSON for hashing and storing configs (sorted keys, repr-exact floats)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)
