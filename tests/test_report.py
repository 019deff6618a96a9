"""Reports from fixture results: every file, determinism, LaTeX shape, the HTML page."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _score_fixtures import grid_records, record, registry, write
from typer.testing import CliRunner

from celo_bench.errors import CeloBenchError
from celo_bench.report import embed, write_report
from celo_bench.report.figures import DPI
from celo_bench.report.leaderboard import BEGIN, END
from celo_bench.results import score_results
from celo_bench.suite import OptimizerSpec, load_registry

TASKS = ["task_a", "task_b", "task_c"]
OPTS = {"adam": ("handcrafted", 1.0), "sgd": ("handcrafted", 1.4), "celo": ("learned", 0.8),
        "celo_adam": ("learned", 0.9), "lion": ("extra", 1.05), "mine": ("submission", 0.85)}
REPS = 50
CHROMIUM = Path("/usr/bin/chromium")


def _fixture_results(root: Path, reg) -> Path:
    recs = grid_records(TASKS, OPTS, seeds=3, n=11)
    for r in recs:  # sgd diverges at its largest learning rate
        if r["optimizer"] == "sgd" and r["learning_rate"] == 0.1:
            c = np.array(r["eval_train_loss"], dtype=np.float32)
            c[6:] = np.nan
            r.update(status="diverged", diverged_step=60, eval_train_loss=c)
    # a failed run at lion's best point (tuning then avoids that point) and a failed celo run
    # (untuned: it is scored 0); both are counted
    recs = [r for r in recs if not (r["task"] == "task_c" and r["seed"] == 2 and (
        r["optimizer"] == "celo" or (r["optimizer"] == "lion" and r["learning_rate"] == 0.01)))]
    recs.append(record("task_c", "lion", 2, [0], lr=0.01, kind="extra", status="failed", num_steps=100))
    recs.append(record("task_c", "celo", 2, [0], lr=None, kind="learned", status="failed", num_steps=100))
    write(root, recs, reg)
    (root / "overhead.json").write_text(json.dumps(
        [{"optimizer": "adam", "ms_per_step": 1.0, "ratio_vs_adam": 1.0},
         {"optimizer": "celo", "ms_per_step": 3.0, "ratio_vs_adam": 3.0}]))
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One results folder, reported twice into two folders (for the determinism check)."""
    base = tmp_path_factory.mktemp("report")
    reg = registry(TASKS, OPTS, steps=100)
    learned = {  # one published and one made-here checkpoint: the leaderboard keeps them apart
        "celo": OptimizerSpec("celo", "learned", "celo", checkpoint={"source": "hf://amoudgl/celo"}),
        "celo_adam": OptimizerSpec("celo_adam", "learned", "celo_adam", checkpoint={
            "source": "local://celo_adam_cpu_diet", "label": "meta-trained here (cpu diet)"}),
    }
    reg = dataclasses.replace(reg, optimizers={**reg.optimizers, **learned})
    results = _fixture_results(base / "results", reg)
    outs = [write_report(suite="fx", results=results, out=base / f"out{i}", reps=REPS, registry=reg,
                         bench_dir=results)
            for i in (1, 2)]
    res = score_results(results, "fx", registry=reg, reps=REPS)
    return {"results": results, "out": outs[0], "out2": outs[1], "res": res, "registry": reg}


