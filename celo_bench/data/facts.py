"""Dataset facts (classes, shapes, vocabulary) known without reading the data.

Parameter counts and model construction need only these, so ``list tasks`` works for
paper tasks before their data is prepared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from celo_bench.errors import UnknownNameError

FACTS: dict[str, Callable[..., Mapping[str, Any]]] = {}
"""Dataset name -> info(**options). Datasets without an entry are loaded to learn their facts."""


def register_facts(name: str, fn: Callable[..., Mapping[str, Any]]) -> None:
    FACTS[name] = fn


def dataset_info(name: str, options: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """The registered facts of dataset `name` with `options`.

    :func:`celo_bench.data.dataset_info` also answers for datasets without registered facts
    (by loading them).

    Raises:
      UnknownNameError: no facts are registered for `name`.
    """
    if name not in FACTS:
        raise UnknownNameError("dataset with registered facts", name, FACTS)
    return FACTS[name](**dict(options or {}))
