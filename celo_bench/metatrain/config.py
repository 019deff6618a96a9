"""Meta-training settings: one frozen dataclass, three presets, and argument validation.

The ``paper`` preset is the meta-training recipe of Celo (Moudgil et al., arXiv:2501.12670):
truncated PES (antithetic, std 0.01, truncation 50), inner horizons log-uniform in
[100, 2000], random initial iteration offsets up to 2000, 8 task instances per
meta-training task, global reparametrisation augmentation in [1e-3, 1e3], AdamW
(3e-4, weight decay 1e-4), 100k outer iterations per phase with a checkpoint every 5k.

``cpu`` keeps every setting of the estimator (truncation 50, horizons 100-2000, std 0.01,
8 instances per task, augmentation) but trains on the offline 8x8 digits plus the one
paper task whose data installs as a distribution package, 8x8 Fashion-MNIST (used when
present, like every task: the card lists what was missing), for 8,000 outer steps (Celo:
plus 4,000 in phase 2) at the top rate of the paper's sweep, 1e-3, to make up for the 12x
shorter run: under an hour per architecture on two CPU cores. ``smoke`` also
shortens the truncation (10) and the horizons (20-200) and uses outer rate 1e-2, so that a
two-phase Celo run takes a few minutes and its meta-loss visibly falls.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from celo_bench.errors import CeloBenchError

PAPER_TASKS = ("mnist", "fashion_mnist", "svhn", "cifar10")
"""The paper's four meta-training datasets (8x8, greyscale, MLP 64-32-10, batch 64)."""

OUTER_LR_GRID = (3e-5, 5e-5, 1e-4, 3e-4, 1e-3)
"""The paper's outer learning-rate sweep (Celo (Moudgil et al., arXiv:2501.12670)), times 3 seeds."""
SWEEP_SEEDS = (0, 1, 2)

META_INITS = ("reference", "velo_unit_controls")
"""Starting points of meta-training (:mod:`celo_bench.metatrain.inits`, which implements them)."""


@dataclass(frozen=True)
class MetaTrainConfig:
    """Everything that determines a meta-training run (and so its resumable state).

    ``phase`` is ``"joint"`` (train every meta-parameter), ``"1"`` (Celo: the update-rule MLP
    only, scheduler off) or ``"2"`` (Celo: the scheduler only, MLP frozen).
    """

    arch: str
    phase: str = "joint"
    preset: str = "paper"
    tasks: tuple[str, ...] = PAPER_TASKS
    instances_per_task: int = 8
    truncation: int = 50
    min_horizon: int = 100
    max_horizon: int = 2000
    initial_offset: int = 2000
    std: float = 0.01
    reparam_range: tuple[float, float] | None = (1e-3, 1e3)
    outer_iterations: int = 100_000
    outer_lr: float = 3e-4
    weight_decay: float = 1e-4
    checkpoint_every: int = 5_000
    seed: int = 0
    nan_loss_value: float = 20.0
    batch_size: int = 64
    hidden: tuple[int, ...] = (32,)
    image_size: int = 8
    val_horizon: int = 2000
    val_instances: int = 8
    val_every: int = 100
    init: str | None = None
    meta_init: str = "reference"
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def resume_key(self) -> dict:
        """Settings that must match to continue a run (the length of the run may grow)."""
        d = dataclasses.asdict(self)
        for k in ("outer_iterations", "checkpoint_every", "extra", "val_horizon", "val_instances",
                  "val_every"):
            d.pop(k)
        if d["meta_init"] == "reference":  # runs started before the setting existed resume as they were
            d.pop("meta_init")
        return d

    def as_json(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict] = {
    "paper": dict(tasks=PAPER_TASKS, outer_iterations=100_000, checkpoint_every=5_000,
                  phase2_iterations=100_000),
    "cpu": dict(tasks=("digits", "fashion_mnist"), outer_lr=1e-3, outer_iterations=8_000, checkpoint_every=500,
                phase2_iterations=4_000, val_horizon=2000, val_every=100),
    "smoke": dict(tasks=("digits",), truncation=10, min_horizon=20, max_horizon=200,
                  initial_offset=200, outer_lr=1e-2, outer_iterations=300, checkpoint_every=50,
                  phase2_iterations=150, val_horizon=100, val_instances=4, val_every=20),
}
"""Preset -> overrides of :class:`MetaTrainConfig` (plus ``phase2_iterations``, the
length of Celo's second phase when both phases run in one command)."""

