"""Datasets as compact on-device arrays, looked up by name.

Every loader returns a :class:`~celo_bench.task.Dataset` with the splits ``train``,
``inner_valid``, ``outer_valid`` and ``test``. Offline datasets (``digits``, ``pydoc_text``)
ship with installed packages; paper datasets are read from the cache that
``celo-bench data prepare`` fills.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from celo_bench.data._offline import load_digits, load_pydoc_text
from celo_bench.errors import UnknownNameError
from celo_bench.task import Dataset

Loader = Callable[..., Dataset]

LOADERS: dict[str, Loader] = {
    "digits": load_digits,
    "pydoc_text": load_pydoc_text,
}
"""Dataset name -> loader(**options). Paper datasets register themselves here too."""


def register(name: str, loader: Loader) -> None:
    LOADERS[name] = loader


def load(name: str, options: Mapping[str, Any] | None = None) -> Dataset:
    """Load dataset `name` with the task's ``[data]`` options."""
    if name not in LOADERS:
        raise UnknownNameError("dataset", name, LOADERS)
    return LOADERS[name](**dict(options or {}))


__all__ = ["LOADERS", "load", "register"]
