"""Spec loading and validation: tasks, optimizers and suites are TOML data, not code.

Layout (shipped inside the wheel under ``celo_bench/_specs``; read from the source tree
in an editable install)::

    tasks/<tier>/<task>.toml     one task each
    tasks/suites/<suite>.toml    suite manifests (tasks x optimizers x seeds x grids)
    baselines/<name>.toml        paper optimizers (hand-crafted and learned)
    baselines/extra/<name>.toml  optimizers beyond the paper (kind "extra")
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pydantic
from pydantic import Field
from typing_extensions import TypedDict

from celo_bench._schema import (
    SPEC_CONFIG,
    FiniteFloat,
    Grid,
    KeyProblem,
    PositiveInt,
    build,
    read_toml,
)
from celo_bench.errors import SpecError, UnknownNameError
from celo_bench.strategy import SETTINGS as execution_settings

OptimizerKind = Literal["handcrafted", "learned", "extra", "submission"]
SelectionRule = Literal["mean_over_seeds", "per_seed"]
OPTIMIZER_KINDS: tuple[str, ...] = get_args(OptimizerKind)
SELECTION_RULES: tuple[str, ...] = get_args(SelectionRule)
KIND_LABELS = {"handcrafted": "hand-crafted", "learned": "learned", "extra": "extra",
               "submission": "submission"}


Strategy = pydantic.with_config(SPEC_CONFIG)(TypedDict(  # type: ignore[misc]
    "Strategy", {s.name: Literal[s.choices] for s in execution_settings}, total=False,  # type: ignore[valid-type]
))
Strategy.__doc__ = """``[strategy]`` of a task: how the engine runs it when measured defaults do not fit; its
keys are the execution settings (:data:`celo_bench.strategy.SETTINGS`, e.g. ``steps``, ``runs``)."""


@pydantic.dataclasses.dataclass(frozen=True, config=SPEC_CONFIG)
class TaskSpec:
    """A training problem: model, dataset, batch size, horizon and evaluation cadence.

    Raises pydantic's ValidationError when built directly; :func:`parse_task` turns it
    into a SpecError naming the file and key.
    """

    name: str
    family: str
    dataset: str
    batch_size: PositiveInt
    steps: PositiveInt = 2000
    _: dataclasses.KW_ONLY
    model: dict[str, Any]
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval_every: PositiveInt = 10
    eval_batches: PositiveInt = 5
    last_eval_batches: PositiveInt = 10
    description: str = ""
    note: str = ""
    horizon_reason: str = ""  # why `steps` is below the paper's 2,000, where it is
    strategy: Strategy = dataclasses.field(default_factory=dict)
    path: str = ""

    @pydantic.field_validator("model")
    @classmethod
    def _model_kind(cls, model: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(model.get("kind"), str):
            raise KeyProblem("kind", "is required: the model family to build (e.g. 'mlp')")
        return model

    @pydantic.model_validator(mode="after")
    def _whole_evals(self) -> TaskSpec:
        if self.steps % self.eval_every != 0:
            raise KeyProblem("steps", f"{self.steps} is not a multiple of eval_every={self.eval_every}")
        return self

    def resolved(self) -> dict[str, Any]:
        """Everything that changes the numbers (the path does not)."""
        d = asdict(self)
        d.pop("path")
        for prose in ("description", "note", "horizon_reason"):
            d.pop(prose)
        return d


@pydantic.dataclasses.dataclass(frozen=True, config=SPEC_CONFIG)
class CheckpointTable:
    """``[checkpoint]`` of a learned optimizer spec (stored in :class:`OptimizerSpec` as a dict)."""

    source: str
    sha256: str = ""
    note: str = ""
    label: str = ""
    make: str = ""


@pydantic.dataclasses.dataclass(frozen=True, config=SPEC_CONFIG)
class OptimizerSpec:
    """An optimizer: a factory name, fixed defaults, a tuning grid, and (if learned) a checkpoint."""

    name: str
    kind: OptimizerKind
    factory: str
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    grid: Grid = dataclasses.field(default_factory=dict)
    reference: str = ""
    needs_loss: bool = False
    checkpoint: dict[str, str] = dataclasses.field(default_factory=dict)
    meta_training: str = ""
    description: str = ""
    path: str = ""

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> OptimizerSpec:
        if self.kind == "learned" and not self.checkpoint:
            raise KeyProblem("checkpoint", "learned optimizers need a [checkpoint] table with a source")
        for k in self.grid:
            if k in self.defaults:
                raise KeyProblem(f"grid.{k}", "is also set in [defaults]; tune it or fix it, not both")
        return self

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


Names = Annotated[tuple[str, ...], Field(min_length=1, strict=False)]
Interval = Annotated[tuple[FiniteFloat, FiniteFloat], Field(strict=False)]


@pydantic.dataclasses.dataclass(frozen=True, config=SPEC_CONFIG)
class Agreement:
    """``[agreement]`` of a suite: how far its ranking agrees with another tier's, as measured
    by ``celo-bench compare-suites <suite> <against>`` (Kendall's tau-b of the IQM rankings with
    95% bootstrap CIs). Shown in the header of ``leaderboard.md`` and ``index.html``; not part
    of any run key."""

    kendall_tau_final_loss: FiniteFloat
    kendall_tau_final_loss_ci: Interval
    kendall_tau_speedup: FiniteFloat
    kendall_tau_speedup_ci: Interval
    measured: str | datetime.date  # the date of the measurement (a TOML date or a string)
    against: str  # the suite compared with, e.g. "fmnist"
    fingerprint: str = ""  # that suite's results fingerprint (`celo-bench score --suite <against>`)
    note: str = ""  # one line: what this tier can and cannot tell a reader


@pydantic.dataclasses.dataclass(frozen=True, config=SPEC_CONFIG)
class SuiteSpec:
    """A grid manifest: which tasks, optimizers, seeds, horizon and grids, and the scoring rule."""

    name: str
    version: str
    tasks: Names
    optimizers: Names
    seeds: PositiveInt = 3
    steps: PositiveInt | None = None
    grids: dict[str, Grid] = dataclasses.field(default_factory=dict)
    selection: SelectionRule = "mean_over_seeds"
    ema_alpha: Annotated[FiniteFloat, Field(ge=0.0, lt=1.0)] = 0.9
    description: str = ""
    agreement: Agreement | None = None
    path: str = ""


def _check_name(path: Path, table: dict[str, Any]) -> None:
    """The one rule a model cannot check alone: ``name`` equals the file's stem."""
    name = table.get("name")
    if isinstance(name, str) and name != path.stem:
        raise SpecError(path, "name", f"'{name}' must equal the file name '{path.stem}'")


def parse_task(path: Path) -> TaskSpec:
    """Load and validate one task spec (SpecError naming the file and key if malformed)."""
    table = read_toml(path)
    _check_name(path, table)
    return build(TaskSpec, path, table, path=str(path))


def parse_optimizer(path: Path, kind_default: str | None = None) -> OptimizerSpec:
    """Load and validate one optimizer spec; `kind_default` fills a missing ``kind``."""
    table = read_toml(path)
    if kind_default and "kind" not in table:
        table = {**table, "kind": kind_default}
    _check_name(path, table)
    if "checkpoint" in table:  # stored with every key filled: it is part of the run key
        table = {**table, "checkpoint": asdict(build(CheckpointTable, path, table["checkpoint"], "checkpoint"))}
    return build(OptimizerSpec, path, table, path=str(path))


def parse_suite(path: Path) -> SuiteSpec:
    """Load and validate one suite manifest (names are checked against the registry later)."""
    table = read_toml(path)
    _check_name(path, table)
    if isinstance(table.get("agreement"), dict):  # its keys are located as agreement.<key>
        table = {**table, "agreement": build(Agreement, path, table["agreement"], "agreement")}
    return build(SuiteSpec, path, table, path=str(path))


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
