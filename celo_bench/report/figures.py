"""Report figures (matplotlib object API), saved as PNG and PDF, readable at page width with
26 optimizers.

Colours follow :mod:`celo_bench.report.palette`: the reference (black), Celo (red), the top
five and every submission in colour, every other optimizer in grey with one legend entry; the
featured ones also differ by marker or line style, so the figures read in grayscale. Where a
reader compares pairs (probability of improvement) the cells carry their numbers. Figures of
curves along training live in :mod:`celo_bench.report.curves`; the look and the one way to
save a figure in :mod:`celo_bench.report.style`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from celo_bench.compare import Comparison
from celo_bench.report import palette
from celo_bench.report.curves import grid, handles, legend_below, yscale
from celo_bench.report.palette import HIGHLIGHT
from celo_bench.report.style import DPI, STYLE, save
from celo_bench.results import Results
from celo_bench.suite import KIND_LABELS

KIND_MARKERS = {"handcrafted": "o", "learned": "s", "learned_here": "P", "extra": "^", "submission": "D"}
MARKER_LABELS = {**KIND_LABELS, "learned": "learned (published)", "learned_here": "learned (meta-trained here)"}


def _marker_kinds(a: pd.DataFrame) -> dict[str, str]:
    """Optimizer -> marker key: learned weights made by this project get their own marker."""
    here = (a["optimizer_kind"] == "learned") & a["kind_label"].str.contains("meta-trained here")
    return a["optimizer_kind"].where(~here, "learned_here").to_dict()


def _order(res: Results) -> list[str]:
    """Scored optimizers in leaderboard order."""
    return palette.ranked(res)


def _panels(res: Results) -> list[tuple[str, str]]:
    """(criterion, title) of the main figure: final loss and speedup, and the wall-clock
    speedup when some optimizer has one (timings of the results' device kind)."""
    panels = [("final_loss", "Final loss (IQM)"), ("speedup", "Speedup (IQM)")]
    col = "wall_clock_speedup_iqm"
    if col in res.aggregate.columns and res.aggregate[col].notna().any():
        panels.append(("wall_clock_speedup", f"Wall-clock speedup (IQM, {res.device_kind})"))
    return panels


def main_iqm(res: Results) -> Figure:
    """Final-loss IQM and speedup IQM with 95% CIs, one row per optimizer, and a third panel
    for the wall-clock speedup when timings of the results' device kind exist."""
    ref = res.config.reference
    a = res.aggregate.set_index("optimizer")
    names = _order(res)
    kinds = _marker_kinds(a)
    panels = _panels(res)
    st = palette.styles(res)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.5 * len(panels), 1.3 + 0.32 * max(len(names), 2)), layout="constrained")
        axes = fig.subplots(1, len(panels), sharey=True)
        y = np.arange(len(names))[::-1]
        for ax, (crit, title) in zip(axes, panels, strict=True):
            for yi, n in zip(y, names, strict=True):
                p, lo, hi = (a.loc[n, f"{crit}_iqm{s}"] for s in ("", "_low", "_high"))
                if not np.isfinite(p):  # no timing for this optimizer on this device kind
                    ax.annotate("no timing", (1.0, yi), xytext=(4, 0), textcoords="offset points",
                                va="center", fontsize=7, color="0.4")
                    continue
                hl = n in (ref, HIGHLIGHT)
                color = st[n]["color"] if st[n]["featured"] else "0.55"
                ax.plot([lo, hi], [yi, yi], color=color, lw=6 if hl else 4, alpha=0.35 if not hl else 0.45,
                        solid_capstyle="butt")
                marker = "*" if n == HIGHLIGHT else KIND_MARKERS.get(kinds[n], "o")
                ax.plot([p], [yi], marker=marker, ms=12 if n == HIGHLIGHT else (8 if hl else 7),
                        color=color, mec="black" if hl else "0.3", ls="none", zorder=3)
                ax.annotate(f"{p:.2f}", (max(hi, p), yi), xytext=(7, 0), textcoords="offset points",
                            va="center", fontsize=7, color="0.2")
            ax.axvline(1.0, color="0.3", ls="--", lw=1, zorder=1)
            ax.set_title(title)
            ax.set_xlabel(f"score relative to tuned {ref} (> 1 is better)")
            ax.grid(axis="x", color="0.9")
            # zoom on the data (always showing 1 = tuned Adam); room on the right for labels
            lows, highs = a.loc[names, f"{crit}_iqm_low"].dropna(), a.loc[names, f"{crit}_iqm_high"].dropna()
            lo = min([1.0, *map(float, lows)])
            hi = max([1.0, *map(float, highs)])
            span = max(hi - lo, 0.05)
            ax.set_xlim(lo - 0.06 * span, hi + 0.18 * span)
            ax.set_ylim(-0.6, len(names) - 0.4)
        axes[0].set_yticks(y, names)
        for lab in axes[0].get_yticklabels():
            if st[lab.get_text()]["featured"]:
                lab.set_fontweight("bold")
                lab.set_color(st[lab.get_text()]["color"])
        items = [Line2D([], [], marker=KIND_MARKERS[k], color="0.55", ls="none", label=MARKER_LABELS[k])
                   for k in KIND_MARKERS if k in set(kinds.values())]
        if HIGHLIGHT in names:
            items.append(Line2D([], [], marker="*", ms=11, color="#c0392b", mec="black", ls="none", label=HIGHLIGHT))
        items.append(Line2D([], [], marker=KIND_MARKERS.get(kinds.get(ref, ""), "o"), color="black",
                              ls="none", label=f"{ref} (reference)"))
        items.append(Line2D([], [], color="0.55", lw=4, alpha=0.4, label="95% CI"))
        legend_below(fig, items, fig.get_figwidth())
        fig.suptitle(f"Suite {res.suite}: IQM over {int(a['tasks_total'].max())} tasks × seeds")
    return fig


