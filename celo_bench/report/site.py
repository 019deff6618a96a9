"""The static site (``celo-bench report --site DIR``): the leaderboard and one page per optimizer.

A site is a report folder whose pages refer to their images as files beside them and link
to each other by relative paths, so it works from any static host (or straight from disk)
with no server, no network and no CDN::

    DIR/index.html                    the leaderboard (:mod:`celo_bench.report.html`)
    DIR/optimizers/<name>.html        one page per optimizer: scores, verification status,
                                      submission card, curves per task, per-task table, provenance
    DIR/figures/optimizers/<name>.png that optimizer's tuned curves against the reference's
    DIR/figures/..., DIR/tables/...   as in every report

An optimizer page shows, in order: its scores (rank, both IQMs with CIs, P(better than the
reference), coverage); whether it was verified (a submission's ``verification.json``, kept
beside it in the store by ``celo-bench verify``/``import``: verified or not, with the sample
size); its card (a submission's description, authors, licence, hashes and meta-training card;
a baseline's reference); its curves per task; its per-task scores; and the provenance of its
records (device, backend, library versions, celo-bench version and commit, the submission's
hashes), each value with the number of records that carry it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from celo_bench import fileio
from celo_bench.defaults import VERIFICATION_NAME, submission_folder
from celo_bench.report.html import CSS, _code, _td
from celo_bench.report.leaderboard import verification_text
from celo_bench.report.tables import num, pm, with_ci
from celo_bench.results import Results, coverage_text
from celo_bench.store import Store
from celo_bench.suite import Registry

PAGES = "optimizers"
"""The site's folder of optimizer pages."""
PROVENANCE_FIELDS = ("device", "backend", "jax", "jaxlib", "optax", "flax", "python", "celo_bench", "git_commit",
                     "submission_source_sha256", "submission_checkpoint_sha256", "submission_authors",
                     "submission_license")


def page_name(name: str) -> str:
    """The file of optimizer `name`'s page inside :data:`PAGES` (names are file-safe already)."""
    return f"{name}.html"


def verifications(results: Path, res: Results) -> dict[str, dict[str, Any] | None]:
    """Submission -> its ``verification.json`` kept in the store (None when it has none or it
    cannot be read)."""
    out: dict[str, dict[str, Any] | None] = {}
    for name in res.aggregate.loc[res.aggregate["optimizer_kind"] == "submission", "optimizer"]:
        path = submission_folder(results, name) / VERIFICATION_NAME
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            out[name] = doc if isinstance(doc, dict) else None
        except (OSError, ValueError):
            out[name] = None
    return out


