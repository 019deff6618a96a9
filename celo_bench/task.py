"""The runtime task contract: pure init/loss functions plus compact dataset splits.

A :class:`Task` is built from a :class:`~celo_bench.suite.TaskSpec` by looking up its
dataset (``celo_bench.data``) and its model family (``celo_bench.models``). The engine
only ever sees this object, so every model family vmaps and scans the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from celo_bench.suite import TaskSpec
from celo_bench.types import Batch, ModelState, Params, PRNGKey

EVAL_SPLITS = ("train", "outer_valid", "test")
"""Splits evaluated every ``eval_every`` steps (the reference code's choice)."""


@dataclass(frozen=True)
class Dataset:
    """Named splits of equal-keyed arrays (first axis = examples) and facts about them.

    ``splits[name][field]`` is a NumPy array; images are uint8 and tokens integer, so a
    whole dataset fits on the device and batches are gathered by index inside the program.
    ``info`` carries what models need (``num_classes``, ``image_shape``, ``vocab_size``...).
    """

    name: str
    splits: Mapping[str, Mapping[str, np.ndarray]]
    info: Mapping[str, Any]

    def size(self, split: str) -> int:
        return len(next(iter(self.splits[split].values())))


@dataclass(frozen=True)
class Model:
    """A model family instance: ``init(key) -> (params, state)``, ``loss(params, state, key, batch)``."""

    init: Callable[[PRNGKey], tuple[Params, ModelState]]
    loss: Callable[[Params, ModelState, PRNGKey, Batch], tuple[jax.Array, ModelState]]


@dataclass(frozen=True)
class Task:
    """Everything the engine needs to train one task."""

    spec: TaskSpec
    dataset: Dataset
    model: Model

    @property
    def init(self) -> Callable[[PRNGKey], tuple[Params, ModelState]]:
        return self.model.init

    @property
    def loss(self) -> Callable[[Params, ModelState, PRNGKey, Batch], tuple[jax.Array, ModelState]]:
        return self.model.loss

    def n_params(self) -> int:
        return count_params(self.model)


def count_params(model: Model) -> int:
    """Number of trainable scalars, computed from shapes only (no FLOPs, no data)."""
    params, _ = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def build_model_only(spec: TaskSpec, info: Mapping[str, Any]) -> Model:
    """Build the model of `spec` from dataset facts alone (used for parameter counts)."""
    from celo_bench import models

    return models.build(spec.model, info, batch_size=spec.batch_size)


_TASKS: dict[str, Task] = {}


def build_task(spec: TaskSpec) -> Task:
    """Load the dataset and build the model of `spec` (cached per resolved spec)."""
    from celo_bench import data
    from celo_bench.suite import canonical_json

    key = canonical_json(spec.resolved())
    if key not in _TASKS:
        dataset = data.load(spec.dataset, spec.data)
        _TASKS[key] = Task(spec=spec, dataset=dataset, model=build_model_only(spec, dataset.info))
    return _TASKS[key]