ARCH_SETTINGS: dict[str, dict[str, dict]] = {
    "cpu": {
        "adafac_mlp_lopt": dict(outer_lr=1e-2),
        "velo_s": dict(meta_init="velo_unit_controls"),
    },
}
"""Preset -> architecture -> overrides applied on top of the preset (the user's own
options, e.g. ``--outer-lr``, still win); every run's card records them (``arch_settings``).

On the ``cpu`` preset's budget (2,000 outer steps, 50x fewer than the paper's),
AdaFac-MLP-LOpt and VeLO-S did not learn with the preset's settings. Measured
(``docs/metatrain.md``, "Why VeLO-S and AdaFac-MLP-LOpt did not learn (measured)"):

- AdaFac-MLP-LOpt's 197 meta-parameters must move O(1) (its seed-0 draw is an ascent
  method, cos(update, -gradient) = -0.77, as are 5 of 8 draws): at outer rate 1e-3 its
  held-out meta-validation goes 3.24 -> 2.31 in 200 steps, at 1e-2 3.24 -> 0.65 (0.70
  after 600), with the same estimator;
- VeLO-S starts on a saddle (its update is ~1e-10 of the parameters, the PES estimate is
  pure noise): it needs another starting point, not another rate
  (:mod:`celo_bench.metatrain.inits`, ``velo_unit_controls``; at 1e-3: 2.33 -> 0.95 after
  400 steps, while the reference start at 1e-2 stays at 2.29).

The estimator is the same for every architecture; Celo and RNN-MLP-LOpt keep the preset's
settings.
"""


def arch_settings(preset: str, arch: str) -> dict:
    """The per-architecture overrides of `preset` (:data:`ARCH_SETTINGS`), possibly empty."""
    return dict(ARCH_SETTINGS.get(preset, {}).get(arch, {}))


def preset_config(
    arch: str,
    preset: str = "paper",
    *,
    phase: str = "joint",
    **overrides,
) -> MetaTrainConfig:
    """The :class:`MetaTrainConfig` of `preset` for `arch` (its :data:`ARCH_SETTINGS`
    included) with `overrides` (None values are ignored).

    Raises CeloBenchError for an unknown preset or an invalid setting.
    """
    if preset not in PRESETS:
        raise CeloBenchError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    values = {k: v for k, v in PRESETS[preset].items() if k != "phase2_iterations"}
    values.update(arch_settings(preset, arch))
    values.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(values.get("tasks"), list):
        values["tasks"] = tuple(values["tasks"])
    fields = {f.name for f in dataclasses.fields(MetaTrainConfig)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise CeloBenchError(f"unknown meta-training setting(s): {', '.join(unknown)}")
    cfg = MetaTrainConfig(arch=arch, phase=phase, preset=preset, **values)
    validate(cfg)
    return cfg


def phase2_iterations(preset: str) -> int:
    return int(PRESETS[preset]["phase2_iterations"])


def validate(cfg: MetaTrainConfig) -> None:
    """Reject settings that cannot run, with a message that says which and why."""

    def bad(msg: str) -> None:
        raise CeloBenchError(f"meta-train: {msg}")

    if cfg.phase not in ("joint", "1", "2"):
        bad(f"--phase must be 1, 2 or joint, got '{cfg.phase}'")
    if cfg.outer_iterations < 1:
        bad(f"--outer-iterations must be >= 1, got {cfg.outer_iterations}")
    if not (math.isfinite(cfg.outer_lr) and cfg.outer_lr > 0):
        bad(f"--outer-lr must be a positive number, got {cfg.outer_lr}")
    if cfg.checkpoint_every < 1:
        bad(f"checkpoint_every must be >= 1, got {cfg.checkpoint_every}")
    if cfg.seed < 0:
        bad(f"--seed must be >= 0, got {cfg.seed}")
    if not cfg.tasks:
        bad("no meta-training tasks given")
    if cfg.instances_per_task < 1 or cfg.truncation < 1:
        bad("instances_per_task and truncation must be >= 1")
    if not 1 <= cfg.min_horizon <= cfg.max_horizon:
        bad(f"horizons must satisfy 1 <= min <= max, got [{cfg.min_horizon}, {cfg.max_horizon}]")
    if cfg.initial_offset < 0 or cfg.std <= 0:
        bad("initial_offset must be >= 0 and std > 0")
    if cfg.meta_init not in META_INITS:
        bad(f"meta_init must be one of {', '.join(META_INITS)}, got '{cfg.meta_init}'")
    if cfg.reparam_range is not None:
        lo, hi = cfg.reparam_range
        if not 0 < lo <= hi:
            bad(f"reparam_range must satisfy 0 < low <= high, got {cfg.reparam_range}")


__all__ = ["ARCH_SETTINGS", "META_INITS", "OUTER_LR_GRID", "PAPER_TASKS", "PRESETS", "SWEEP_SEEDS",
           "MetaTrainConfig", "arch_settings", "phase2_iterations", "preset_config", "validate"]
