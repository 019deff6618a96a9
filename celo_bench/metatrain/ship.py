"""Ship a meta-training run with the package: weights into ``celo_bench/weights``, a spec into ``baselines``.

    python -m celo_bench.metatrain.ship metatrain/celo-cpu[/best] [--root .]

copies ``OUT/theta.state``, its card and the meta-loss plot to
``celo_bench/weights/<arch>_<preset>_diet/`` and writes ``baselines/<arch>_<preset>_diet.toml``
whose ``[checkpoint] source`` is ``package://<name>`` with the file's sha256 and the label
``meta-trained here (<preset> diet)``. The weights then load offline from any folder and the
leaderboard lists them apart from the published ones. A maintainer's step (it edits the
source tree), so it is a module, not a ``celo-bench`` command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

from celo_bench.errors import CeloBenchError
from celo_bench.metatrain import artifacts
from celo_bench.optimizers import checkpoint as ckpt

SHIPPED = (ckpt.FILENAME, artifacts.CARD_JSON, artifacts.CARD_MD, artifacts.CURVE_PNG)


def ship(out: str | Path, root: str | Path = ".") -> tuple[Path, Path]:
    """Copy run `out` into the source tree at `root`; returns (weights folder, spec file)."""
    out, root = Path(out), Path(root)
    card_path = out / artifacts.CARD_JSON
    if not (out / ckpt.FILENAME).is_file() or not card_path.is_file():
        raise CeloBenchError(f"{out} is not a finished meta-training run (no theta.state and card.json)")
    if not (root / "celo_bench").is_dir() or not (root / "baselines").is_dir():
        raise CeloBenchError(f"{root} is not a celo-bench source tree (celo_bench/ and baselines/)")
    card = json.loads(card_path.read_text())
    name = artifacts.spec_name(card["architecture"], card["preset"], card["phase"])
    dest = root / "celo_bench" / "weights" / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    run = out.parent if out.name == "best" else out  # the curve and selection live beside the run
    for f in SHIPPED:
        src = out / f if (out / f).is_file() else run / f
        if src.is_file():
            shutil.copy2(src, dest / f)
    if (run / "selection.json").is_file():
        shutil.copy2(run / "selection.json", dest / "selection.json")
    # Celo: what phase 2 started from (beside OUT, or beside the run when OUT is its best/)
    phase1 = next((p / "phase1" / artifacts.CARD_JSON for p in (out, out.parent)
                   if (p / "phase1" / artifacts.CARD_JSON).is_file()), out / "phase1" / artifacts.CARD_JSON)
    phase1_card = json.loads(phase1.read_text()) if phase1.is_file() else None
    if phase1_card is not None:
        shutil.copy2(phase1, dest / "phase1_card.json")
        if (phase1.parent / artifacts.CURVE_PNG).is_file():
            shutil.copy2(phase1.parent / artifacts.CURVE_PNG, dest / "phase1_meta_loss.png")
    sha = hashlib.sha256((dest / ckpt.FILENAME).read_bytes()).hexdigest()
    spec = artifacts.write_spec(out, card, source=f"{ckpt.PACKAGE_PREFIX}{name}", sha256=sha,
                                folder=root / "baselines", phase1=phase1_card)
    return dest, spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="a finished `celo-bench meta-train` output folder")
    parser.add_argument("--root", default=".", help="the celo-bench source tree (default: .)")
    args = parser.parse_args(argv)
    try:
        dest, spec = ship(args.out, args.root)
    except CeloBenchError as e:
        parser.exit(2, f"error: {e}\n")
    print(f"weights: {dest}\nspec:    {spec}")


if __name__ == "__main__":
    main()
