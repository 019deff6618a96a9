"""Install a finished meta-training run as the weights of a ``local://`` optimizer spec.

``celo-bench meta-train ARCH --preset cpu --select-best --install`` copies the chosen
checkpoint (``OUT/best``, else ``OUT``) with its card and the run's ``selection.json`` to
``<weights root>/<arch>_<preset>_diet/``. The committed specs ``baselines/*_cpu_diet.toml``
point there (``local://<name>``), so the weights made here run from any folder and offline,
labelled apart from published ones, while no checkpoint is ever committed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from celo_bench.errors import CeloBenchError
from celo_bench.metatrain import artifacts
from celo_bench.optimizers import checkpoint as ckpt


def install(out: str | Path, root: str | Path | None = None) -> Path:
    """Copy run `out` (or its ``best/``) into `root` (default: the weights root); returns the folder."""
    run = Path(out)
    chosen = run / "best" if (run / "best" / ckpt.FILENAME).is_file() else run
    if not (chosen / ckpt.FILENAME).is_file() or not (chosen / artifacts.CARD_JSON).is_file():
        raise CeloBenchError(f"{run} is not a finished meta-training run (no theta.state and card.json)")
    card = json.loads((chosen / artifacts.CARD_JSON).read_text())
    name = artifacts.spec_name(card["architecture"], card["preset"], card["phase"])
    dest = Path(root) if root is not None else ckpt.weights_root()
    dest = dest / name
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in (ckpt.FILENAME, artifacts.CARD_JSON, artifacts.CARD_MD):
        shutil.copy2(chosen / f, tmp / f)
    if (run / "selection.json").is_file():
        shutil.copy2(run / "selection.json", tmp / "selection.json")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)  # never a half-installed folder
    return dest


__all__ = ["install"]
