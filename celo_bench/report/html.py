"""``index.html``: the leaderboard page, self-contained (figures as data URIs) or as a site's index.

What a reader sees first: the title, one sentence on what the numbers are and who leads, the
suite's measured agreement with another tier (when its spec records it), then the seven
columns needed to rank (:data:`celo_bench.report.leaderboard.MAIN`; a CI wraps under its value
on a narrow screen instead of pushing columns off it). Below: what is not shown and why, the
notes, the sample-efficiency curves, the full table (every column with a value), the figures,
the tier agreement and a per-task drill-down. Tables sort on a click (numbers numerically,
through each cell's ``data-v``). No network is needed and nothing depends on the time it was
generated. In a site (:mod:`celo_bench.report.site`) images are files beside the page and each
optimizer links to its own page.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from celo_bench.compare import SUMMARY_COLUMNS, Comparison, summary_rows
from celo_bench.report.leaderboard import (
    MAIN,
    _notes,
    agreement_line,
    columns,
    coverage_line,
    device_line,
    not_run_lines,
    shown,
)
from celo_bench.report.tables import num, pm
from celo_bench.results import REFERENCE_MARK, Results, reference_line
from celo_bench.suite import Registry

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem auto;max-width:1200px;
padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.45rem;margin-bottom:.3rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.lede{font-size:1rem;margin:.2rem 0 .6rem}.agreement{background:#f3f6fa;border-left:3px solid #0072B2;
padding:.4rem .7rem;font-size:.9rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{padding:.25rem .45rem;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
th{white-space:normal;vertical-align:bottom}
th.l,td.l{text-align:left}td.wrap{white-space:normal;min-width:7em;max-width:15em}td.prose{white-space:normal;max-width:48em;overflow-wrap:anywhere}
td .ci{color:#666;font-size:.85em;white-space:nowrap}
th.sortable{cursor:pointer;user-select:none;background:#f4f4f4}
th.sortable:after{content:" \\2195";color:#999}
tr.reference td{font-weight:600}tr.highlight td{background:#fbeeee}.new{color:#a33;font-weight:600}tr.incomplete td{color:#777}
tr.submission td:nth-child(2){border-left:3px solid #0072B2}
img{max-width:100%;height:auto;border:1px solid #eee}figure{margin:1rem 0}
details{margin:.4rem 0}summary{cursor:pointer;font-weight:600}
.meta,.notes{color:#555;font-size:.85rem}.scroll{overflow-x:auto}code{background:#f4f4f4;padding:0 .2rem}
@media (max-width:900px){td .ci{display:block}body{margin:1rem auto}}
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

Src = Callable[[Path], str]
"""How a page refers to a PNG: a data URI (self-contained page) or a relative path (site)."""


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def _td(text: str, value: object = None, cls: str = "") -> str:
    v = text if value is None or (isinstance(value, float) and pd.isna(value)) else value
    c = f' class="{cls}"' if cls else ""
    return f'<td{c} data-v="{escape(str(v))}">{escape(text)}</td>'


def _code(text: str) -> str:
    """Markdown `code` and **bold** spans (already HTML-escaped) as elements."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _cell(col: Any, r: Any, link: Callable[[str], str | None], highlight: str | None = None) -> str:
    """One leaderboard cell; a value with a CI puts the CI in a span that may wrap below it."""
    text, value = col.text(r), col.value(r)
    v = escape(str(text if value is None or (isinstance(value, float) and pd.isna(value)) else value))
    if col.key == "optimizer":
        href = link(r.optimizer)
        name = escape(r.optimizer) + (f" {REFERENCE_MARK}" if getattr(r, "source", "store") != "store" else "")
        inner = f'<a href="{escape(href)}">{name}</a>' if href else name
        new = ' <span class="new">◀ new</span>' if r.optimizer == highlight else ""  # as leaderboard.md marks it
        return f'<td class="l" data-v="{v}">{inner}{new}</td>'
    if col.key == "kind":
        return f'<td class="l wrap" data-v="{v}">{escape(text)}</td>'
    m = re.fullmatch(r"(\S+) (\[.*\])", text)
    if m:
        return f'<td data-v="{v}">{escape(m.group(1))} <span class="ci">{escape(m.group(2))}</span></td>'
    return f'<td data-v="{v}">{escape(text)}</td>'


