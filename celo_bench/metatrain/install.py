"""Install a finished meta-training run as the weights of a ``*_cpu_diet`` optimizer spec.

``celo-bench meta-train ARCH --preset cpu --select-best --install`` copies the chosen
checkpoint (``OUT/best``, else ``OUT``) with its card and the run's ``selection.json`` to
``<weights root>/<arch>_<preset>_diet/`` (``$CELO_BENCH_WEIGHTS``, default
``~/.cache/celo-bench/weights``), and completes the card with what remakes the weights: the
exact command, the sha256 of ``theta.state`` and the chosen outer step.

The project's own cpu-diet weights ship as package data made the same way (the weights
root set to ``celo_bench/weights``). Your own remake is used instead of the shipped copy by
pointing ``$CELO_BENCH_CHECKPOINTS`` at the weights root (same ``<name>/theta.state`` layout).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from celo_bench import fileio
from celo_bench.errors import CeloBenchError
from celo_bench.metatrain import artifacts
from celo_bench.optimizers import checkpoint as ckpt

INSTALL_FIX = "set CELO_BENCH_WEIGHTS to a writable folder"


def check_target(root: str | Path | None = None) -> None:
    """Raise one line now if weights could not be installed into `root` (default: the weights root).

    Raises:
      CeloBenchError: names the folder and the problem.
    """
    artifacts.check_writable(Path(root) if root is not None else ckpt.weights_root(), "weights folder",
                             INSTALL_FIX)


def install(out: str | Path, root: str | Path | None = None, *, command: str | None = None) -> Path:
    """Copy run `out` (or its ``best/``) into `root` (default: the weights root); returns the folder.

    `command` is the command line that made the run (recorded in the card as ``command``).

    Raises:
      CeloBenchError: `out` is not a finished run, or the weights folder cannot be written
        (nothing is half-installed; the run stays in `out`).
    """
    run = Path(out)
    chosen = run / "best" if (run / "best" / ckpt.FILENAME).is_file() else run
    if not (chosen / ckpt.FILENAME).is_file() or not (chosen / artifacts.CARD_JSON).is_file():
        raise CeloBenchError(f"{run} is not a finished meta-training run (no theta.state and card.json)")
    card = json.loads((chosen / artifacts.CARD_JSON).read_text())
    name = artifacts.spec_name(card["architecture"], card["preset"], card["phase"])
    dest = Path(root) if root is not None else ckpt.weights_root()
    dest = dest / name
    try:
        # copied into a hidden folder beside `dest`, then swapped in whole: never half-installed
        with fileio.staged_folder(dest) as tmp:
            _copy_run(run, chosen, card, tmp, command)
    except OSError as e:
        raise CeloBenchError(f"cannot install weights into {dest}: {e.strerror or e}; {INSTALL_FIX} and re-run "
                             f"(the finished run stays in {run})") from None
    return dest


def _copy_run(run: Path, chosen: Path, card: dict, tmp: Path, command: str | None) -> None:
    shutil.copy2(chosen / ckpt.FILENAME, tmp / ckpt.FILENAME)
    card["sha256"] = fileio.sha256_file(tmp / ckpt.FILENAME)
    card["chosen_step"] = card.get("selected_step", card.get("outer_step"))
    card["budget_outer_steps"] = budget_outer_steps(run)
    if command:
        card["command"] = command
    artifacts.write_json(tmp / artifacts.CARD_JSON, card)
    (tmp / artifacts.CARD_MD).write_text(card_page(card))
    if (run / "selection.json").is_file():
        shutil.copy2(run / "selection.json", tmp / "selection.json")


def budget_outer_steps(run: Path) -> int:
    """Every outer step the run spent: its final step plus its starting point's (Celo: both phases).

    The chosen checkpoint may be an earlier one; the budget is what was run, as the
    equal-budget comparison of the cpu-diet weights counts it (docs/metatrain.md).
    """
    final = json.loads((run / artifacts.CARD_JSON).read_text())
    if "budget_outer_steps" in final:
        return int(final["budget_outer_steps"])
    return int(final["outer_step"]) + artifacts.prior_outer_steps(final.get("init"), near=run.parent)


def card_page(card: dict) -> str:
    """``card.md`` of installed weights: the card and how to remake them."""
    return artifacts.card_markdown(card) + _remake_note(card)


def _remake_note(card: dict) -> str:
    lines = ["", "## Remake", ""]
    if card.get("command"):
        lines.append(f"- **Command:** `{card['command']}`")
    lines += [f"- **Chosen outer step:** {card.get('chosen_step')}",
              f"- **sha256 of theta.state:** `{card['sha256']}`", ""]
    return "\n".join(lines)


__all__ = ["check_target", "install"]
