"""Point the cpu-diet optimizer specs at the weights installed in the package (a release step).

After ``CELO_BENCH_WEIGHTS=celo_bench/weights celo-bench meta-train ARCH --preset cpu ...
--select-best --install`` has replaced ``celo_bench/weights/<name>/``, this rewrites three
lines of ``baselines/<name>.toml`` from the card beside the weights, and re-renders its
``card.md`` from ``card.json``: ``sha256`` (so stored
runs of the old weights are never reused: the run key holds it), ``meta_training`` (the
budget, chosen step, held-out meta-validation and outer learning rate) and ``make`` (the
card's command with ``--install``: the fix ``plan`` prints where the weights are missing). docs/metatrain.md ("One budget for all four") gives the whole procedure.

Usage::

    python scripts/ship_cpu_diet.py            # every *_cpu_diet spec whose weights ship
    python scripts/ship_cpu_diet.py --check    # exit 1 if a spec does not match its card
    python scripts/ship_cpu_diet.py celo_cpu_diet   # one spec
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from celo_bench.metatrain import artifacts
from celo_bench.metatrain.install import card_page

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS, BASELINES = ROOT / "celo_bench" / "weights", ROOT / "baselines"


def meta_training_text(card: dict) -> str:
    """One line: what made these weights (the spec's ``meta_training``)."""
    chosen = card.get("chosen_step", card["outer_step"])
    phase = "phase 1 then phase 2" if card["phase"] == "2" else card["phase"]
    return (f"{card['label']}: {phase}, budget {card['budget_outer_steps']} outer steps, checkpoint of "
            f"{'phase 2 ' if card['phase'] == '2' else ''}step {chosen} chosen by held-out meta-validation "
            f"loss ({card['meta_validation_loss']:.3f}), {artifacts.recipe_text(card)}, seed {card['seed']}")


def updated(text: str, card: dict) -> str:
    """`text` (a spec's TOML) with its sha256, meta_training and make lines from `card`."""
    make = card["command"] if "--install" in card["command"] else card["command"] + " --install"
    fields = {"sha256": card["sha256"], "meta_training": meta_training_text(card), "make": make}
    for key, value in fields.items():
        text, n = re.subn(rf"^{key} = .*$", lambda _m, k=key, v=value: f"{k} = {json.dumps(v)}", text,
                          count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f"no `{key} = ...` line to update in the spec")
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="only these specs (default: every *_cpu_diet one)")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a spec is stale")
    args = ap.parse_args()
    stale = []
    for card_path in sorted(WEIGHTS.glob("*_cpu_diet/card.json")):
        if args.names and card_path.parent.name not in args.names:
            continue
        name, card = card_path.parent.name, json.loads(card_path.read_text())
        spec, page = BASELINES / f"{name}.toml", card_path.with_name("card.md")
        text = spec.read_text()
        new = updated(text, card)
        if new != text or page.read_text() != card_page(card):
            stale.append(name)
            if not args.check:
                spec.write_text(new)
                page.write_text(card_page(card))
        print(f"{name}: {'current' if name not in stale else 'stale' if args.check else 'updated'}")
    sys.exit(1 if args.check and stale else 0)


if __name__ == "__main__":
    main()