def leaderboard_table(res: Results, cols: Sequence[Any], table_id: str,
                      link: Callable[[str], str | None] = lambda _: None, highlight: str | None = None) -> str:
    """The leaderboard as a sortable table of `cols` (:func:`celo_bench.report.leaderboard.columns`)."""
    ref = res.config.reference
    rows = []
    for r in res.aggregate.itertuples(index=False):
        cls = "reference" if r.optimizer == ref else ("highlight" if r.optimizer in ("celo", highlight) else "")
        cls += " submission" if r.optimizer_kind == "submission" else ""
        cls += "" if r.complete else " incomplete"
        rows.append(f'<tr class="lb-row {cls.strip()}" data-optimizer="{escape(r.optimizer)}">'
                    + "".join(_cell(c, r, link, highlight) for c in cols) + "</tr>")
    head = "".join(f'<th class="l">{escape(c.header)}</th>' if c.key in ("optimizer", "kind")
                   else f"<th>{escape(c.header)}</th>" for c in cols)
    return (f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n'
            + "\n".join(rows) + "\n</tbody></table></div>")


def task_section(res: Results, task: str, png: Path | None, src: Src) -> str:
    t = res.tasks[res.tasks["task"] == task]
    order = {o: i for i, o in enumerate(res.aggregate["optimizer"])}
    t = t.assign(_o=t["optimizer"].map(order)).sort_values("_o")
    head = ["optimizer", "tuned point", "grid edge", "final loss score", "speedup score",
            "final loss", "seeds", "diverged", "failed"]
    rows = []
    for r in t.itertuples(index=False):
        rows.append("<tr>" + "".join([
            _td(r.optimizer, cls="l"), _td(r.hparam_id if r.tuned else f"{r.hparam_id} (not tuned)", cls="l"),
            _td(r.edge or ""),
            _td(pm(r.final_loss_score_mean, r.final_loss_score_std), r.final_loss_score_mean),
            _td(pm(r.speedup_score_mean, r.speedup_score_std), r.speedup_score_mean),
            _td(num(r.final_loss_mean, 4), r.final_loss_mean), _td(str(r.seeds), r.seeds),
            _td(f"{r.diverged}/{r.runs}", r.diverged), _td(f"{r.failed}/{r.runs}", r.failed),
        ]) + "</tr>")
    img = f'<p><img alt="training curves of {escape(task)}" src="{escape(src(png))}"></p>' if png else ""
    return (f'<details class="task" id="task-{escape(task)}"><summary>{escape(task)}</summary>'
            '<div class="scroll"><table class="sortable"><thead><tr>'
            + "".join(f'<th class="l">{escape(h)}</th>' if i < 2 else f"<th>{escape(h)}</th>"
                      for i, h in enumerate(head))
            + "</tr></thead><tbody>" + "".join(rows) + f"</tbody></table></div>{img}</details>")


def tier_section(tiers: Sequence[tuple[Comparison, Path]], skipped: Sequence[str], src: Src) -> str:
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
                     f'<figure><img alt="tier agreement {escape(c.a)} vs {escape(c.b)}" src="{escape(src(png))}">'
                     f"<figcaption>IQM in {escape(c.a)} against IQM in {escape(c.b)} with 95% CIs"
                     "</figcaption></figure>")
        parts += [f'<p class="notes">caveat: {escape(line)}</p>' for line in c.caveats()]
    parts += [f'<p class="notes">{_code(escape(line))}</p>' for line in skipped]
    return "\n".join(parts)


def lede(res: Results) -> str:
    """One sentence: how many optimizers on how many tasks, what the score is, who leads."""
    a = res.aggregate
    ranked = a[a["rank"].notna()]
    ref = res.config.reference
    lead = ""
    if len(ranked):
        top = ranked.iloc[0]
        lead = (f" First: <strong>{escape(top['optimizer'])}</strong> (final loss IQM "
                f"{num(top['final_loss_iqm'])}, speedup IQM {num(top['speedup_iqm'])}).")
    return (f"{len(ranked)} optimizers ranked on {len(res.suite_tasks)} tasks, each scored against "
            f"learning-rate-tuned <code>{escape(ref)}</code> on every task and seed (&gt; 1 beats it).{lead}")


