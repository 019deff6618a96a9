"""Report tables: one numeric frame each, written as CSV, Markdown and LaTeX (booktabs).

Every renderer is a pure function of the scored results, with fixed number formats and a
fixed row order, so regenerating from the same results gives byte-identical files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from celo_bench import fileio
from celo_bench.aggregate import probability_of_improvement
from celo_bench.compare import SUMMARY_COLUMNS, Comparison, summary_rows
from celo_bench.results import Results, coverage_text


def num(x: float | None, digits: int = 3) -> str:
    """Fixed-precision number; '-' for a missing one."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or pd.isna(x):
        return "-"
    return f"{float(x):.{digits}f}"


def with_ci(p: float, lo: float, hi: float, digits: int = 3) -> str:
    if pd.isna(p):
        return "-"
    return f"{num(p, digits)} [{num(lo, digits)}, {num(hi, digits)}]"


def pm(mean: float, spread: float, digits: int = 3) -> str:
    if pd.isna(mean):
        return "-"
    return f"{num(mean, digits)} ± {num(spread, digits)}"


@dataclass(frozen=True)
class Table:
    """A rendered table: display strings for Markdown/LaTeX and numbers for CSV."""

    name: str
    caption: str
    columns: list[str]
    rows: list[list[str]]
    data: pd.DataFrame
    align: str = ""  # one of l/r per column; default: first left, rest right

    def _align(self) -> str:
        return self.align or "l" + "r" * (len(self.columns) - 1)

    def markdown(self) -> str:
        def cell(s: str) -> str:
            return str(s).replace("|", "\\|")

        sep = ["---" if a == "l" else "--:" for a in self._align()]
        lines = ["| " + " | ".join(cell(c) for c in self.columns) + " |", "| " + " | ".join(sep) + " |"]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{tex(self.caption)}}}",
                 f"\\label{{tab:{self.name.replace('_', '-')}}}",
                 f"\\begin{{tabular}}{{{self._align()}}}", "\\toprule",
                 " & ".join(tex(c) for c in self.columns) + " \\\\", "\\midrule"]
        lines += [" & ".join(tex(c) for c in row) + " \\\\" for row in self.rows]
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        return self.data.to_csv(index=False, float_format="%.6g", lineterminator="\n")

    def write(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for ext, text in (("csv", self.csv()), ("md", self.markdown()), ("tex", self.latex())):
            path = fileio.atomic_write_text(folder / f"{self.name}.{ext}", text)
            out.append(path)
        return out


_TEX = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_",
        "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}",
        ">": "$>$", "<": "$<$"}


def tex(s: str) -> str:
    """Escape LaTeX specials; ± becomes math mode."""
    return "".join(_TEX.get(ch, ch) for ch in str(s)).replace("±", "$\\pm$")


# ---- the tables -----------------------------------------------------------------------


def aggregate(res: Results) -> Table:
    """One row per optimizer, in leaderboard order: IQM with CIs, the other aggregates and
    the coverage (a row short of full coverage is marked incomplete; its IQM with missing
    tasks scored 0 is beside)."""
    a = res.aggregate
    cols = ["rank", "optimizer", "optimizer_kind", "kind_label", "tasks", "tasks_total", "coverage",
            "complete", "runs"] + [
        c for c in a.columns if c.startswith(("final_loss_", "speedup_", "wall_clock_speedup_", "poi_vs_"))
    ] + ["diverged", "failed", "tuned_diverged", "tuned_failed", "edges"]
    ref = res.config.reference
    rows = [[
        num(r.rank, 0) if pd.notna(r.rank) else "-", r.optimizer, r.kind_label,
        with_ci(r.final_loss_iqm, r.final_loss_iqm_low, r.final_loss_iqm_high),
        num(r.final_loss_iqm_zero_filled),
        with_ci(r.speedup_iqm, r.speedup_iqm_low, r.speedup_iqm_high),
        with_ci(r.wall_clock_speedup_iqm, r.wall_clock_speedup_iqm_low, r.wall_clock_speedup_iqm_high),
        num(r.final_loss_median), num(r.final_loss_mean), num(r.final_loss_optimality_gap),
        num(r.speedup_median), num(r.speedup_mean), num(r.speedup_optimality_gap),
        num(r.poi_vs_reference, 2), coverage_text(r.tasks, r.tasks_total),
    ] for r in a.itertuples(index=False)]
    columns = ["#", "optimizer", "kind", "final loss IQM [95% CI]", "FL IQM, missing = 0",
               "speedup IQM [95% CI]", f"wall-clock SU IQM [95% CI] ({res.device_kind})", "FL median", "FL mean", "FL opt. gap", "SU median", "SU mean",
               "SU opt. gap", f"P(FL > {ref})", "coverage"]
    align = "rllrrrrrrrrrrrr"
    keep = [j for j in range(len(columns)) if j < 3 or any(row[j] not in ("-", "") for row in rows)]
    columns, align = [columns[j] for j in keep], "".join(align[j] for j in keep)
    rows = [[row[j] for j in keep] for row in rows]  # a column without a value is not shown (the CSV keeps it)
    return Table("aggregate", f"Scores relative to tuned {ref}, aggregated over tasks and seeds "
                 f"(IQM with 95% stratified-bootstrap CIs, {res.reps} repetitions; coverage rule "
                 f"{res.coverage_rule}; wall-clock speedup from per-step timings on device kind "
                 f"{res.device_kind}).", columns, rows, a[cols], align=align)


