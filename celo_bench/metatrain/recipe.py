"""The user-facing recipe: one architecture, its phases, and the outer learning-rate sweep.

:func:`meta_train` runs Celo's two phases in one call (phase 1 into ``OUT/phase1``,
phase 2 from its result into ``OUT``) unless a phase is named; every other architecture
is trained jointly into ``OUT``. ``OUT/theta.state`` is always the final checkpoint.

:func:`select_best` applies the sweep's selection rule to the checkpoints of one run.
:func:`sweep` is the paper's outer learning-rate sweep (5 rates x 3 seeds, addendum of
Celo (Moudgil et al., arXiv:2501.12670)). **Selection rule:** every checkpoint saved by the final phase of
every (rate, seed) run is scored with the held-out meta-validation loss of
:mod:`celo_bench.metatrain.validation`; the checkpoint with the lowest score wins (ties:
the earlier rate, seed and step in sweep order). It is copied to ``OUT/best`` with its
card, and ``OUT/sweep.json`` lists every score.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from celo_bench import fileio
from celo_bench.errors import CeloBenchError
from celo_bench.metatrain import artifacts
from celo_bench.metatrain.config import (
    OUTER_LR_GRID,
    SWEEP_SEEDS,
    MetaTrainConfig,
    phase2_iterations,
    preset_config,
)
from celo_bench.metatrain.phases import TWO_PHASE, check_phase
from celo_bench.metatrain.tasks import build_family
from celo_bench.metatrain.trainer import (
    MetaTrainer,
    RunResult,
    learned_entry,
    load_init,
    make_opt_fn,
)
from celo_bench.metatrain.validation import meta_validation_loss

PhaseCallback = Callable[[str, MetaTrainConfig], None]


def default_out(arch: str, preset: str, seed: int) -> Path:
    return Path("metatrain") / f"{arch}-{preset}-seed{seed}"


def plan(
    arch: str,
    *,
    phase: str | None = None,
    preset: str = "paper",
    init: str | None = None,
    outer_iterations: int | None = None,
    outer_lr: float | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    tasks: Sequence[str] | None = None,
) -> list[tuple[MetaTrainConfig, Path]]:
    """The (config, output folder) of each phase to run, validated before any work."""
    learned_entry(arch)
    out = Path(out) if out is not None else default_out(arch, preset, seed)
    artifacts.check_writable(out)
    common = dict(outer_lr=outer_lr, seed=seed, tasks=tuple(tasks) if tasks else None)
    if phase is None and arch in TWO_PHASE:
        p1 = preset_config(arch, preset, phase="1", init=init, outer_iterations=outer_iterations, **common)
        n2 = outer_iterations if outer_iterations is not None else phase2_iterations(preset)
        p2 = preset_config(arch, preset, phase="2", init=str(out / "phase1"), outer_iterations=n2, **common)
        return [(p1, out / "phase1"), (p2, out)]
    phase = phase or "joint"
    check_phase(arch, phase)
    if arch == "celo" and phase == "2" and not init:
        raise CeloBenchError(
            "celo phase 2 trains the scheduler on top of a phase-1 MLP: pass --init PHASE1_DIR "
            "(or omit --phase to run both phases)"
        )
    if init is not None and not Path(init).expanduser().exists():
        raise CeloBenchError(f"--init {init} does not exist")
    cfg = preset_config(arch, preset, phase=phase, init=init, outer_iterations=outer_iterations, **common)
    return [(cfg, out)]


def meta_train(
    arch: str,
    *,
    on_phase: PhaseCallback | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    **options: Any,
) -> list[RunResult]:
    """Run every phase of :func:`plan`; returns their results (the last one is final)."""
    results = []
    for cfg, out in plan(arch, **options):
        if on_phase is not None:
            on_phase(cfg.phase, cfg)
        results.append(MetaTrainer(cfg, out).run(on_step))
    return results


def sweep(
    arch: str,
    *,
    out: str | Path,
    lrs: Sequence[float] = OUTER_LR_GRID,
    seeds: Sequence[int] = SWEEP_SEEDS,
    on_run: Callable[[float, int], None] | None = None,
    on_phase: PhaseCallback | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    **options: Any,
) -> dict:
    """The outer-LR sweep and its selection (module docstring); returns the sweep summary."""
    out = Path(out)
    for key in ("outer_lr", "seed", "out"):
        if options.get(key) not in (None, 0):
            raise CeloBenchError(f"--sweep sets {key.replace('_', '-')} itself; do not pass it")
        options.pop(key, None)
    rows, final_cfg = [], None
    for lr in lrs:
        for seed in seeds:
            run_out = out / f"lr{lr:g}-seed{seed}"
            if on_run is not None:
                on_run(lr, seed)
            results = meta_train(arch, outer_lr=lr, seed=seed, out=run_out, on_phase=on_phase,
                                 on_step=on_step, **options)
            final_cfg = plan(arch, outer_lr=lr, seed=seed, out=run_out, **options)[-1][0]
            rows += [{"outer_lr": lr, "seed": seed, **r}
                     for r in score_checkpoints(arch, final_cfg, results[-1].out)]
    return _keep_best(rows, out, final_cfg, {"outer_lrs": list(lrs), "seeds": list(seeds)}, "sweep.json")


def select_best(arch: str, *, out: str | Path | None = None, **options: Any) -> dict:
    """One run's selection: score every checkpoint of its final phase, copy the best to OUT/best.

    The same rule as :func:`sweep` without the rate and seed axes: the checkpoint with the
    lowest held-out meta-validation loss (ties: the earlier step). PES estimates are noisy,
    so the last checkpoint is not always the best one.
    """
    cfg, run_out = plan(arch, out=out, **options)[-1]
    return _keep_best(score_checkpoints(arch, cfg, run_out), run_out, cfg, None, "selection.json")


def score_checkpoints(arch: str, cfg: MetaTrainConfig, run_out: Path) -> list[dict]:
    """``{"step", "checkpoint", "meta_validation_loss", ...}`` for every saved checkpoint."""
    folders = sorted((Path(run_out) / "checkpoints").glob("[0-9]*"))
    if not folders:
        raise CeloBenchError(f"{run_out} has no checkpoints to score; run `celo-bench meta-train` first")
    family = build_family(cfg.tasks, image_size=cfg.image_size, hidden=cfg.hidden,
                          batch_size=cfg.batch_size, reparam_range=None)
    make_opt = make_opt_fn(arch, cfg.phase)
    return [{"step": int(folder.name), "checkpoint": str(folder),
             **meta_validation_loss(family, make_opt, load_init(arch, folder), horizon=cfg.val_horizon,
                                    instances=cfg.val_instances, every=cfg.val_every)}
            for folder in folders]


def _keep_best(rows: list[dict], out: Path, cfg: MetaTrainConfig, sweep_axes: dict | None,
               summary_name: str) -> dict:
    """Copy the lowest-scoring checkpoint of `rows` to ``out/best`` (card updated), write the summary."""
    best = min(rows, key=lambda r: r["meta_validation_loss"])
    best_dir = out / "best"
    with fileio.staged_folder(best_dir) as staged:  # swapped in whole: never half a checkpoint
        shutil.copytree(best["checkpoint"], staged, dirs_exist_ok=True)
        card = _read_json(staged / artifacts.CARD_JSON)
        card.update({"meta_validation_loss": best["meta_validation_loss"], "selected_by": RULE,
                     "selected_step": best["step"]})
        if sweep_axes is not None:
            card["sweep"] = sweep_axes
        artifacts.write_json(staged / artifacts.CARD_JSON, card)
        (staged / artifacts.CARD_MD).write_text(artifacts.card_markdown(card))
    summary = {"rule": RULE, "best": best, "best_checkpoint": str(best_dir / "theta.state"),
               "runs": rows, "validation": {"horizon": cfg.val_horizon,
                                            "instances_per_task": cfg.val_instances,
                                            "every": cfg.val_every}}
    artifacts.write_json(out / summary_name, summary)
    return summary


RULE = ("lowest held-out meta-validation loss (mean normalised outer_valid loss over a "
        "val_horizon-step run of fixed, unaugmented task instances) over every checkpoint of "
        "the final phase of every run (every (outer_lr, seed) of a sweep); ties go to the "
        "earlier rate, seed, step")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


__all__ = ["RULE", "default_out", "meta_train", "plan", "score_checkpoints", "select_best", "sweep"]
