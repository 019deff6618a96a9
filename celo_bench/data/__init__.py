"""Datasets as compact on-device arrays, looked up by name.

Every loader returns a :class:`~celo_bench.task.Dataset` with the splits ``train``,
``inner_valid``, ``outer_valid`` and ``test``. Offline datasets (``digits``, ``pydoc_text``)
ship with installed packages; paper datasets (``fashion_mnist``, ``mnist``, ``cifar10``,
``cifar100``, ``lm1b_32k``, ``wikipedia_en_32k``) are read from the cache that
``celo-bench data prepare`` fills, or (images) from a folder of their original files.
Their facts (classes, shapes, vocabulary) are registered in :mod:`celo_bench.data.facts`
so models can be built without the data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from celo_bench.data import cache, images, shipped, sources, synthetic, text
from celo_bench.data._offline import load_digits, load_pydoc_text
from celo_bench.data.facts import FACTS, register_facts
from celo_bench.data.sources import RECIPES
from celo_bench.errors import DataMissingError, UnknownNameError
from celo_bench.task import Dataset

Loader = Callable[..., Dataset]

LOADERS: dict[str, Loader] = {
    "digits": load_digits,
    "pydoc_text": load_pydoc_text,
    **{name: functools.partial(shipped.load, name) for name in shipped.SHIPPED},
}
"""Dataset name -> loader(**options). Paper datasets register themselves here too."""


def register(name: str, loader: Loader) -> None:
    LOADERS[name] = loader


for _name in shipped.SHIPPED:
    register_facts(_name, functools.partial(shipped.facts, _name))

for _name, _recipe in RECIPES.items():
    _module = images if _recipe.kind == "image" else text
    register(_name, _module.make_loader(_name))
    register_facts(_name, _module.make_facts(_name))

for _name, _loader in list(LOADERS.items()):  # `--data synthetic`: same shapes, random values
    register(synthetic.synthetic_name(_name), synthetic.make_loader(_name, _loader))
    if _name in RECIPES:
        register_facts(synthetic.synthetic_name(_name), synthetic.make_facts(_name, FACTS[_name]))


def require(name: str, options: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`DataMissingError` now, cheaply, if dataset `name` cannot be loaded.

    For a runner's pre-flight check: reads only manifests and folder listings. Offline
    datasets always pass.
    """
    if name not in RECIPES:
        return
    manifest = cache.read_manifest(name)
    if RECIPES[name].kind == "image":
        if manifest is None and sources.find_local(name) is None:
            raise DataMissingError(sources.missing_message(name))
        return
    if manifest is None:
        raise DataMissingError(sources.missing_message(name))
    seq_len = int(dict(options or {}).get("seq_len", text.DEFAULT_MAX_SEQ_LEN))
    if int(manifest.get("max_seq_len", 0)) < seq_len:
        raise DataMissingError(
            f"dataset '{name}' is cached with sequences of {manifest.get('max_seq_len')} tokens, "
            f"the task needs {seq_len}: run `celo-bench data prepare {name} --max-seq-len {seq_len} --force`"
        )


def load(name: str, options: Mapping[str, Any] | None = None) -> Dataset:
    """Load dataset `name` with the task's ``[data]`` options."""
    if name not in LOADERS:
        raise UnknownNameError("dataset", name, LOADERS)
    return LOADERS[name](**dict(options or {}))


def dataset_info(name: str, options: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """Facts of dataset `name` with `options`: the registered ones, else those of the loaded data.

    Raises:
      UnknownNameError: no dataset `name`.
      DataMissingError: its facts are not registered and its data is not prepared.
    """
    if name in FACTS:
        return FACTS[name](**dict(options or {}))
    return load(name, options).info


__all__ = ["LOADERS", "RECIPES", "dataset_info", "load", "register", "require"]
