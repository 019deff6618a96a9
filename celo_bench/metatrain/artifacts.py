"""Files a meta-training run leaves behind: checkpoints with their cards, the curve, the plot.

Layout of an output folder ``OUT``::

    OUT/theta.state, OUT/card.json, OUT/card.md      latest checkpoint (the final one at the end)
    OUT/checkpoints/<step>/theta.state (+ cards)      every `checkpoint_every` outer steps
    OUT/meta_loss.json, OUT/meta_loss.png             per-step meta-loss and its plot
    OUT/resume/                                       outer state for an identical continuation
    OUT/init/theta.state                              the starting meta-parameters (before/after)

``theta.state`` is the published flax-msgpack meta-parameter format, so any checkpoint
folder loads with ``celo_bench.optimizers.build(arch, num_steps=T, checkpoint=folder)``.
A card says what produced the weights, honestly labelled ``meta-trained here (<preset>
diet)`` so they are never mistaken for the authors' published weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from celo_bench import fileio
from celo_bench.optimizers import checkpoint as ckpt
from celo_bench.paths import require_writable

CARD_JSON, CARD_MD, CURVE_JSON, CURVE_PNG = "card.json", "card.md", "meta_loss.json", "meta_loss.png"

CHANCE_LOSS = math.log(10)
"""Held-out meta-validation loss of a predictor that has learned nothing on the 10-class tasks."""
META_VALIDATION_TARGET = CHANCE_LOSS / 2
"""What counts as having learned: a held-out meta-validation loss of at most half of chance (1.151)."""


def window_means(losses: np.ndarray | list[float]) -> tuple[float | None, float | None]:
    """Means of the first and last 10% of a meta-loss curve (at least one step each).

    Single PES meta-losses are noisy (random episode positions, horizons and scales), so
    the start and the end of a run are compared over windows.
    """
    a = np.asarray(losses, np.float64)
    if a.size == 0:
        return None, None
    w = max(1, a.size // 10)
    return float(a[:w].mean()), float(a[-w:].mean())


def check_writable(out: Path, what: str = "meta-training folder",
                   fix: str = "choose another --out or fix its permissions") -> None:
    """Raise one line now if folder `out` could not be created or written (creates nothing).

    Raises:
      CeloBenchError: names the path and the problem.
    """
    require_writable(out, what, f"{fix} (nothing was trained)")


def prior_outer_steps(init: str | Path | None, *, near: Path | None = None) -> int:
    """Outer steps already spent on the starting point `init`: 0 unless it is a meta-training run.

    `init` is a run's folder (or its ``theta.state``) holding ``card.json``, as Celo's phase 2
    starts from ``OUT/phase1``; its card's ``budget_outer_steps`` (else ``outer_step``) counts.
    A relative `init` is looked up in the working folder, then beside `near`. Published
    weights (no card) count 0.
    """
    if not init:
        return 0
    path = Path(init).expanduser()
    candidates = [path] + ([near / path] if near is not None and not path.is_absolute() else [])
    for p in candidates:
        folder = p.parent if p.is_file() else p
        if (folder / CARD_JSON).is_file():
            card = json.loads((folder / CARD_JSON).read_text())
            return int(card.get("budget_outer_steps", card.get("outer_step", 0)))
    return 0


def label(preset: str) -> str:
    return f"meta-trained here ({preset} diet)"


def write_json(path: Path, obj: Any) -> None:
    """`obj` as indented JSON in `path`, written atomically."""
    fileio.atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def card_markdown(card: dict) -> str:
    """The card as a short human-readable page."""
    est, outer = card["estimator"], card["outer_optimizer"]
    lines = [
        f"# {card['architecture']} meta-parameters: {card['label']}",
        "",
        f"- **Architecture:** `{card['architecture']}` (phase: {card['phase']}, factory options: "
        f"{card['factory_kwargs'] or 'defaults'})",
        f"- **Meta-training tasks:** {', '.join(card['tasks'])} (8x8 greyscale image MLP "
        f"{card['model']}, batch {card['batch_size']})"
        + (f"; not present here: {', '.join(card['tasks_missing'])}" if card["tasks_missing"] else ""),
        f"- **Augmentation:** {card['augmentation']}",
        f"- **Estimator:** truncated PES, antithetic, std {est['std']}, truncation {est['truncation']}, "
        f"horizons log-uniform in [{est['min_horizon']}, {est['max_horizon']}], initial offsets "
        f"< {est['initial_offset']}, {est['instances_per_task']} instances per task, meta-objective: "
        "mean normalised inner training loss",
        f"- **Outer optimizer:** AdamW lr {outer['lr']:g}, weight decay {outer['weight_decay']:g}; "
        f"frozen: {', '.join(card['frozen']) or 'nothing'}",
        f"- **Outer steps:** this checkpoint is step {card['outer_step']} of a {card['outer_iterations']}-step "
        f"run (seed {card['seed']}, preset `{card['preset']}`)"
        + (f", initialised from `{card['init']}`" if card["init"] else "")
        + (f"; budget {card['budget_outer_steps']} outer steps run in all" if card.get("budget_outer_steps") else ""),
        f"- **Meta-loss:** first {_fmt(card['meta_loss_first'])}, last {_fmt(card['meta_loss_last'])} "
        "(means over the first/last 10% of outer steps)",
        f"- **Wall time:** {card['wall_seconds']:.0f} s on {card['device']}",
        f"- **Code:** celo-bench {card['provenance'].get('celo_bench', '')} "
        f"(git {card['provenance'].get('git_commit', '') or 'unknown'}), jax {card['provenance'].get('jax', '')}",
    ]
    if card.get("meta_init"):  # cards written before the setting existed have none
        settings = card.get("arch_settings") or {}
        lines.insert(-4, f"- **Starting point:** `{card['meta_init']['scheme']}` ({card['meta_init']['what']})"
                     + (f"; this architecture's settings of the preset: "
                        f"{', '.join(f'{k} = {v}' for k, v in settings.items())}" if settings else ""))
    if card.get("meta_validation_loss") is not None:
        lines.append(f"- **Meta-validation loss:** {card['meta_validation_loss']:.4f} (this checkpoint "
                     "was chosen as the lowest over the run's checkpoints; chance is ln 10 = 2.303)")
        if card["meta_validation_loss"] > META_VALIDATION_TARGET:
            lines.append(f"- **Above the target:** the target is {META_VALIDATION_TARGET:.3f} (half of chance): "
                         "these weights learned, but less than that on this budget; docs/metatrain.md "
                         "(One budget for all four) shows the meta-loss curve and what was tried")
    lines += ["", f"Load with `celo_bench.optimizers.build('{card['architecture']}', num_steps=T, "
              "checkpoint='<this folder>')`.", ""]
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def write_checkpoint(folder: Path, theta: Any, card: dict) -> Path:
    """``theta.state`` plus ``card.json`` / ``card.md`` in `folder`; returns the state file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = ckpt.write(folder / ckpt.FILENAME, jax_to_numpy(theta))
    write_json(folder / CARD_JSON, card)
    fileio.atomic_write_text(folder / CARD_MD, card_markdown(card))
    return path