def performance_profiles(profiles: dict[str, pd.DataFrame], res: Results) -> Figure:
    """Fraction of (task, seed) scores above tau; two panels. Only Celo and the submissions carry
    their 95% bootstrap band: more translucent bands (26, or even the seven featured ones) stack
    into one block where the profiles overlap."""
    ref = res.config.reference
    names = _order(res)
    st = palette.styles(res)
    banded = {HIGHLIGHT, *palette.submissions(res)}
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(9.0, 4.4), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, crit, title in zip(axes, ("final_loss", "speedup"), ("Final loss", "Speedup"), strict=True):
            prof = profiles[crit]
            for n in palette.in_order(names, st):
                g = prof[prof["optimizer"] == n]
                s = st[n]
                ax.plot(g["tau"], g["fraction"], color=s["color"], ls=s["ls"], lw=s["lw"], zorder=s["z"])
                if n in banded:
                    ax.fill_between(g["tau"], g["low"], g["high"], color=s["color"], alpha=0.15, lw=0,
                                    zorder=s["z"] - 1)
            ax.axvline(1.0, color="0.3", ls=":", lw=1)
            ax.set_title(f"{title} score profile")
            ax.set_xlabel(r"score threshold $\tau$ (relative to tuned " + ref + ")")
            ax.grid(color="0.92")
        axes[0].set_ylabel(r"fraction of (task, seed) with score $> \tau$")
        axes[0].set_ylim(-0.02, 1.02)
        legend_below(fig, handles(res, names, st), fig.get_figwidth())
    return fig


def _ceiling(res: Results, task: str, finite: np.ndarray) -> float:
    """The top of a task's learning-rate panel: the largest finite mean final loss that is at most
    1.5 x the loss at step 0 (a final loss above that is worse than not training, and a run that
    blew up would squash the axis)."""
    r = res.runs[(res.runs["task"] == task) & (res.runs["status"] != "failed")]
    starts = [float(c[0]) for c in r["smoothed"] if c.size and np.isfinite(c[0])]
    bound = 1.5 * float(np.median(starts)) if starts else np.inf
    sane = finite[finite <= bound]
    return float(sane.max()) if sane.size else (bound if np.isfinite(bound) else 1.0)


