"""What each architecture trains in each phase, and the outer optimizer that respects it.

Celo is meta-trained in two phases (Celo (Moudgil et al., arXiv:2501.12670)):

- phase 1 (``celo_phase1``): the factory runs with ``train_phase=1`` (the scheduler's
  ``lr_mult`` is not applied) and only ``ff_mod_stack`` (the update-rule MLP) learns;
  ``lstm_init_state`` and ``rnn_params`` are frozen;
- phase 2 (``celo``): ``train_phase=2``, the MLP is frozen and only the scheduler learns,
  starting from the phase-1 meta-parameters (``--init``).

Every other architecture (and Celo with ``--phase joint``, the paper's ablation) trains
all its meta-parameters jointly.

Freezing: the reference masks meta-gradients by key-path substring and still lets AdamW's
weight decay shrink the frozen leaves (~0.3% over 100k steps). Here frozen leaves receive
exactly zero update (``optax.multi_transform`` with ``set_to_zero``) and are not perturbed,
so a phase leaves them bit-for-bit untouched.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

from celo_bench.errors import CeloBenchError

TWO_PHASE = ("celo",)
"""Architectures with the two-phase recipe."""

FROZEN: dict[tuple[str, str], tuple[str, ...]] = {
    ("celo", "1"): ("lstm_init_state", "rnn_params"),
    ("celo", "2"): ("ff_mod_stack",),
}
"""(architecture, phase) -> key-path substrings of frozen meta-parameters."""

FACTORY_KWARGS: dict[tuple[str, str], dict[str, Any]] = {
    ("celo", "1"): {"train_phase": 1},
    ("celo", "2"): {"train_phase": 2},
    ("celo", "joint"): {"train_phase": 2},
}
"""(architecture, phase) -> extra keyword arguments of the optimizer factory."""


def check_phase(arch: str, phase: str) -> None:
    """Raise a clear error for a phase the architecture does not have."""
    if phase in ("1", "2") and arch not in TWO_PHASE:
        raise CeloBenchError(
            f"--phase {phase} exists only for {', '.join(TWO_PHASE)} (two-phase recipe); "
            f"'{arch}' is meta-trained jointly: omit --phase"
        )
    if phase not in ("1", "2", "joint"):
        raise CeloBenchError(f"--phase must be 1, 2 or joint, got '{phase}'")


def factory_kwargs(arch: str, phase: str) -> dict[str, Any]:
    return dict(FACTORY_KWARGS.get((arch, phase), {}))


def path_name(path: tuple) -> str:
    """A key path as ``a/b/c`` text (dict keys, sequence indices and attribute names)."""
    parts = []
    for k in path:
        parts.append(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))))
    return "/".join(parts)


def trainable_mask(arch: str, phase: str, theta: Any) -> Any:
    """A theta-shaped tree of bools: False where the key path contains a frozen name."""
    frozen = FROZEN.get((arch, phase), ())
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not any(f in path_name(path) for f in frozen), theta
    )


def outer_optimizer(lr: float, weight_decay: float, mask: Any) -> optax.GradientTransformation:
    """AdamW(lr, weight_decay) on trainable leaves, exactly zero updates on frozen ones."""
    labels = jax.tree_util.tree_map(lambda m: "train" if m else "frozen", mask)
    return optax.multi_transform(
        {"train": optax.adamw(lr, weight_decay=weight_decay), "frozen": optax.set_to_zero()},
        labels,
    )


__all__ = ["FACTORY_KWARGS", "FROZEN", "TWO_PHASE", "check_phase", "factory_kwargs",
           "outer_optimizer", "trainable_mask"]
