"""``index.html``: one self-contained page (inline CSS/JS, figures as data URIs).

The leaderboard is a sortable table (click a header; numbers sort numerically through each
cell's ``data-v``), followed by the figures and a per-task drill-down. No network is needed
to view it and nothing in it depends on the time it was generated.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from html import escape
from pathlib import Path

import pandas as pd

from celo_bench.compare import SUMMARY_COLUMNS, Comparison, summary_rows
from celo_bench.report.leaderboard import _notes, coverage_line, device_line, not_run_lines
from celo_bench.report.tables import num, pm, with_ci
from celo_bench.results import Results, coverage_text
from celo_bench.suite import Registry

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1400px;
padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{padding:.25rem .45rem;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
th{white-space:normal;vertical-align:bottom}
th:nth-child(-n+3),td:nth-child(-n+3){text-align:left}
th.sortable{cursor:pointer;user-select:none;background:#f4f4f4}
th.sortable:after{content:" \\2195";color:#999}
tr.reference td{font-weight:600}tr.highlight td{background:#fbeeee}tr.incomplete td{color:#777}
img{max-width:100%;height:auto;border:1px solid #eee}
details{margin:.4rem 0}summary{cursor:pointer;font-weight:600}
.meta,.notes{color:#555;font-size:.85rem}.scroll{overflow-x:auto}code{background:#f4f4f4;padding:0 .2rem}
"""

# Hand-written (a dozen lines) so the page has no dependency and no network fetch.
JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.classList.add("sortable");
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var asc = th.getAttribute("data-dir") !== "asc";
      th.setAttribute("data-dir", asc ? "asc" : "desc");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def _td(text: str, value: object = None) -> str:
    v = text if value is None or (isinstance(value, float) and pd.isna(value)) else value
    return f'<td data-v="{escape(str(v))}">{escape(text)}</td>'