def lr_sensitivity(res: Results) -> Figure | None:
    """Final loss (mean over seeds) against learning rate per task, hand-crafted optimizers.

    A point where some seed diverged or failed is an ``x`` at the top edge; a finite mean above
    the panel's ceiling (:func:`_ceiling`) is a triangle there, so a blown-up run never squashes
    the axis. The tuned point is circled.
    """
    r = res.runs[(res.runs["optimizer_kind"] == "handcrafted") & res.runs["learning_rate"].notna()]
    if r.empty:
        return None
    names = [n for n in palette.every(res) if n in set(r["optimizer"])]
    st = palette.styles(res)
    tasks = sorted(set(r["task"]))
    with matplotlib.rc_context(STYLE):
        fig, axes = grid(len(tasks))
        for ax, task in zip(axes, tasks, strict=False):
            t = r[r["task"] == task]
            means = t.groupby(["optimizer", "learning_rate"])["final_loss"].mean()
            finite = means[np.isfinite(means)].to_numpy()
            top = _ceiling(res, task, finite)
            low = float(finite.min()) if finite.size else 0.0
            shown = []
            for n in palette.in_order(names, st):
                g = t[t["optimizer"] == n]
                if g.empty:
                    continue
                by = g.groupby("learning_rate")
                mean = by["final_loss"].mean()
                bad = by["final_loss"].apply(lambda v: (~np.isfinite(v)).any())
                s = st[n]
                ok = mean[~bad & (mean <= top)]
                high = mean[~bad & (mean > top)]
                ax.plot(ok.index, ok.values, color=s["color"], ls=s["ls"], lw=s["lw"] * 0.8,
                        marker="o", ms=3.5 if s["featured"] else 2.5, zorder=s["z"])
                shown.append(ok.to_numpy())
                for where, marker in ((mean[bad].index, "x"), (high.index, "^")):
                    if len(where):
                        ax.plot(where, [top] * len(where), ls="none", marker=marker, color=s["color"],
                                ms=6 if s["featured"] else 4, zorder=s["z"])
                chosen = g[g["selected"]]["learning_rate"].unique()
                sel = ok[ok.index.isin(chosen)]
                if s["featured"]:
                    ax.plot(sel.index, sel.values, ls="none", marker="o", ms=7, mfc="none",
                            mec=s["color"], mew=1.5, zorder=s["z"] + 1)
            ax.set_xscale("log")
            yscale(ax, [*shown, np.array([top])])
            pad = 0.04 * (top - low) if ax.get_yscale() == "linear" else 0.0
            ax.set_ylim(top=top * (1.08 if ax.get_yscale() == "log" else 1.0) + pad)
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("learning rate")
            ax.grid(color="0.92")
        axes[0].set_ylabel("final loss (mean over seeds)")
        items = handles(res, names, st, marker="o", ms=3.5)
        items += [Line2D([], [], ls="none", marker="o", mfc="none", mec="0.2", ms=7, label="tuned"),
                  Line2D([], [], ls="none", marker="x", color="0.2", label="diverged/failed (at the top)"),
                  Line2D([], [], ls="none", marker="^", color="0.2", label="off the scale (at the top)")]
        legend_below(fig, items, fig.get_figwidth())
    return fig


def poi_heatmap(poi: dict[str, pd.DataFrame], res: Results) -> Figure:
    """P(row better than column) for final-loss and speedup scores, between the featured
    optimizers (`poi`: :func:`celo_bench.aggregate.poi_matrix` frames), each cell with its number."""
    names = [n for n in palette.featured(res) if n in next(iter(poi.values())).index]
    n = max(len(names), 1)
    size = max(3.4, 0.55 * n + 1.8)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(2 * size + 0.9, size + 0.3), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, crit in zip(axes, ("final_loss", "speedup"), strict=True):
            m = poi[crit].loc[names, names].to_numpy(dtype=float)
            np.fill_diagonal(m, np.nan)  # an optimizer against itself: left blank
            im = ax.imshow(np.ma.masked_invalid(m), vmin=0, vmax=1, cmap="viridis")
            for i in range(len(names)):
                for j in range(len(names)):
                    if i != j and np.isfinite(m[i, j]):
                        ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7.5,
                                color="black" if m[i, j] > 0.55 else "white")
            ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
            ax.set_yticks(range(len(names)), names)
            ax.set_title(f"{crit.replace('_', ' ')} score: P(row > column)")
            ax.spines[:].set_visible(False)
        fig.colorbar(im, ax=axes, shrink=0.8, label="P(row > column)")
        fig.suptitle("Probability of improvement between the reference, Celo, the top five and any submission")
    return fig


