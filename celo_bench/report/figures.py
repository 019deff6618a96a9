"""Report figures (matplotlib object API + seaborn palettes), saved as PNG and PDF.

Readable in grayscale: the highlighted optimizers (Celo and the reference Adam) differ from
the rest by marker shape, line width and bold labels, not by hue alone; other series cycle
line styles as well as colours; heat maps use viridis (monotone in lightness).

Deterministic files: PNGs carry no timestamp, and the PDF creation date is removed, so the
same results give byte-identical images with the same matplotlib version.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from celo_bench.compare import Comparison
from celo_bench.results import Results
from celo_bench.suite import KIND_LABELS

HIGHLIGHT = "celo"
STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "svg.hashsalt": "celo-bench", "pdf.fonttype": 42,
}
DPI = 150
KIND_MARKERS = {"handcrafted": "o", "learned": "s", "learned_here": "P", "extra": "^", "submission": "D"}
MARKER_LABELS = {**KIND_LABELS, "learned": "learned (published)", "learned_here": "learned (meta-trained here)"}
LINESTYLES = ["-", "--", "-.", ":"]


def _marker_kinds(a: pd.DataFrame) -> dict[str, str]:
    """Optimizer -> marker key: learned weights made by this project get their own marker."""
    here = (a["optimizer_kind"] == "learned") & a["kind_label"].str.contains("meta-trained here")
    return a["optimizer_kind"].where(~here, "learned_here").to_dict()


def save(fig: Figure, folder: Path, name: str, pdf: bool = True) -> list[Path]:
    """Write ``name.png`` (and ``name.pdf``) with fixed metadata; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / f"{name}.png"]
    with matplotlib.rc_context(STYLE):
        fig.savefig(out[0], dpi=DPI, metadata={"Software": None})
        if pdf:
            out.append(folder / f"{name}.pdf")
            fig.savefig(out[1], metadata={"CreationDate": None, "Creator": "celo-bench",
                                          "Producer": None})
    return out


def _styles(names: Sequence[str], reference: str) -> dict[str, dict]:
    """Per optimizer: colour, line style, width, z-order; reference black, Celo thick."""
    # seaborn's "dark" palette keeps contrast in grayscale; its red is left to Celo
    palette = [c for i, c in enumerate(sns.color_palette("dark", 10)) if i != 3]
    others = [n for n in names if n not in (reference, HIGHLIGHT)]
    out = {}
    for i, n in enumerate(others):
        out[n] = {"color": palette[i % len(palette)], "ls": LINESTYLES[i % len(LINESTYLES)],
                  "lw": 1.3, "z": 2}
    out[reference] = {"color": "black", "ls": "-", "lw": 2.6, "z": 4}
    out[HIGHLIGHT] = {"color": "#c0392b", "ls": "-", "lw": 2.6, "z": 5}
    return out


def _order(res: Results) -> list[str]:
    """Scored optimizers in leaderboard order."""
    a = res.aggregate
    return list(a.loc[a["final_loss_iqm"].notna(), "optimizer"])


def _all(res: Results) -> list[str]:
    """Every optimizer: scored ones in leaderboard order, then the rest by name."""
    return list(dict.fromkeys(_order(res) + sorted(set(res.runs["optimizer"]))))


def styles(res: Results) -> dict[str, dict]:
    """The same colour and line style for an optimizer in every figure."""
    return _styles(_all(res), res.config.reference)


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
                color = "black" if n == ref else ("#c0392b" if n == HIGHLIGHT else "0.55")
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
            if lab.get_text() in (ref, HIGHLIGHT):
                lab.set_fontweight("bold")
        handles = [Line2D([], [], marker=KIND_MARKERS[k], color="0.55", ls="none", label=MARKER_LABELS[k])
                   for k in KIND_MARKERS if k in set(kinds.values())]
        if HIGHLIGHT in names:
            handles.append(Line2D([], [], marker="*", ms=11, color="#c0392b", mec="black", ls="none", label=HIGHLIGHT))
        handles.append(Line2D([], [], marker=KIND_MARKERS.get(kinds.get(ref, ""), "o"), color="black",
                              ls="none", label=f"{ref} (reference)"))
        handles.append(Line2D([], [], color="0.55", lw=4, alpha=0.4, label="95% CI"))
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
        fig.suptitle(f"Suite {res.suite}: IQM over {int(a['tasks_total'].max())} tasks × seeds")
    return fig


