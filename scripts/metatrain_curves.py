"""One figure of several meta-training runs: meta-loss and held-out meta-validation per outer step.

Reads what ``celo-bench meta-train --select-best --out OUT`` leaves in each OUT:
``meta_loss.json`` (and, for Celo's two phases, ``OUT/phase1/meta_loss.json`` first) and
``selection.json`` (the meta-validation loss of every saved checkpoint). The x axis counts
every outer step the run spent (Celo: phase 1, then phase 2), so runs of one budget end at
the same place. Left: the meta-training loss (mean normalised inner training loss under
augmentation), a moving mean over 50 steps; right: the held-out meta-validation loss of each
checkpoint, with chance (ln 10) and the issue's target (half of chance) marked.

Usage (docs/metatrain.md, "One budget for all four")::

    python scripts/metatrain_curves.py ~/.cache/celo-bench/metatrain/{celo,rnn,adafac,velo_s}-cpu-B2000 \\
        --out docs/figures/metatrain_equal_budget.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

CHANCE = math.log(10)


def _losses(run: Path) -> tuple[np.ndarray, int]:
    """The run's meta-loss per outer step (phase 1 first where there is one) and phase 1's length."""
    first = []
    if (run / "phase1" / "meta_loss.json").is_file():
        first = json.loads((run / "phase1" / "meta_loss.json").read_text())["meta_loss"]
    last = json.loads((run / "meta_loss.json").read_text())["meta_loss"]
    return np.asarray(first + last, np.float64), len(first)


def _validation(run: Path, offset: int) -> tuple[list[int], list[float]]:
    path = run / "selection.json"
    if not path.is_file():
        return [], []
    rows = sorted(json.loads(path.read_text())["runs"], key=lambda r: r["step"])
    return [offset + r["step"] for r in rows], [r["meta_validation_loss"] for r in rows]


def _label(run: Path) -> str:
    card = json.loads((run / "card.json").read_text())
    return card["architecture"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="meta-training output folders (--out of each run)")
    ap.add_argument("--out", type=Path, required=True, help="the PNG to write")
    ap.add_argument("--window", type=int, default=50, help="moving-mean window, outer steps (default 50)")
    args = ap.parse_args()
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for i, run in enumerate(args.runs):
        color = f"C{i}"
        y, phase1 = _losses(run)
        w = min(args.window, y.size)
        smooth = np.convolve(y, np.ones(w) / w, mode="valid")
        ax_loss.plot(np.arange(w, y.size + 1), smooth, color=color, label=_label(run))
        if phase1:
            ax_loss.axvline(phase1, color=color, ls=":", lw=1)
        xs, vs = _validation(run, phase1)
        ax_val.plot(xs, vs, "o-", color=color, label=_label(run))
    for ax in (ax_loss, ax_val):
        ax.axhline(CHANCE, color="grey", lw=1, ls="--")
        ax.set_xlabel("outer step (all phases)")
        ax.grid(alpha=0.3)
    ax_val.set_xlim(ax_loss.get_xlim())
    ax_val.axhline(CHANCE / 2, color="black", lw=1, ls=":")
    ax_val.text(0.01, CHANCE / 2, " target: half of chance", transform=ax_val.get_yaxis_transform(),
                va="bottom", fontsize=8)
    ax_loss.text(0.01, CHANCE, " chance (ln 10)", transform=ax_loss.get_yaxis_transform(), va="bottom",
                 fontsize=8)
    ax_loss.set_ylabel(f"meta-training loss ({args.window}-step moving mean)")
    ax_val.set_ylabel("held-out meta-validation loss")
    ax_loss.set_title("Meta-loss (augmented tasks; Celo's phase boundary dotted)", fontsize=10)
    ax_val.set_title("Held-out meta-validation per checkpoint", fontsize=10)
    ax_loss.legend(loc="upper right", fontsize=8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=130)
    print(args.out)


if __name__ == "__main__":
    main()
