"""Task assembly: a :class:`~celo_bench.suite.TaskSpec` becomes a runnable :class:`~celo_bench.task.Task`.

This module sits above the dataset loaders (:mod:`celo_bench.data`), the model families
(:mod:`celo_bench.models`) and the optimizers (:mod:`celo_bench.optimizers`) and is the
only place that joins them: it loads the dataset, resolves the names in a task's
``[model]`` table into objects (the ``lopt`` family's inner learned optimizer) and builds
the model. Those layers import only the contracts of :mod:`celo_bench.task`, never this
module, so imports point one way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celo_bench import data, models, optimizers
from celo_bench.errors import SpecError
from celo_bench.models import LearnedOptimizer
from celo_bench.suite import TaskSpec, canonical_json
from celo_bench.task import Model, Task

INNER_OPTIMIZER_MODEL_KINDS = frozenset({"lopt"})
"""Model kinds whose ``[model]`` table names a learned optimizer (``optimizer`` and
``optimizer_options``), handed to the builder as a :class:`~celo_bench.models.LearnedOptimizer`."""


def learned_optimizer(name: str, options: Mapping[str, Any] | None = None) -> LearnedOptimizer:
    """The registered learned-optimizer factory `name`, bound to its keyword `options`.

    Raises:
      UnknownNameError: no factory is registered under `name`.
      SpecError: the factory is hand-crafted (it has no meta-parameters to train).
    """
    entry = optimizers.factory(name)
    if not entry.learned or entry.init_meta_params is None:
        learned = sorted(n for n, e in optimizers.REGISTERED_FACTORIES.items() if e.learned and e.init_meta_params)
        raise SpecError("[model]", "optimizer", f"'{name}' is not a learned optimizer with meta-parameters; "
                        f"choose one of: {', '.join(learned)}")
    kwargs = dict(options or {})

    def make(meta_params: Any, num_steps: int):
        return entry.fn(meta_params, num_steps=num_steps, **kwargs)

    return LearnedOptimizer(name=name, init_meta_params=entry.init_meta_params, make=make)


def build_model(model_cfg: Mapping[str, Any], info: Mapping[str, Any], *, batch_size: int) -> Model:
    """The model of a task's ``[model]`` table, with the names in it resolved.

    Args:
      model_cfg: the ``[model]`` table (``kind`` and the family's options).
      info: dataset facts (``num_classes``, ``image_shape``, ``vocab_size``...).
      batch_size: examples per step.

    Raises:
      SpecError, UnknownNameError: an unknown kind, bad options or an unknown optimizer.
    """
    cfg = dict(model_cfg)
    if cfg.get("kind") in INNER_OPTIMIZER_MODEL_KINDS and isinstance(cfg.get("optimizer"), str):
        cfg["optimizer"] = learned_optimizer(cfg["optimizer"], cfg.pop("optimizer_options", None))
    return models.build(cfg, info, batch_size=batch_size)


def build_model_only(spec: TaskSpec, info: Mapping[str, Any]) -> Model:
    """Build the model of `spec` from dataset facts alone (used for parameter counts)."""
    return build_model(spec.model, info, batch_size=spec.batch_size)


_TASKS: dict[str, Task] = {}


def build_task(spec: TaskSpec) -> Task:
    """Load the dataset and build the model of `spec` (cached per resolved spec).

    Raises:
      DataMissingError: the dataset is not prepared (the message says how to prepare it).
      SpecError, UnknownNameError: as :func:`build_model`.
    """
    key = canonical_json(spec.resolved())
    if key not in _TASKS:
        dataset = data.load(spec.dataset, spec.data)
        _TASKS[key] = Task(spec=spec, dataset=dataset, model=build_model_only(spec, dataset.info))
    return _TASKS[key]


__all__ = ["INNER_OPTIMIZER_MODEL_KINDS", "build_model", "build_model_only", "build_task", "learned_optimizer"]
