"""Who is drawn in colour: the reference, Celo, the top five and every submission; the rest in grey.

With 26 optimizers no palette keeps every line apart (hues repeat after ten, and a legend of
26 entries is taller than its figure), so every figure colours the same few optimizers a
reader compares (:func:`featured`) and draws the others as thin grey lines under them, with
one legend entry "other optimizers". An optimizer keeps its colour and line style in every
figure. The colours are Okabe & Ito's colour-blind-safe set (yellow left out: it vanishes on
white); the reference is black and thick, Celo red and thick, and the featured lines also
differ by line style, so they stay apart in grayscale.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from celo_bench.results import Results

HIGHLIGHT = "celo"
TOP = 5
"""How many of the best-ranked optimizers are featured beside the reference and Celo."""
REFERENCE_COLOR = "black"
HIGHLIGHT_COLOR = "#c0392b"
COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7F3C8D", "#3B8686")
LINESTYLES = ("-", "--", "-.", ":")
OTHER = {"color": "0.72", "ls": "-", "lw": 0.9, "z": 1, "featured": False}
OTHERS_LABEL = "other optimizers"


def ranked(res: Results) -> list[str]:
    """Scored optimizers in leaderboard order."""
    a = res.aggregate
    return list(a.loc[a["final_loss_iqm"].notna(), "optimizer"])


def every(res: Results) -> list[str]:
    """Every optimizer: scored ones in leaderboard order, then the rest by name."""
    return list(dict.fromkeys(ranked(res) + sorted(set(res.runs["optimizer"]))))


def submissions(res: Results) -> list[str]:
    """Optimizers of kind ``submission``, in leaderboard order."""
    a = res.aggregate
    return list(a.loc[a["optimizer_kind"] == "submission", "optimizer"])


def featured(res: Results, top: int = TOP) -> list[str]:
    """The reference, Celo, the `top` best-ranked and every submission, in leaderboard order."""
    a = res.aggregate
    order = every(res)
    best = list(a.loc[a["rank"].notna(), "optimizer"])[:top]
    want = {res.config.reference, HIGHLIGHT, *best, *submissions(res)}
    return [n for n in order if n in want]


def styles(res: Results) -> dict[str, dict]:
    """Per optimizer: ``color``, ``ls``, ``lw``, ``z`` and ``featured`` (see the module docstring)."""
    ref = res.config.reference
    out = {n: dict(OTHER) for n in every(res)}
    i = 0
    for n in featured(res):
        if n == ref:
            out[n] = {"color": REFERENCE_COLOR, "ls": "-", "lw": 2.4, "z": 5, "featured": True}
        elif n == HIGHLIGHT:
            out[n] = {"color": HIGHLIGHT_COLOR, "ls": "-", "lw": 2.4, "z": 6, "featured": True}
        else:
            out[n] = {"color": COLORS[i % len(COLORS)], "ls": LINESTYLES[(i + 1) % len(LINESTYLES)],
                      "lw": 1.7, "z": 4, "featured": True}
            i += 1
    return out


def label(res: Results, name: str) -> str:
    """A legend label: the name, with "(reference)" or "(submission)" where it applies."""
    if name == res.config.reference:
        return f"{name} (reference)"
    kinds = res.aggregate.set_index("optimizer")["optimizer_kind"] if len(res.aggregate) else pd.Series(dtype=str)
    return f"{name} (submission)" if kinds.get(name) == "submission" else name


def in_order(names: Sequence[str], st: dict[str, dict]) -> list[str]:
    """`names` with the grey ones first, so featured lines are drawn over them."""
    return [n for n in names if not st[n]["featured"]] + [n for n in names if st[n]["featured"]]


__all__ = ["HIGHLIGHT", "OTHERS_LABEL", "TOP", "every", "featured", "in_order", "label", "ranked", "styles",
           "submissions"]
