"""Figures of curves along training: tuned training curves per task, one optimizer's curves
against the reference's (the site's optimizer pages), and the sample-efficiency curves (IQM of
the final-loss score against training progress with 95% CIs, :mod:`celo_bench.efficiency`).

Colours follow :mod:`celo_bench.report.palette`: the featured optimizers in colour with a
legend entry each, the others as thin grey lines under them with one entry. Legends go below
the panels, in as many columns as fit, so they never run off the figure.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from celo_bench.report import palette
from celo_bench.report.style import STYLE
from celo_bench.results import Results


def grid(n: int, ncols: int = 4, w: float = 3.0, h: float = 2.4) -> tuple[Figure, np.ndarray]:
    """A figure of `n` panels in rows of at most `ncols` (unused panels hidden)."""
    ncols = min(ncols, max(math.ceil(math.sqrt(n)), 1 if n < 2 else 2))
    nrows = math.ceil(max(n, 1) / ncols)
    fig = Figure(figsize=(w * ncols + 0.4, h * nrows + 0.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def legend_below(fig: Figure, handles: list, width_in: float) -> None:
    """One legend under the panels, in as many columns as the figure's width holds."""
    ncol = max(1, min(len(handles), int(width_in / 1.9)))
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False)


def handles(res: Results, names: Sequence[str], st: dict[str, dict], **line) -> list[Line2D]:
    """Legend entries: each featured optimizer among `names`, then "other optimizers" if any."""
    out = [Line2D([], [], color=st[n]["color"], ls=st[n]["ls"], lw=st[n]["lw"], label=palette.label(res, n),
                  **line) for n in names if st[n]["featured"]]
    if any(not st[n]["featured"] for n in names):
        out.append(Line2D([], [], color=palette.OTHER["color"], lw=1.2, label=palette.OTHERS_LABEL))
    return out


def tuned_curves(res: Results) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(task, optimizer) -> (steps, mean, min, max) over seeds of the tuned runs' smoothed curves."""
    out = {}
    sel = res.runs[res.runs["selected"] & (res.runs["status"] != "failed")]
    for (task, opt), g in sel.groupby(["task", "optimizer"], sort=True):
        curves = [c for c in g["smoothed"] if c.size]
        if not curves or len({c.size for c in curves}) != 1:
            continue
        stack = np.stack(curves)
        stack = np.where(np.isfinite(stack), stack, np.nan)
        with warnings.catch_warnings():  # all-NaN columns (every seed diverged) stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            out[(task, opt)] = (g["steps"].iloc[0], np.nanmean(stack, axis=0), np.nanmin(stack, axis=0),
                                np.nanmax(stack, axis=0))
    return out


def yscale(ax, values: list[np.ndarray]) -> None:
    """Log y when every value is positive and they span more than a decade; plain labels."""
    v = np.concatenate([np.ravel(x)[np.isfinite(np.ravel(x))] for x in values]) if values else np.zeros(0)
    if v.size and (v > 0).all() and v.max() / v.min() > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())


def training_curves(res: Results, tasks: Sequence[str] | None = None) -> Figure:
    """One panel per task: every optimizer's tuned (smoothed, mean over seeds) curve."""
    names = palette.every(res)
    st = palette.styles(res)
    curves = tuned_curves(res)
    tasks = list(tasks) if tasks is not None else sorted(set(res.runs["task"]))
    one = len(tasks) == 1
    with matplotlib.rc_context(STYLE):
        fig, axes = grid(len(tasks), w=6.0 if one else 3.0, h=3.2 if one else 2.4)
        for ax, task in zip(axes, tasks, strict=False):
            ys = []
            for n in palette.in_order(names, st):
                if (task, n) in curves:
                    x, y, _, _ = curves[(task, n)]
                    s = st[n]
                    ax.plot(x, y, color=s["color"], ls=s["ls"], lw=s["lw"], zorder=s["z"])
                    ys.append(y)
            yscale(ax, ys)
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("step")
            ax.grid(color="0.92")
        axes[0].set_ylabel(f"{res.config.series.replace('_', ' ')} (EMA {res.config.ema_alpha:g})")
        present = [n for n in names if any((t, n) in curves for t in tasks)]
        legend_below(fig, handles(res, present, st), fig.get_figwidth())
    return fig


def optimizer_curves(res: Results, name: str) -> Figure | None:
    """One panel per task: `name`'s tuned curve (mean over seeds, min-max band) and the
    reference's (black); None when `name` has no curve."""
    ref = res.config.reference
    curves = tuned_curves(res)
    tasks = sorted(t for t in set(res.runs["task"]) if (t, name) in curves)
    if not tasks:
        return None
    st = palette.styles(res)
    color = st[name]["color"] if st[name]["featured"] and name != ref else "#0072B2"
    with matplotlib.rc_context(STYLE):
        fig, axes = grid(len(tasks), ncols=3, w=3.2, h=2.5)
        for ax, task in zip(axes, tasks, strict=False):
            x, y, lo, hi = curves[(task, name)]
            ys = [y, lo, hi]
            if name != ref and (task, ref) in curves:
                rx, ry, _, _ = curves[(task, ref)]
                ax.plot(rx, ry, color="black", ls="--", lw=1.4, zorder=3)
                ys.append(ry)
            ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0, zorder=1)
            ax.plot(x, y, color=color, lw=2.0, zorder=4)
            yscale(ax, ys)
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("step")
            ax.grid(color="0.92")
        axes[0].set_ylabel(f"{res.config.series.replace('_', ' ')} (EMA {res.config.ema_alpha:g})")
        items = [Line2D([], [], color=color, lw=2.0, label=f"{name}, tuned (mean over seeds)"),
                 Patch(color=color, alpha=0.25, label="min-max over seeds")]
        if name != ref:
            items.append(Line2D([], [], color="black", ls="--", lw=1.4, label=f"{ref}, tuned (reference)"))
        legend_below(fig, items, fig.get_figwidth())
    return fig


def sample_efficiency(curves: pd.DataFrame, res: Results) -> Figure | None:
    """IQM of the final-loss score against training progress, 95% CI bands, for the featured
    optimizers (`curves`: :func:`celo_bench.efficiency.sample_efficiency` rows)."""
    if curves.empty:
        return None
    st = palette.styles(res)
    names = [n for n in palette.featured(res) if n in set(curves["optimizer"])]
    ref = res.config.reference
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(7.5, 4.2), layout="constrained")
        ax = fig.subplots()
        for n in names:
            g = curves[curves["optimizer"] == n].sort_values("fraction")
            s = st[n]
            ax.fill_between(g["fraction"], g["low"], g["high"], color=s["color"], alpha=0.13, lw=0, zorder=s["z"] - 1)
            ax.plot(g["fraction"], g["iqm"], color=s["color"], ls=s["ls"], lw=s["lw"], zorder=s["z"],
                    label=palette.label(res, n))
        ax.axhline(1.0, color="0.4", ls=":", lw=1)
        ax.set_xlim(0, 1.0)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("training progress t / T (fraction of each task's horizon)")
        ax.set_ylabel(f"IQM of L_{ref}(T) / L(t)")
        ax.set_title("Final-loss score along training: IQM over tasks × seeds, 95% CIs")
        ax.grid(color="0.92")
        legend_below(fig, ax.get_legend_handles_labels()[0], fig.get_figwidth())
    return fig


__all__ = ["grid", "handles", "legend_below", "optimizer_curves", "sample_efficiency", "training_curves",
           "tuned_curves", "yscale"]
