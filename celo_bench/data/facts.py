"""Dataset facts (classes, shapes, vocabulary) known without reading the data.

Parameter counts and model construction need only these, so ``list tasks`` works for
paper tasks before their data is prepared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

FACTS: dict[str, Callable[..., Mapping[str, Any]]] = {}
"""Dataset name -> info(**options). Datasets without an entry are loaded to learn their facts
(:func:`celo_bench.data.dataset_info` answers for both)."""


def register_facts(name: str, fn: Callable[..., Mapping[str, Any]]) -> None:
    FACTS[name] = fn
