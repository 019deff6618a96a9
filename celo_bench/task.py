"""The runtime task contract: pure init/loss functions plus compact dataset splits.

This module holds only the contracts that the data layer (:class:`Dataset`), the model
families (:class:`Model`), the optimizer registry (:class:`OptimizerBuilder`) and the engine
(:class:`Task`) share; it imports neither of them and no JAX at import time. :mod:`celo_bench.assembly` builds a :class:`Task` from a
:class:`~celo_bench.suite.TaskSpec`. The engine only ever sees this object, so every model
family vmaps and scans the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from celo_bench.suite import TaskSpec

if TYPE_CHECKING:  # the aliases name JAX types; the contracts themselves need no JAX
    import jax
    import optax

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


@runtime_checkable
class OptimizerBuilder(Protocol):
    """What the engine trains a job's runs with: ``builder(hparams) -> optimizer``.

    :func:`celo_bench.optimizers.builder` makes one from an optimizer spec (a registered
    factory, a submission's ``make_optimizer`` included) with the spec's defaults and the run
    horizon bound; the engine (:func:`celo_bench.engine.run_job`) calls it inside the compiled
    program. A bare function ``make(hparams)`` is accepted there too, as a hand-crafted
    builder (no meta-parameters, no program key).
    """

    meta_params: Any
    """A learned optimizer's meta-parameters (a pytree), None for a hand-crafted one. The engine
    passes them into its programs as an input, not as constants, and hands them back as the
    `meta_params` argument."""

    program_key: tuple | None
    """What fixes the programs the builder traces besides its hyper- and meta-parameters'
    values: builders with equal keys (published Celo and the cpu-diet Celo) share compiled
    programs. None: nothing is shared."""

    def __call__(self, hparams: Mapping[str, Any], meta_params: Any = None) -> optax.GradientTransformationExtraArgs:
        """The optimizer for hyper-parameters `hparams` (name -> possibly traced scalar) and
        `meta_params` (None: :attr:`meta_params`)."""
        ...


def count_params(model: Model) -> int:
    """Number of trainable scalars, computed from shapes only (no FLOPs, no data)."""
    import jax  # heavy: deferred so that data loaders and planners import the contracts without JAX

    params, _ = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))