def per_task(res: Results, criterion: str) -> Table:
    """Tasks x optimizers, cells mean ± std over seeds of the final-loss or speedup score."""
    col = {"final_loss": "final_loss_score", "speedup": "speedup_score"}[criterion]
    t = res.tasks
    order = [o for o in res.aggregate["optimizer"] if o in set(t["optimizer"])]
    tasks = sorted(set(t["task"]))
    idx = t.set_index(["task", "optimizer"])
    rows = []
    for task in tasks:
        row = [task]
        for o in order:
            if (task, o) in idx.index and idx.loc[(task, o), "scored"]:
                r = idx.loc[(task, o)]
                row.append(pm(r[f"{col}_mean"], r[f"{col}_std"]))
            else:
                row.append("-")
        rows.append(row)
    covered = res.aggregate.set_index("optimizer")
    rows.append(["coverage"] + [coverage_text(int(covered.loc[o, "tasks"]), int(covered.loc[o, "tasks_total"]))
                                for o in order])
    data = t[["task", "optimizer", "optimizer_kind", "hparam_id", "edge", "seeds",
              f"{col}_mean", f"{col}_std", "runs", "diverged", "failed"]].rename(
        columns={f"{col}_mean": "mean", f"{col}_std": "std"})
    data = data.assign(scored=t["scored"].to_numpy(),
                       coverage=t["optimizer"].map(covered["coverage"]).to_numpy())
    label = {"final_loss": "Final-loss score", "speedup": "Speedup score"}[criterion]
    return Table(f"per_task_{criterion}", f"{label} per task relative to tuned {res.config.reference} "
                 "(mean ± standard deviation over seeds); last row: tasks scored / tasks in the suite.",
                 ["task"] + order, rows, data)


def overhead(bench_dir: Path) -> Table | None:
    """Runtime per step from ``<bench_dir>/overhead.json`` (``celo-bench bench overhead --out DIR``)."""
    path = Path(bench_dir) / "overhead.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        if isinstance(raw, dict):
            raw = raw.get("rows") or raw.get("optimizers") or []
        data = pd.DataFrame([{"optimizer": str(r["optimizer"]), "ms_per_step": float(r["ms_per_step"]),
                              "ratio_vs_adam": float(r.get("ratio_vs_adam", float("nan")))} for r in raw])
    except (ValueError, KeyError, TypeError):
        return None
    if data.empty:
        return None
    data = data.sort_values(["ms_per_step", "optimizer"]).reset_index(drop=True)
    rows = [[r.optimizer, num(r.ms_per_step, 2), num(r.ratio_vs_adam, 2)] for r in data.itertuples(index=False)]
    return Table("overhead", "Wall-clock time per optimizer step and its ratio to Adam.",
                 ["optimizer", "ms / step", "x Adam"], rows, data)