def performance_profiles(profiles: dict[str, pd.DataFrame], res: Results) -> Figure:
    """Fraction of (task, seed) scores above tau, with bootstrap bands; two panels."""
    ref = res.config.reference
    names = _order(res)
    st = styles(res)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(9.0, 3.8), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, crit, title in zip(axes, ("final_loss", "speedup"), ("Final loss", "Speedup"), strict=True):
            prof = profiles[crit]
            for n in names:
                g = prof[prof["optimizer"] == n]
                s = st[n]
                ax.plot(g["tau"], g["fraction"], color=s["color"], ls=s["ls"], lw=s["lw"], zorder=s["z"], label=n)
                ax.fill_between(g["tau"], g["low"], g["high"], color=s["color"], alpha=0.12, lw=0)
            ax.axvline(1.0, color="0.3", ls=":", lw=1)
            ax.set_title(f"{title} score profile")
            ax.set_xlabel(r"score threshold $\tau$ (relative to tuned " + ref + ")")
            ax.grid(color="0.92")
        axes[0].set_ylabel(r"fraction of (task, seed) with score $> \tau$")
        axes[0].set_ylim(-0.02, 1.02)
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", frameon=False)
    return fig


def _grid(n: int, ncols: int = 4, w: float = 3.0, h: float = 2.4) -> tuple[Figure, np.ndarray]:
    ncols = min(ncols, max(math.ceil(math.sqrt(n)), 1 if n < 2 else 2))
    nrows = math.ceil(max(n, 1) / ncols)
    fig = Figure(figsize=(w * ncols + 1.6, h * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def tuned_curves(res: Results) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(task, optimizer) -> (steps, mean over seeds of the tuned runs' smoothed curves)."""
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
            mean = np.nanmean(stack, axis=0)
        out[(task, opt)] = (g["steps"].iloc[0], mean)
    return out


def _yscale(ax, values: list[np.ndarray]) -> None:
    """Log y when every value is positive and they span more than a decade; plain labels."""
    v = np.concatenate([np.ravel(x)[np.isfinite(np.ravel(x))] for x in values]) if values else np.zeros(0)
    if v.size and (v > 0).all() and v.max() / v.min() > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())


def training_curves(res: Results, tasks: Sequence[str] | None = None, legend: bool = True) -> Figure:
    """One panel per task: the tuned (smoothed) curve of every optimizer, Adam emphasised."""
    names = _all(res)
    st = styles(res)
    curves = tuned_curves(res)
    tasks = list(tasks) if tasks is not None else sorted(set(res.runs["task"]))
    with matplotlib.rc_context(STYLE):
        fig, axes = _grid(len(tasks), w=3.0 if len(tasks) > 1 else 4.0, h=2.4 if len(tasks) > 1 else 2.8)
        for ax, task in zip(axes, tasks, strict=False):
            ys = []
            for n in names:
                if (task, n) not in curves:
                    continue
                x, y = curves[(task, n)]
                s = st[n]
                ax.plot(x, y, color=s["color"], ls=s["ls"], lw=s["lw"], zorder=s["z"], label=n)
                ys.append(y)
            _yscale(ax, ys)
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("step")
            ax.grid(color="0.92")
        axes[0].set_ylabel(f"{res.config.series.replace('_', ' ')} (EMA {res.config.ema_alpha:g})")
        if legend:
            handles = [Line2D([], [], color=st[n]["color"], ls=st[n]["ls"], lw=st[n]["lw"], label=n) for n in names]
            fig.legend(handles=handles, loc="outside right center", frameon=False)
    return fig


def lr_sensitivity(res: Results) -> Figure | None:
    """Final loss (mean over seeds) against learning rate per task, hand-crafted optimizers.

    Points where some seed diverged or failed are drawn as open markers at the top edge.
    """
    r = res.runs[(res.runs["optimizer_kind"] == "handcrafted") & res.runs["learning_rate"].notna()]
    if r.empty:
        return None
    names = [n for n in _all(res) if n in set(r["optimizer"])]
    st = styles(res)
    tasks = sorted(set(r["task"]))
    with matplotlib.rc_context(STYLE):
        fig, axes = _grid(len(tasks))
        for ax, task in zip(axes, tasks, strict=False):
            t = r[r["task"] == task]
            finite_all = t["final_loss"][np.isfinite(t["final_loss"])]
            top = float(finite_all.max()) if len(finite_all) else 1.0
            top += 0.05 * (top - (float(finite_all.min()) if len(finite_all) else 0.0))
            for n in names:
                g = t[t["optimizer"] == n]
                if g.empty:
                    continue
                by = g.groupby("learning_rate")
                mean = by["final_loss"].mean()
                bad = by["final_loss"].apply(lambda v: (~np.isfinite(v)).any())
                s = st[n]
                ok = mean[~bad]
                ax.plot(ok.index, ok.values, color=s["color"], ls=s["ls"], lw=s["lw"] * 0.8,
                        marker=KIND_MARKERS["handcrafted"], ms=3.5, zorder=s["z"], label=n)
                if bad.any():
                    ax.plot(mean[bad].index, [top] * int(bad.sum()), ls="none", marker="x",
                            color=s["color"], ms=6, zorder=s["z"])
                chosen = g[g["selected"]]["learning_rate"].unique()
                sel = ok[ok.index.isin(chosen)]
                ax.plot(sel.index, sel.values, ls="none", marker="o", ms=7, mfc="none",
                        mec=s["color"], mew=1.5, zorder=s["z"] + 1)
            ax.set_xscale("log")
            _yscale(ax, [finite_all.to_numpy()])
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("learning rate")
            ax.grid(color="0.92")
        axes[0].set_ylabel("final loss (mean over seeds)")
        handles = [Line2D([], [], color=st[n]["color"], ls=st[n]["ls"], marker="o", ms=3.5, label=n) for n in names]
        handles += [Line2D([], [], ls="none", marker="o", mfc="none", mec="0.2", ms=7, label="tuned"),
                    Line2D([], [], ls="none", marker="x", color="0.2", label="diverged/failed")]
        fig.legend(handles=handles, loc="outside right center", frameon=False)
    return fig


def poi_heatmap(poi: dict[str, pd.DataFrame], res: Results) -> Figure:
    """P(row better than column) for final-loss and speedup scores."""
    n = len(next(iter(poi.values())))
    size = max(3.2, 0.42 * n + 1.6)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(2 * size + 0.8, size), layout="constrained")
        axes = fig.subplots(1, 2)
        for i, (ax, crit) in enumerate(zip(axes, ("final_loss", "speedup"), strict=True)):
            m = poi[crit]
            sns.heatmap(m, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=n <= 16, fmt=".2f",
                        annot_kws={"fontsize": 7}, square=True, cbar=i == 1,
                        cbar_kws={"label": "P(row > column)", "shrink": 0.8}, linewidths=0.5,
                        linecolor="white")
            ax.set_title(f"{crit.replace('_', ' ')} score: P(row > column)")
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.tick_params(axis="x", rotation=45)
            ax.tick_params(axis="y", rotation=0)
            for lab in ax.get_xticklabels():
                lab.set_horizontalalignment("right")
    return fig


def tier_scatter(comparison: Comparison) -> Figure:
    """One panel per criterion: each common optimizer's IQM in suite A (x) against suite B
    (y), with both 95% CIs as error bars, the diagonal y = x, and Kendall's tau in the title."""
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
            for name, x, y in zip(g.optimizers, g.iqm_a, g.iqm_b, strict=True):
                bold = name in (HIGHLIGHT, "adam")
                ax.annotate(name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7,
                            fontweight="bold" if bold else "normal")
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