def _code(text: str) -> str:
    """Markdown `code` spans (already HTML-escaped) as <code> elements."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def leaderboard_table(res: Results) -> str:
    ref = res.config.reference
    head = ["#", "optimizer", "kind", "final loss IQM [95% CI]", "FL IQM, missing tasks = 0",
            "speedup IQM [95% CI]", f"wall-clock speedup IQM [95% CI] ({res.device_kind})", "FL mean",
            "FL opt. gap", "SU mean", "SU opt. gap", f"P(better than {ref})", "diverged", "failed", "coverage"]
    rows = []
    for r in res.aggregate.itertuples(index=False):
        cls = "reference" if r.optimizer == ref else ("highlight" if r.optimizer == "celo" else "")
        cls += "" if r.complete else " incomplete"
        cells = [
            _td(str(r.rank) if pd.notna(r.rank) else "-", r.rank if pd.notna(r.rank) else 1e9),
            _td(r.optimizer), _td(r.kind_label),
            _td(with_ci(r.final_loss_iqm, r.final_loss_iqm_low, r.final_loss_iqm_high), r.final_loss_iqm),
            _td(num(r.final_loss_iqm_zero_filled), r.final_loss_iqm_zero_filled),
            _td(with_ci(r.speedup_iqm, r.speedup_iqm_low, r.speedup_iqm_high), r.speedup_iqm),
            _td(with_ci(r.wall_clock_speedup_iqm, r.wall_clock_speedup_iqm_low, r.wall_clock_speedup_iqm_high),
                r.wall_clock_speedup_iqm),
            _td(num(r.final_loss_mean), r.final_loss_mean),
            _td(num(r.final_loss_optimality_gap), r.final_loss_optimality_gap),
            _td(num(r.speedup_mean), r.speedup_mean),
            _td(num(r.speedup_optimality_gap), r.speedup_optimality_gap),
            _td(with_ci(r.poi_vs_reference, r.poi_vs_reference_low, r.poi_vs_reference_high, 2),
                r.poi_vs_reference),
            _td(str(r.diverged), r.diverged), _td(str(r.failed), r.failed),
            _td(coverage_text(r.tasks, r.tasks_total), r.coverage),
        ]
        rows.append(f'<tr class="lb-row {cls}" data-optimizer="{escape(r.optimizer)}">' + "".join(cells) + "</tr>")
    return ('<div class="scroll"><table class="sortable" id="leaderboard"><thead><tr>'
            + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>\n"
            + "\n".join(rows) + "\n</tbody></table></div>")


def task_section(res: Results, task: str, png: Path | None) -> str:
    t = res.tasks[res.tasks["task"] == task]
    order = {o: i for i, o in enumerate(res.aggregate["optimizer"])}
    t = t.assign(_o=t["optimizer"].map(order)).sort_values("_o")
    head = ["optimizer", "tuned point", "grid edge", "final loss score", "speedup score",
            "final loss", "seeds", "diverged", "failed"]
    rows = []
    for r in t.itertuples(index=False):
        rows.append("<tr>" + "".join([
            _td(r.optimizer), _td(r.hparam_id if r.tuned else f"{r.hparam_id} (not tuned)"),
            _td(r.edge or ""),
            _td(pm(r.final_loss_score_mean, r.final_loss_score_std), r.final_loss_score_mean),
            _td(pm(r.speedup_score_mean, r.speedup_score_std), r.speedup_score_mean),
            _td(num(r.final_loss_mean, 4), r.final_loss_mean), _td(str(r.seeds), r.seeds),
            _td(f"{r.diverged}/{r.runs}", r.diverged), _td(f"{r.failed}/{r.runs}", r.failed),
        ]) + "</tr>")
    img = f'<p><img alt="training curves of {escape(task)}" src="{data_uri(png)}"></p>' if png else ""
    return (f'<details class="task" id="task-{escape(task)}"><summary>{escape(task)}</summary>'
            '<div class="scroll"><table class="sortable"><thead><tr>'
            + "".join(f"<th>{escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + f"</tbody></table></div>{img}</details>")


def tier_section(tiers: Sequence[tuple[Comparison, Path]], skipped: Sequence[str]) -> str:
    """The tier-agreement section: one table and scatter per other suite with results."""
    if not tiers and not skipped:
        return ""
    parts = ['<h2 id="tier-agreement">Tier agreement with other suites</h2>',
             '<p class="meta">How far this suite\'s ranking predicts another suite\'s: Kendall\'s &tau; and '
             "Spearman's &rho; between the IQM rankings of the optimizers both scored, with 95% bootstrap CIs "
             "(seeds resampled within tasks), and the overlap of the two top-k sets "
             "(<code>celo-bench compare-suites A B</code>).</p>"]
    for c, png in tiers:
        head = "".join(f"<th>{escape(h)}</th>" for h in SUMMARY_COLUMNS)
        body = "".join("<tr>" + "".join(_td(x) for x in row) + "</tr>" for row in summary_rows(c))
        parts.append(f"<h3>{escape(c.a)} vs {escape(c.b)}</h3><div class=\"scroll\"><table><thead><tr>{head}"
                     f"</tr></thead><tbody>{body}</tbody></table></div>"
                     f'<figure><img alt="tier agreement {escape(c.a)} vs {escape(c.b)}" src="{data_uri(png)}">'
                     f"<figcaption>IQM in {escape(c.a)} against IQM in {escape(c.b)} with 95% CIs"
                     "</figcaption></figure>")
        parts += [f'<p class="notes">caveat: {escape(line)}</p>' for line in c.caveats()]
    parts += [f'<p class="notes">{_code(escape(line))}</p>' for line in skipped]
    return "\n".join(parts)


def render(res: Results, registry: Registry, figures: dict[str, Path], task_pngs: dict[str, Path],
           tiers: Sequence[tuple[Comparison, Path]] = (), skipped: Sequence[str] = ()) -> str:
    """The whole page; `figures` maps a caption to a PNG, `task_pngs` a task to its curves,
    `tiers` pairs each tier comparison with its scatter PNG, `skipped` says which other
    suites could not be compared."""
    c = res.config
    figs = "\n".join(f'<figure><img alt="{escape(cap)}" src="{data_uri(p)}"><figcaption>{escape(cap)}'
                     "</figcaption></figure>" for cap, p in figures.items())
    notes = "".join(f"<li>{_code(escape(n))}</li>" for n in _notes(res, registry))
    unrun = not_run_lines(res)
    not_run = ("" if not unrun else
               f'<h2 id="not-run">Not run or without a finished run ({len(unrun)})</h2>\n<ul class="not-run">'
               + "".join(f"<li>{_code(escape(n))}</li>" for n in unrun) + "</ul>")
    tasks = "\n".join(task_section(res, t, task_pngs.get(t)) for t in sorted(set(res.tasks["task"])))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>celo-bench: suite {escape(res.suite)}</title><style>{CSS}</style></head>
<body>
<h1>celo-bench leaderboard: suite <code>{escape(res.suite)}</code> v{escape(res.suite_version)}</h1>
<p class="meta">Results <code>{escape(res.fingerprint)}</code>. Scores are relative to learning-rate-tuned
<code>{escape(c.reference)}</code> on each task and seed: final loss <code>L_{escape(c.reference)} / L</code> and
speedup <code>T / t_hit</code> (&gt; 1 is better), aggregated with the interquartile mean over tasks &times; seeds,
95% stratified-bootstrap intervals ({res.reps} repetitions, seed {res.seed}). Series <code>{escape(c.series)}</code>,
EMA &alpha;={c.ema_alpha:g}, tuning <code>{escape(c.selection)}</code>, diverged runs <code>{escape(c.diverged)}</code>.
{_code(escape(device_line(res)))} {_code(escape(coverage_line(res)))} Click a column header to sort.</p>
{leaderboard_table(res)}
<ul class="notes">{notes}</ul>
{not_run}
<h2>Figures</h2>
{figs}
{tier_section(tiers, skipped)}
<h2>Per task</h2>
{tasks}
<script>{JS}</script>
</body></html>
"""