def ablation(res: Results, a: str = "celo", b: str = "celo_adam") -> Table | None:
    """Celo vs Celo-Adam (learned scheduler with Adam's update rule), when both are scored."""
    agg = res.aggregate.set_index("optimizer")
    if a not in agg.index or b not in agg.index or pd.isna(agg.loc[a, "final_loss_iqm"]) \
            or pd.isna(agg.loc[b, "final_loss_iqm"]):
        return None
    rows, data = [], []
    for name in (a, b):
        r = agg.loc[name]
        rows.append([name, with_ci(r.final_loss_iqm, r.final_loss_iqm_low, r.final_loss_iqm_high),
                     with_ci(r.speedup_iqm, r.speedup_iqm_low, r.speedup_iqm_high),
                     num(r.final_loss_optimality_gap), num(r.speedup_optimality_gap),
                     coverage_text(int(r.tasks), int(r.tasks_total))])
        data.append({"optimizer": name} | {k: r[k] for k in ("final_loss_iqm", "final_loss_iqm_low",
                     "final_loss_iqm_high", "speedup_iqm", "speedup_iqm_low", "speedup_iqm_high",
                     "final_loss_optimality_gap", "speedup_optimality_gap", "coverage")})
    for crit in ("final_loss", "speedup"):
        ma, mb = res.matrices[crit].get(a), res.matrices[crit].get(b)
        if ma is not None and mb is not None:
            p, lo, hi = probability_of_improvement(ma, mb, reps=res.reps, seed=res.seed)
            data.append({"optimizer": f"P({a} > {b}) {crit}", "final_loss_iqm": p,
                         "final_loss_iqm_low": lo, "final_loss_iqm_high": hi})
            rows.append([f"P({a} > {b}), {crit.replace('_', ' ')}", with_ci(p, lo, hi, 2), "", "", "", ""])
    return Table("ablation_celo_adam", f"Ablation: {a} against {b} (learned scheduler with the Adam "
                 "update rule).", ["optimizer", "final loss IQM [95% CI]", "speedup IQM [95% CI]",
                                   "FL opt. gap", "SU opt. gap", "coverage"], rows, pd.DataFrame(data))


def tier_agreement(c: Comparison) -> Table:
    """Agreement of suite ``c.a``'s IQM ranking with suite ``c.b``'s, one row per criterion."""
    data = pd.DataFrame([{
        "suite_a": c.a, "suite_b": c.b, "criterion": g.criterion, "optimizers": len(g.optimizers),
        "kendall_tau": g.kendall[0], "kendall_tau_low": g.kendall[1], "kendall_tau_high": g.kendall[2],
        "spearman_rho": g.spearman[0], "spearman_rho_low": g.spearman[1], "spearman_rho_high": g.spearman[2],
        "top_k": g.k, "top_k_overlap": g.top_overlap,
    } for g in c.agreements])
    return Table(f"tier_agreement_{c.b}", f"Agreement of the IQM rankings of suites {c.a} and {c.b} over their "
                 f"common optimizers ({int(c.confidence * 100)}% bootstrap CIs resampling seeds within tasks, "
                 f"{c.reps} repetitions)." + "".join(f" Caveat: {line}." for line in c.caveats()),
                 SUMMARY_COLUMNS, summary_rows(c), data)


def sample_efficiency(curves: pd.DataFrame) -> Table:
    """IQM of the final-loss score along training (:func:`celo_bench.efficiency.sample_efficiency`
    rows): one row per optimizer, one column per fraction of the horizon."""
    fractions = sorted(set(curves["fraction"]))
    names = list(dict.fromkeys(curves["optimizer"]))
    cell = {(o, f): (i, lo, hi) for o, f, i, lo, hi in curves[["optimizer", "fraction", "iqm", "low", "high"]]
            .itertuples(index=False)}
    shown = [f for f in fractions if round(f * 100) % 25 == 0] or fractions  # 0, 1/4, 1/2, 3/4, 1
    rows = [[o] + [with_ci(*cell[(o, f)]) if (o, f) in cell else "-" for f in shown] for o in names]
    return Table("sample_efficiency", "IQM of the final-loss score had training stopped at each fraction of the "
                 "horizon, with 95% stratified-bootstrap CIs (the CSV holds every fraction).",
                 ["optimizer"] + [f"t/T = {f:g}" for f in shown], rows, curves)


def all_tables(res: Results, bench_dir: Path) -> list[Table]:
    """Every table of a report; the runtime table comes from the benchmark folder `bench_dir`."""
    tables = [aggregate(res), per_task(res, "final_loss"), per_task(res, "speedup")]
    return tables + [t for t in (overhead(bench_dir), ablation(res)) if t is not None]
