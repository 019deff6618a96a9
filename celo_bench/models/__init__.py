"""Model families, looked up by the ``model.kind`` key of a task spec.

Each builder takes the task's ``[model]`` table, the dataset facts and the batch size,
and returns a :class:`~celo_bench.task.Model` of pure functions, so runs vmap and scan.
Models never import the optimizers: the ``lopt`` family receives its inner learned optimizer
as a :class:`LearnedOptimizer`, built by :mod:`celo_bench.assembly`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from celo_bench.errors import SpecError, UnknownNameError
from celo_bench.models import conv, lopt_task, mlp, rnn_lm, transformer_lm, vit
from celo_bench.models.lopt_task import LearnedOptimizer
from celo_bench.task import Model

Builder = Callable[..., Model]

BUILDERS: dict[str, Builder] = {
    "mlp": mlp.build_classifier,
    "mlp_autoencoder": mlp.build_autoencoder,
    "conv": conv.build_convnet,
    "vit": vit.build_vit,
    "transformer_lm": transformer_lm.build_transformer_lm,
    "lstm_lm": rnn_lm.build_lstm_lm,
    "lopt": lopt_task.build_lopt_task,
}


def register(kind: str, builder: Builder) -> None:
    BUILDERS[kind] = builder


def build(model_cfg: Mapping[str, Any], info: Mapping[str, Any], *, batch_size: int) -> Model:
    """Build the model described by a task's ``[model]`` table."""
    cfg = dict(model_cfg)
    kind = cfg.pop("kind")
    if kind not in BUILDERS:
        raise UnknownNameError("model kind", kind, BUILDERS)
    try:
        return BUILDERS[kind](info=info, batch_size=batch_size, **cfg)
    except TypeError as e:  # an unknown or missing option in [model]
        raise SpecError("[model]", kind, f"bad options for model kind '{kind}': {e}") from None


__all__ = ["BUILDERS", "LearnedOptimizer", "build", "register"]
