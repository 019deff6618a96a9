"""The figures' shared look (matplotlib rc settings, resolution) and their one way to be saved.

Deterministic files: PNGs carry no timestamp, and the PDF creation date is removed, so the
same results give byte-identical images with the same matplotlib version. Files are written
through :mod:`celo_bench.fileio` (a reader never sees half an image).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from celo_bench import fileio

STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "svg.hashsalt": "celo-bench", "pdf.fonttype": 42,
}
DPI = 150


def save(fig: Figure, folder: Path, name: str, pdf: bool = True) -> list[Path]:
    """Write ``name.png`` (and ``name.pdf``) with fixed metadata; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / f"{name}.png"]
    with matplotlib.rc_context(STYLE):
        with fileio.atomic_path(out[0], suffix=".png") as tmp:
            fig.savefig(tmp, dpi=DPI, metadata={"Software": None})
        if pdf:
            out.append(folder / f"{name}.pdf")
            with fileio.atomic_path(out[1], suffix=".pdf") as tmp:
                fig.savefig(tmp, metadata={"CreationDate": None, "Creator": "celo-bench", "Producer": None})
    return out


__all__ = ["DPI", "STYLE", "save"]