def spec_name(arch: str, preset: str, phase: str = "joint") -> str:
    """``celo_cpu_diet``; Celo's phase-1 weights are ``celo_phase1_cpu_diet`` (run with train_phase=1)."""
    return f"{arch}_phase1_{preset}_diet" if phase == "1" else f"{arch}_{preset}_diet"


def write_spec(out: Path, card: dict) -> Path:
    """``OUT/<arch>_<preset>_diet.toml``: an optimizer spec that runs these weights.

    Copy it into ``baselines/`` (or a ``$CELO_BENCH_SPECS`` tree) and
    ``celo-bench run --optimizers <name>`` benchmarks the weights like any optimizer. Its
    ``[checkpoint] source`` is ``OUT/theta.state`` (no checksum: they are yours) and its
    ``label`` keeps them apart from published weights on the leaderboard.
    """
    name = spec_name(card["architecture"], card["preset"], card["phase"])
    q = json.dumps  # a JSON string is a valid TOML basic string
    text = "\n".join([
        f"name = {q(name)}",
        'kind = "learned"',
        f"factory = {q(card['architecture'])}",
        "needs_loss = true",
        f"description = {q(card['label'] + ': ' + card['architecture'] + ' meta-parameters from celo-bench meta-train')}",
        f"meta_training = {q(_meta_training_text(card))}",
        "",
        *(["[defaults]", *(f"{k} = {json.dumps(v)}" for k, v in card["factory_kwargs"].items()), ""]
          if card["factory_kwargs"] else []),
        "[checkpoint]",
        f"source = {q(str((out / ckpt.FILENAME).resolve()))}",
        f"label = {q(card['label'])}",
        f"note = {q(card['label'] + '; see card.md beside the checkpoint')}",
        "",
    ])
    return fileio.atomic_write_text(out / f"{name}.toml", text)


def _meta_training_text(card: dict) -> str:
    steps = f"phase {card['phase']}, {card['outer_step']} outer steps"
    if card.get("selected_by"):
        steps += " (checkpoint chosen by held-out meta-validation loss)"
    return f"{card['label']}: {steps} of {recipe_text(card)}"


def recipe_text(card: dict) -> str:
    """The card's estimator, tasks, augmentation and outer optimizer in one phrase (specs' ``meta_training``)."""
    est = card["estimator"]
    return (f"truncated PES (std {est['std']}, truncation {est['truncation']}, horizons {est['min_horizon']}-"
            f"{est['max_horizon']}) on {', '.join(card['tasks'])}, {card['augmentation']}, "
            f"AdamW {card['outer_optimizer']['lr']:g}")


def jax_to_numpy(tree: Any) -> Any:
    import jax  # heavy: installing and reading cards need no JAX

    return jax.tree_util.tree_map(np.asarray, tree)


def write_curve(out: Path, losses: list[float], seconds: list[float], title: str) -> None:
    """``meta_loss.json`` (per outer step) and ``meta_loss.png`` (raw and smoothed)."""
    write_json(out / CURVE_JSON, {"meta_loss": losses, "seconds": seconds})
    if not losses:
        return
    import matplotlib  # heavy: only the curve's plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.asarray(losses, np.float64)
    x = np.arange(1, y.size + 1)
    w = max(1, y.size // 20)
    smooth = np.convolve(y, np.ones(w) / w, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    ax.plot(x, y, color="0.75", lw=0.8, label="per outer step")
    ax.plot(x[w - 1:], smooth, color="C0", lw=1.6, label=f"moving mean ({w})")
    ax.set_xlabel("outer step")
    ax.set_ylabel("meta-loss (mean normalised inner loss)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        with fileio.atomic_path(out / CURVE_PNG, suffix=".png") as tmp:  # the format from the suffix
            fig.savefig(tmp)
    finally:
        plt.close(fig)


__all__ = ["card_markdown", "label", "spec_name", "write_spec", "window_means", "write_checkpoint", "write_curve", "write_json"]