def html_table(page: Path, table_id: str) -> dict[str, dict[str, str]]:
    """optimizer -> header -> cell text of the table `table_id` of an HTML report page."""
    text = page.read_text()
    table = text.split(f'id="{table_id}"')[1].split("</table>")[0]
    heads = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", table)]
    out = {}
    for name, row in re.findall(r'<tr class="lb-row[^"]*" data-optimizer="([^"]+)">(.*?)</tr>', table):
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        out[name] = dict(zip(heads, cells, strict=True))
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_entry_point_signature():
    params = inspect.signature(write_report).parameters
    for name in ("suite", "results", "out"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY


def test_every_file_is_written(report):
    out = report["out"]
    for name in ("leaderboard.md", "index.html", "README.md"):
        assert (out / name).stat().st_size > 0
    for fig in ("main_iqm", "performance_profiles", "training_curves", "lr_sensitivity",
                "probability_of_improvement", "sample_efficiency"):
        w, h = png_size(out / "figures" / f"{fig}.png")
        assert w > 600 and h > 300
        pdf = (out / "figures" / f"{fig}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and len(pdf) > 2000
    # the two-panel main figure is 9 inches wide at the report's DPI
    assert png_size(out / "figures" / "main_iqm.png")[0] == 9 * DPI
    for task in TASKS:
        assert png_size(out / "figures" / "tasks" / f"{task}.png")[0] > 300
    for table in ("aggregate", "per_task_final_loss", "per_task_speedup", "overhead",
                  "ablation_celo_adam", "sample_efficiency"):
        for ext in ("csv", "md", "tex"):
            assert (out / "tables" / f"{table}.{ext}").stat().st_size > 0
    readme = (out / "README.md").read_text()
    assert report["res"].fingerprint in readme and "version 1" in readme
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", readme)


def test_regeneration_is_byte_identical(report):
    a, b = report["out"], report["out2"]
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    differ = [str(f) for f in files if (a / f).read_bytes() != (b / f).read_bytes()]
    assert differ == ["README.md"]  # it names the output folder and the date


def test_latex_tables_are_balanced_booktabs(report):
    n_opt = len(OPTS)
    for tex in (report["out"] / "tables").glob("*.tex"):
        text = tex.read_text()
        begins = re.findall(r"\\begin\{(\w+)\}", text)
        ends = re.findall(r"\\end\{(\w+)\}", text)
        assert begins == ends[::-1], tex.name
        assert text.count("{") == text.count("}") + text.count("\\{") - text.count("\\}")
        for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
            assert text.count(rule) == 1, (tex.name, rule)
        body = text.split("\\midrule")[1].split("\\bottomrule")[0].strip().splitlines()
        cols = text.split("\\begin{tabular}{")[1].split("}")[0]
        for line in body:
            assert line.endswith("\\\\")
            assert line.count(" & ") == len(cols) - 1, (tex.name, line)
        if tex.stem == "aggregate":
            assert len(body) == n_opt
            assert {line.split(" & ")[1] for line in body} == {o.replace("_", "\\_") for o in OPTS}
        if tex.stem.startswith("per_task"):
            assert len(body) == len(TASKS) + 1 and body[-1].startswith("coverage & 3/3")


def test_leaderboard_rows_and_markers(report):
    text = (report["out"] / "leaderboard.md").read_text()
    assert text.startswith(BEGIN) and text.rstrip().endswith(END)
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == len(OPTS)
    assert [int(r.split("|")[1]) for r in rows] == list(range(1, len(OPTS) + 1))
    names = [r.split("|")[2].strip().strip("*") for r in rows]
    assert names == list(report["res"].aggregate["optimizer"])
    kinds = dict(zip(names, [r.split("|")[3].strip() for r in rows], strict=True))
    assert kinds == {"adam": "hand-crafted", "sgd": "hand-crafted", "celo": "learned · published",
                     "celo_adam": "learned · meta-trained here (cpu diet)", "lion": "extra",
                     "mine": "submission · not verified"}
    # the full table (below the leaderboard of index.html) counts every run
    full = html_table(report["out"] / "index.html", "leaderboard-full")
    assert full["sgd"]["diverged / failed"] == "9 / 0 of 27"  # 3 tasks x 3 seeds diverged at lr 0.1, never dropped
    assert full["lion"]["diverged / failed"] == "0 / 1 of 27"
    assert full["celo"]["diverged / failed"] == "0 / 1 of 9"
    agg = report["res"].aggregate.set_index("optimizer")
    assert (agg["runs"] == 3).all() and (agg["tasks"] == 3).all()  # nothing dropped
    sc = report["res"].scores
    failed = sc[(sc["optimizer"] == "celo") & (sc["task"] == "task_c") & (sc["seed"] == 2)]
    assert failed["final_loss_score"].item() == 0.0 and failed["speedup_score"].item() == 0.0
    assert "(learned, not tuned)" in text


def test_embed_replaces_only_the_block(report, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{BEGIN}\nold\n{END}\n\noutro\n")
    block = (report["out"] / "leaderboard.md").read_text()
    assert embed(block, readme)
    text = readme.read_text()
    assert text.startswith("# Title\n\nintro\n\n") and text.endswith(f"{END}\n\noutro\n")
    assert "old" not in text and text.count(BEGIN) == 1
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not embed(block, plain)


def test_per_task_tables_match_scores(report):
    res = report["res"]
    csv = pd.read_csv(report["out"] / "tables" / "per_task_final_loss.csv")
    want = res.scores.groupby(["task", "optimizer"])["final_loss_score"].mean()
    got = csv.set_index(["task", "optimizer"])["mean"]
    np.testing.assert_allclose(got.loc[want.index].to_numpy(), want.to_numpy(), rtol=1e-5)
    md = (report["out"] / "tables" / "per_task_final_loss.md").read_text()
    header = md.splitlines()[0]
    adam_col = [c.strip() for c in header.strip("|").split("|")].index("adam")
    lines = md.splitlines()[2:]
    for line in lines[:-1]:
        assert [c.strip() for c in line.strip("|").split("|")][adam_col] == "1.000 ± 0.000"
    assert [c.strip() for c in lines[-1].strip("|").split("|")][:2] == ["coverage", "3/3"]


def test_ablation_and_overhead_tables(report):
    abl = (report["out"] / "tables" / "ablation_celo_adam.md").read_text()
    assert "| celo |" in abl and "| celo_adam |" in abl and "P(celo > celo_adam)" in abl
    over = pd.read_csv(report["out"] / "tables" / "overhead.csv")
    assert list(over["optimizer"]) == ["adam", "celo"] and list(over["ratio_vs_adam"]) == [1.0, 3.0]


def test_stale_tables_are_removed(report, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(report["results"], results)
    (results / "overhead.json").unlink()
    out = tmp_path / "out"
    shutil.copytree(report["out"], out)
    write_report(suite="fx", results=results, out=out, reps=REPS, registry=report["registry"], bench_dir=results)
    assert not (out / "tables" / "overhead.csv").exists()
    assert (out / "tables" / "aggregate.csv").exists()


def test_html_is_self_contained(report):
    page = (report["out"] / "index.html").read_text()
    assert len(html_table(report["out"] / "index.html", "leaderboard")) == len(OPTS)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    srcs = re.findall(r'<img [^>]*src="([^"]{0,30})', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert page.count('<details class="task"') == len(TASKS)


def test_cli_report(tmp_path):
    opts = {"adam": ("handcrafted", 1.0), "sgd": ("handcrafted", 1.3)}
    tasks = ["smoke_digits_mlp", "smoke_digits_ae"]
    write(tmp_path / "r", grid_records(tasks, opts, seeds=2, n=6, suite="smoke", version="1"), load_registry())
    from celo_bench.cli import app

    res = CliRunner().invoke(app, ["report", "--suite", "smoke", "--results", str(tmp_path / "r"),
                                   "--out", str(tmp_path / "o"), "--reps", "20", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert "leaderboard.md" in doc["files"] and "index.html" in doc["files"]
    assert "figures/main_iqm.pdf" in doc["files"]


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_page_in_headless_chromium(report, tmp_path):
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--no-first-run",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
           "--v=0", "--dump-dom", (report["out"] / "index.html").resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    dom = proc.stdout
    main = dom.split('id="leaderboard"')[1].split("</table>")[0]
    assert len(re.findall(r'<tr class="lb-row[^"]*" data-optimizer="([^"]+)"', main)) == len(OPTS)
    assert 'class="sortable"' in dom.split("<thead>")[1]  # the sorting script ran


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_write_leaves_the_old_report_whole(report, tmp_path, monkeypatch):
    # issue 15 case 10: a failure (or kill) in the middle of writing never mixes two reports
    from celo_bench.report import figures

    out = tmp_path / "out"
    shutil.copytree(report["out"], out)
    before = _snapshot(out)
    # what a kill between the two renames of an earlier swap leaves: the old report aside
    # (put back by the next write) and a half-written temporary folder (removed)
    out.rename(tmp_path / ".out.old-dead")
    (tmp_path / ".out.tmp-dead" / "figures").mkdir(parents=True)

    def boom(*args, **kwargs):
        raise RuntimeError("injected failure while drawing a figure")

    monkeypatch.setattr(figures, "lr_sensitivity", boom)
    with pytest.raises(RuntimeError, match="injected failure"):
        write_report(suite="fx", results=report["results"], out=out, reps=REPS, registry=report["registry"])
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_a_report_replaces_its_folder_whole_and_only_a_report(report, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(report["out"], out)
    (out / "figures" / "stale.png").write_bytes(b"old")
    write_report(suite="fx", results=report["results"], out=out, reps=REPS, registry=report["registry"])
    assert not (out / "figures" / "stale.png").exists() and (out / "index.html").is_file()
    assert {p.name for p in tmp_path.iterdir()} == {"out", ".out.lock"}
    (out / "my-notes.txt").write_text("mine")
    with pytest.raises(CeloBenchError, match="holds files that are not part of a report .my-notes.txt."):
        write_report(suite="fx", results=report["results"], out=out, reps=REPS, registry=report["registry"])
    assert (out / "my-notes.txt").read_text() == "mine"


def test_coverage_and_not_run_in_leaderboard_and_page(tmp_path):
    # B has a score on one task of two; velo_4000 could not run here; lion has no stored run
    opts = {"adam": ("handcrafted", 1.0), "A": ("handcrafted", 0.9), "B": ("handcrafted", 0.7),
            "lion": ("extra", 1.0), "velo_4000": ("learned", 1.0)}
    tasks = ["t1", "t2"]
    reg = registry(tasks, opts, steps=50, lrs=(1e-3, 1e-2, 1e-1), seeds=2)
    recs = grid_records(tasks, {k: v for k, v in opts.items() if k in ("adam", "A", "B")}, seeds=2, n=6)
    write(tmp_path / "r", [r for r in recs if not (r["optimizer"] == "B" and r["task"] == "t2")], reg)
    why = "checkpoint not available offline: Google's 2.3M-parameter release; fix: connect once to download it"
    out = write_report(suite="fx", results=tmp_path / "r", out=tmp_path / "o", reps=20, registry=reg,
                       not_run={"velo_4000": why})
    md = (out / "leaderboard.md").read_text()
    rows = {r.split("|")[2].strip().strip("*"): r for r in md.splitlines() if re.match(r"\| \d+ \|", r)}
    assert list(rows) == ["A", "adam", "B"]  # B beats both on its one task but is incomplete
    assert rows["B"].rstrip(" |").endswith("1/2 incomplete") and rows["A"].rstrip(" |").endswith("2/2")
    assert "rank after every complete row" in md and "rule `rank-complete-first`" in md
    assert f"- `velo_4000`: {why}" in md
    # the fix names the store it reads: run without --results would train into ./results
    assert f"- `lion`: no runs stored (0 of 12 planned); fix: `celo-bench run --suite fx --results {tmp_path / 'r'} -o lion`" in md
    assert "22 of 52 planned runs are not stored (B 6, lion 12, velo_4000 4)" in md
    page = (out / "index.html").read_text()
    main = page.split('id="leaderboard"')[1].split("</table>")[0]
    assert main.count('class="lb-row') == 3 and 'class="lb-row incomplete" data-optimizer="B"' in main
    assert "<li><code>velo_4000</code>: " in page.split('id="not-run"')[1]
    agg = pd.read_csv(out / "tables" / "aggregate.csv").set_index("optimizer")
    assert agg.loc["B", "coverage"] == 0.5 and not agg.loc["B", "complete"]
    assert agg.loc["B", "final_loss_iqm_zero_filled"] < agg.loc["B", "final_loss_iqm"]


def test_not_run_reasons_never_contradict_a_ranked_row(report):
    from celo_bench.report import with_not_run

    res = report["res"]
    assert res.unrun == {}  # every optimizer of the fixture has runs that finished ok
    merged = with_not_run(res, {"celo": "checkpoint missing here; fix: ...", "velo_4000": "not offline; fix: ..."})
    assert merged.unrun == {"velo_4000": "not offline; fix: ..."}  # celo has ranked results
    assert with_not_run(res, None) is res


def test_wall_clock_speedup_column_and_tier_agreement_section(tmp_path):
    from celo_bench import timings
    from celo_bench.suite import SuiteSpec

    opts = {"adam": ("handcrafted", 1.0), "A": ("handcrafted", 0.9), "B": ("handcrafted", 1.2)}
    tasks = ["t1", "t2"]
    reg = registry(tasks, opts, steps=50, lrs=(1e-3, 1e-2, 1e-1), seeds=2)
    fy = SuiteSpec(name="fy", version="1", tasks=tuple(tasks), optimizers=tuple(opts), steps=50, seeds=2)
    reg = dataclasses.replace(reg, suites={**reg.suites, "fy": fy})
    for suite in ("fx", "fy"):
        write(tmp_path / "r", grid_records(tasks, opts, seeds=2, n=6, suite=suite), reg)
    bench = tmp_path / "bench"
    bench.mkdir()
    cost = {"adam": 0.002, "A": 0.004}  # B is not timed: its wall-clock speedup is missing
    doc = {"settings": {"device_kind": "Test GPU"},
           "rows": [{"task": t, "optimizer": o, "seconds_per_step": c} for t in tasks for o, c in cost.items()]}
    timings.path(bench, "Test GPU").write_text(json.dumps(doc))
    out = write_report(suite="fx", results=tmp_path / "r", out=tmp_path / "o", reps=20, registry=reg,
                       bench_dir=bench, device_kind="Test GPU")
    md = (out / "leaderboard.md").read_text()
    wall = "wall-clock speedup IQM [95% CI] (Test GPU)"
    rows = html_table(out / "index.html", "leaderboard-full")  # the full table: beside the speedup
    cols = list(rows["A"])
    assert cols[cols.index(wall) - 1] == "speedup IQM [95% CI]"
    assert wall not in md  # leaderboard.md holds the columns a reader ranks with
    agg = score_results(tmp_path / "r", "fx", registry=reg, reps=20, bench_dir=bench,
                        device_kind="Test GPU").aggregate.set_index("optimizer")
    assert rows["A"][wall].startswith(f"{agg.loc['A', 'wall_clock_speedup_iqm']:.3f} [")
    assert agg.loc["A", "wall_clock_speedup_iqm"] == pytest.approx(agg.loc["A", "speedup_iqm"] * 0.5, rel=0.2)
    assert rows["B"][wall] == "-"
    assert wall in (out / "tables" / "aggregate.md").read_text().replace("SU IQM", "speedup IQM")
    assert "device kind `Test GPU`" in md
    assert "missing (2 task/optimizer pairs: t1/B, t2/B)" in md and "celo-bench bench step-time --suite fx" in md
    assert png_size(out / "figures" / "main_iqm.png")[0] == int(13.5 * DPI)  # a third panel: wall clock
    csv = pd.read_csv(out / "tables" / "aggregate.csv")
    assert "wall_clock_speedup_iqm_low" in csv.columns
    # the store holds a second suite: the report compares the two tiers
    tier = pd.read_csv(out / "tables" / "tier_agreement_fy.csv").set_index("criterion")
    assert tier.loc["final_loss", "kendall_tau"] == pytest.approx(1.0) and tier.loc["final_loss", "optimizers"] == 3
    assert (out / "figures" / "tier_agreement_fy.pdf").stat().st_size > 1000
    page = (out / "index.html").read_text()
    assert 'id="tier-agreement"' in page and "fx vs fy" in page


def test_the_leaderboard_shows_the_ranking_columns_and_hides_a_column_without_values(report):
    # no optimizer has a per-step timing: the wall-clock speedup is nowhere, a note says how to get it
    out = report["out"]
    md = (out / "leaderboard.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| # |"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "#", "optimizer", "kind", "final loss IQM [95% CI]", "speedup IQM [95% CI]",
        "P(better than adam) [95% CI]", "coverage"]
    note = "The wall-clock speedup is not shown: no optimizer has per-step timings on device kind `cpu`; " \
           "`celo-bench bench step-time --suite fx` measures them"
    assert note in md and "wall-clock speedup (SU_time) is missing" not in md  # said once
    full = html_table(out / "index.html", "leaderboard-full")
    cols = list(full["adam"])
    assert not any(c.startswith("wall-clock") for c in cols)
    assert {"FL IQM, missing tasks = 0", "FL mean", "SU opt. gap", "diverged / failed"} <= set(cols)
    page = (out / "index.html").read_text()
    assert note.replace("`", "").split(";")[0] in re.sub(r"</?code>", "", page)
    aggregate_md = (out / "tables" / "aggregate.md").read_text().splitlines()[0]
    assert "wall-clock" not in aggregate_md and "FL median" in aggregate_md
    assert "wall_clock_speedup_iqm" in pd.read_csv(out / "tables" / "aggregate.csv").columns  # data kept


AGREEMENT = """
[agreement]
kendall_tau_final_loss = 0.72
kendall_tau_final_loss_ci = [0.61, 0.80]
kendall_tau_speedup = 0.70
kendall_tau_speedup_ci = [0.55, 0.79]
measured = 2026-03-01
against = "fmnist"
fingerprint = "0123abcd4567ef89"
note = "It ranks as real Fashion-MNIST does within the CIs; it cannot tell optimizers apart closer than 0.02."
"""


def test_the_header_shows_the_suites_measured_tier_agreement(tmp_path):
    from celo_bench.suite import parse_suite

    opts = {"adam": ("handcrafted", 1.0), "A": ("handcrafted", 0.9)}
    tasks = ["t1", "t2"]
    spec = tmp_path / "fx.toml"
    spec.write_text('name = "fx"\nversion = "1"\ntasks = ["t1", "t2"]\noptimizers = ["adam", "A"]\nseeds = 2\n'
                    f"steps = 50\n{AGREEMENT}")
    suite = parse_suite(spec)
    assert suite.agreement.kendall_tau_speedup_ci == (0.55, 0.79) and suite.agreement.against == "fmnist"
    reg = registry(tasks, opts, steps=50, lrs=(1e-3, 1e-2, 1e-1), seeds=2)
    write(tmp_path / "r", grid_records(tasks, opts, seeds=2, n=6), reg)
    plain = write_report(suite="fx", results=tmp_path / "r", out=tmp_path / "plain", reps=20, registry=reg)
    assert "Agreement with suite" not in (plain / "leaderboard.md").read_text()  # none recorded: no line
    reg = dataclasses.replace(reg, suites={"fx": suite})
    out = write_report(suite="fx", results=tmp_path / "r", out=tmp_path / "o", reps=20, registry=reg)
    md = (out / "leaderboard.md").read_text()
    line = ("**Agreement with suite `fmnist`** (measured 2026-03-01, fmnist results `0123abcd4567ef89`): Kendall τ "
            "0.720 [0.610, 0.800] on final loss, 0.700 [0.550, 0.790] on speedup (`celo-bench compare-suites fx fmnist`). "
            "It ranks as real Fashion-MNIST does within the CIs")
    assert line in md and md.index(line) < md.index("| # |")  # in the header, above the table
    page = (out / "index.html").read_text()
    header = page.split('id="leaderboard"')[0]
    assert '<p class="agreement"><strong>Agreement with suite <code>fmnist</code></strong>' in header
    assert "0.720 [0.610, 0.800]" in header and "0123abcd4567ef89" in header and "2026-03-01" in header