def _scatter_labels(names: Sequence[str], a: np.ndarray, b: np.ndarray, top: int = 3, moved: int = 4) -> set[str]:
    """Whom a tier scatter names: Adam and Celo, each suite's top `top`, and the `moved` optimizers
    farthest from the diagonal (the rest crowd the diagonal unreadably)."""
    if len(names) <= top * 2 + moved:
        return set(names)
    ra, rb = (np.argsort(np.argsort(-np.nan_to_num(v, nan=-np.inf))) for v in (a, b))
    keep = {HIGHLIGHT, "adam"} & set(names)
    keep |= {names[i] for i in np.argsort(ra)[:top]} | {names[i] for i in np.argsort(rb)[:top]}
    keep |= {names[i] for i in np.argsort(-np.nan_to_num(np.abs(a - b)), kind="stable")[:moved]}
    return keep


def tier_scatter(comparison: Comparison) -> Figure:
    """One panel per criterion: each common optimizer's IQM in suite A (x) against suite B
    (y), with both 95% CIs as error bars, the diagonal y = x, and Kendall's tau in the title.
    Past ten optimizers only some are named (:func:`_scatter_labels`)."""
    c = comparison
    n = len(c.agreements)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(3.9 * max(n, 1) + 0.4, 4.0), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, max(n, 1), squeeze=False)).ravel()
        for ax, g in zip(axes, c.agreements, strict=False):
            xerr = np.abs(np.stack([g.iqm_a - g.ci_a[:, 0], g.ci_a[:, 1] - g.iqm_a]))
            yerr = np.abs(np.stack([g.iqm_b - g.ci_b[:, 0], g.ci_b[:, 1] - g.iqm_b]))
            ax.errorbar(g.iqm_a, g.iqm_b, xerr=np.nan_to_num(xerr), yerr=np.nan_to_num(yerr), fmt="o",
                        color="0.25", ecolor="0.6", elinewidth=1.2, capsize=2, ms=5, zorder=3)
            shown = _scatter_labels(g.optimizers, g.iqm_a, g.iqm_b)
            for name, x, y in zip(g.optimizers, g.iqm_a, g.iqm_b, strict=True):
                if name not in shown:
                    continue
                bold = name in (HIGHLIGHT, "adam")
                ax.annotate(name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7,
                            fontweight="bold" if bold else "normal")
            if len(shown) < len(g.optimizers):
                ax.text(0.99, 0.01, f"{len(g.optimizers) - len(shown)} more unlabelled (all: --format json)",
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.4")
            finite = np.concatenate([g.ci_a.ravel(), g.ci_b.ravel(), g.iqm_a, g.iqm_b])
            finite = finite[np.isfinite(finite)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            pad = 0.05 * max(hi - lo, 0.05)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", ls="--", lw=1, zorder=1)
            tau = g.kendall[0]
            ax.set_title(f"{g.criterion.replace('_', ' ')}: τ = {tau:+.2f}" if np.isfinite(tau)
                         else g.criterion.replace("_", " "))
            ax.set_xlabel(f"IQM, suite {c.a}")
            ax.set_ylabel(f"IQM, suite {c.b}")
            ax.grid(color="0.92")
        fig.suptitle(f"Tier agreement: {c.a} vs {c.b} (95% CIs)")
    return fig


__all__ = ["DPI", "KIND_MARKERS", "lr_sensitivity", "main_iqm", "performance_profiles", "poi_heatmap", "save",
           "tier_scatter"]