def render(res: Results, registry: Registry, figures: Mapping[str, Path], task_pngs: Mapping[str, Path],
           tiers: Sequence[tuple[Comparison, Path]] = (), skipped: Sequence[str] = (), *,
           src: Src = data_uri, link: Callable[[str], str | None] = lambda _: None,
           highlight: str | None = None, verification: Mapping[str, Mapping[str, Any] | None] | None = None,
           efficiency: Path | None = None) -> str:
    """The whole page. `figures` maps a caption to a PNG, `task_pngs` a task to its curves,
    `tiers` pairs each tier comparison with its scatter PNG, `skipped` says which other suites
    could not be compared; `src` turns a PNG into an ``img`` source and `link` an optimizer
    into the address of its page (None: no page); `efficiency`: the sample-efficiency PNG."""
    c = res.config
    cols = columns(res, highlight=highlight, verification=verification)
    full, hidden = shown(res, cols)
    main = [col for col in cols if col.key in MAIN]
    spec = registry.suites.get(res.suite)
    agreement = agreement_line(spec.agreement if spec else None, res.suite)
    agreement = f'<p class="agreement">{_code(escape(agreement))}</p>' if agreement else ""
    figs = "\n".join(f'<figure><img alt="{escape(cap)}" src="{escape(src(p))}"><figcaption>{escape(cap)}'
                     "</figcaption></figure>" for cap, p in figures.items())
    notes = "".join(f"<li>{_code(escape(n))}</li>" for n in [*hidden, *_notes(res, registry)])
    unrun = not_run_lines(res)
    not_run = ("" if not unrun else
               f'<h2 id="not-run">Not run or without a finished run ({len(unrun)})</h2>\n<ul class="not-run">'
               + "".join(f"<li>{_code(escape(n))}</li>" for n in unrun) + "</ul>")
    curves = ("" if efficiency is None else
              '<h2 id="training-progress">Along training</h2><figure><img alt="sample-efficiency curves" '
              f'src="{escape(src(efficiency))}"><figcaption>IQM of the final-loss score had training stopped at '
              "each fraction of the horizon (95% stratified-bootstrap CIs), for the reference, Celo, the top five "
              "and any submission; each curve ends at its final-loss IQM.</figcaption></figure>")
    tasks = "\n".join(task_section(res, t, task_pngs.get(t), src) for t in sorted(set(res.tasks["task"])))
    wall = device_line(res) + " " if any(col.key == "wall_clock" for col in full) else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>celo-bench: suite {escape(res.suite)}</title><style>{CSS}</style></head>
<body>
<h1>celo-bench leaderboard: suite <code>{escape(res.suite)}</code> v{escape(res.suite_version)}</h1>
<p class="lede">{lede(res)}</p>
{f'<p class="agreement">{_code(escape(reference_line(res)))}</p>' if res.from_references else ""}
{agreement}
{leaderboard_table(res, main, "leaderboard", link, highlight)}
<p class="meta">Results <code>{escape(res.fingerprint)}</code>. Final loss <code>L_{escape(c.reference)} / L</code>,
speedup <code>T / t_hit</code>; interquartile mean over tasks &times; seeds with 95% stratified-bootstrap
intervals ({res.reps} repetitions, seed {res.seed}). Series <code>{escape(c.series)}</code>, EMA
&alpha;={c.ema_alpha:g}, tuning <code>{escape(c.selection)}</code>, diverged runs <code>{escape(c.diverged)}</code>.
{_code(escape(wall + coverage_line(res)))} Click a column header to sort; every column is in the
<a href="#all-columns">full table</a>.</p>
<ul class="notes">{notes}</ul>
{not_run}
{curves}
<details id="all-columns"><summary>Full table: every column with a value ({len(full)})</summary>
{leaderboard_table(res, full, "leaderboard-full", link, highlight)}
</details>
<h2>Figures</h2>
{figs}
{tier_section(tiers, skipped, src)}
<h2>Per task</h2>
{tasks}
<script>{JS}</script>
</body></html>
"""