def provenance(results: Path, res: Results) -> dict[str, list[tuple[str, str, int]]]:
    """Optimizer -> (field, value, records) for the provenance of its scored records.

    The records are those of the scored runs (same suite, version, task, optimizer, grid point,
    seed and horizon); a field missing from a record counts as "unknown".
    """
    runs = res.runs[["task", "optimizer", "hparam_id", "seed", "num_steps"]].drop_duplicates()
    df = Store(results).read(optimizers=sorted(set(runs["optimizer"])), curves=False)
    if df.empty:
        return {}
    df = df[(df["suite"] == res.suite) & (df["suite_version"] == res.suite_version)]
    df = df.merge(runs, on=["task", "optimizer", "hparam_id", "seed", "num_steps"], how="inner")
    out: dict[str, list[tuple[str, str, int]]] = {}
    for opt, g in df.groupby("optimizer", sort=True):
        provs = [p if isinstance(p, dict) else json.loads(p or "{}") for p in g["provenance"]]
        rows = []
        for f in PROVENANCE_FIELDS:
            counts = Counter(str(p.get(f, "unknown")) for p in provs)
            if f.startswith("submission") and set(counts) == {"unknown"}:
                continue
            rows += [(f, v, n) for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        out[opt] = rows
    return out


def _scores(res: Results, r: Any) -> str:
    ref = res.config.reference
    rank = "not ranked" if pd.isna(r.rank) else f"rank {r.rank} of {int(res.aggregate['rank'].notna().sum())}"
    items = [rank, f"final loss IQM {with_ci(r.final_loss_iqm, r.final_loss_iqm_low, r.final_loss_iqm_high)}",
             f"speedup IQM {with_ci(r.speedup_iqm, r.speedup_iqm_low, r.speedup_iqm_high)}",
             f"P(better than {ref}) {with_ci(r.poi_vs_reference, r.poi_vs_reference_low, r.poi_vs_reference_high, 2)}",
             f"coverage {coverage_text(r.tasks, r.tasks_total)}",
             f"diverged / failed {r.diverged} / {r.failed} of {r.runs_total} runs"]
    return " · ".join(escape(x) for x in items)


def _verification(r: Any, v: Mapping[str, Any] | None, results: Path) -> str:
    if r.optimizer_kind != "submission":
        return ("<p>A baseline of celo-bench: its runs are made by <code>celo-bench run</code> from the specs "
                "that ship with it; there is no submitted code to verify.</p>")
    if not v:
        return ("<p><strong>Not verified.</strong> No re-run of its records is kept in this store "
                "(<code>celo-bench verify BUNDLE</code> re-runs a sample of them from the bundle's own code; "
                f"<code>celo-bench import</code> keeps the result in <code>{escape(str(results))}/.submissions/"
                f"{escape(r.optimizer)}/</code>).</p>")
    fields = [("status", verification_text(v))] + [
        (k.replace("_", " "), str(v[k])) for k in ("problem", "sample_size", "max_relative_difference", "tolerance",
                                                    "device", "device_kind", "same_device", "date")
        if v.get(k) not in (None, "")]
    body = "".join(f"<tr><th class=\"l\">{escape(k)}</th><td class=\"l\">{escape(x)}</td></tr>" for k, x in fields)
    return f"<table>{body}</table>"


def _card(name: str, registry: Registry) -> str:
    spec = registry.optimizers.get(name)
    if spec is None:
        return "<p>Not in the registry: its records carry its provenance (below).</p>"
    rows = [("kind", spec.kind_label), ("description", spec.description), ("reference", spec.reference),
            ("meta-training", spec.meta_training), ("factory", spec.factory),
            ("tuned over", ", ".join(f"{k} in {list(v)}" for k, v in spec.grid.items()) or "not tuned"),
            ("defaults", ", ".join(f"{k}={v}" for k, v in spec.defaults.items()))]
    if spec.checkpoint:
        rows.append(("checkpoint", ", ".join(f"{k}: {v}" for k, v in spec.checkpoint.items() if v)))
    body = "".join(f'<tr><th class="l">{escape(k)}</th><td class="l prose">{_code(escape(v))}</td></tr>'
                   for k, v in rows if v)
    return f"<table>{body}</table>"


def _tasks(res: Results, name: str) -> str:
    t = res.tasks[res.tasks["optimizer"] == name].sort_values("task")
    edges = bool((t["edge"] != "").any())  # the grid-edge column only where a tuned point sits on one
    head = ["task", "tuned point", *(["grid edge"] if edges else []), "final loss score", "speedup score",
            "final loss", "seeds", "diverged / failed"]
    rows = ["<tr>" + "".join([
        _td(r.task, cls="l"), _td(r.hparam_id if r.tuned else f"{r.hparam_id} (not tuned)", cls="l"),
        *([_td(r.edge or "")] if edges else []),
        _td(pm(r.final_loss_score_mean, r.final_loss_score_std), r.final_loss_score_mean),
        _td(pm(r.speedup_score_mean, r.speedup_score_std), r.speedup_score_mean),
        _td(num(r.final_loss_mean, 4), r.final_loss_mean), _td(str(r.seeds)),
        _td(f"{r.diverged} / {r.failed} of {r.runs}")]) + "</tr>" for r in t.itertuples(index=False)]
    head_html = "".join(f'<th class="l">{escape(h)}</th>' if i < 2 else f"<th>{escape(h)}</th>"
                        for i, h in enumerate(head))
    return f'<div class="scroll"><table><thead><tr>{head_html}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _provenance(rows: list[tuple[str, str, int]]) -> str:
    if not rows:
        return "<p>No stored record of the scored runs was found.</p>"
    body = "".join(f'<tr><th class="l">{escape(f)}</th><td class="l">{escape(v)}</td><td>{n}</td></tr>'
                   for f, v, n in rows)
    return f'<table><thead><tr><th class="l">field</th><th class="l">value</th><th>records</th></tr></thead>' \
           f"<tbody>{body}</tbody></table>"


def optimizer_page(res: Results, name: str, registry: Registry, *, curves: str | None, results: Path,
                   verification: Mapping[str, Any] | None, prov: list[tuple[str, str, int]]) -> str:
    """One optimizer's page; `curves` is the path of its curves PNG relative to the page."""
    r = next(row for row in res.aggregate.itertuples(index=False) if row.optimizer == name)
    img = (f'<figure><a href="{escape(curves)}"><img alt="tuned curves of {escape(name)} per task" '
           f'src="{escape(curves)}"></a>'
           "<figcaption>Tuned training curves per task (smoothed, mean over seeds; band: min-max over seeds) "
           f"against tuned {escape(res.config.reference)}.</figcaption></figure>") if curves else \
        "<p>No curve: no run of it finished.</p>"
    card = "Submission card" if r.optimizer_kind == "submission" else "Specification"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(name)}: celo-bench suite {escape(res.suite)}</title><style>{CSS}</style></head>
<body>
<p class="meta"><a href="../index.html">&larr; leaderboard of suite {escape(res.suite)} v{escape(res.suite_version)}</a></p>
<h1><code>{escape(name)}</code> <span class="meta">{escape(r.kind_label)}</span></h1>
<p class="lede">{_scores(res, r)}</p>
<h2 id="verification">Verification</h2>
{_verification(r, verification, results)}
<h2 id="card">{card}</h2>
{_card(name, registry)}
<h2 id="curves">Curves per task</h2>
{img}
<h2 id="tasks">Scores per task</h2>
{_tasks(res, name)}
<h2 id="provenance">Provenance of its records</h2>
{_provenance(prov)}
<p class="meta">Results <code>{escape(res.fingerprint)}</code>.</p>
</body></html>
"""


def write_pages(res: Results, out: Path, registry: Registry, *, results: Path, curves: Mapping[str, Path],
                verification: Mapping[str, Mapping[str, Any] | None]) -> list[Path]:
    """Write ``out/optimizers/<name>.html`` for every optimizer of the leaderboard; `curves` maps
    an optimizer to its curves PNG inside `out`. Returns the paths written."""
    prov = provenance(results, res)
    written = []
    for name in res.aggregate["optimizer"]:
        png = curves.get(name)
        rel = f"../{png.relative_to(out).as_posix()}" if png else None
        path = out / PAGES / page_name(name)
        fileio.atomic_write_text(path, optimizer_page(res, name, registry, curves=rel, results=results,
                                                      verification=verification.get(name), prov=prov.get(name, [])))
        written.append(path)
    return written


__all__ = ["PAGES", "optimizer_page", "page_name", "provenance", "verifications", "write_pages"]
