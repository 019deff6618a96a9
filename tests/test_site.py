"""The static site of ``celo-bench report --site DIR``: every link and image resolves inside it, every
optimizer has a page, a submission's page shows its card and whether it was verified; and, in a real
headless Chromium, the index and an optimizer page load with no error at 1400 and 800 pixels."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from _score_fixtures import grid_records, make_submission, registry, write
from typer.testing import CliRunner

from celo_bench.defaults import VERIFICATION_NAME, submission_folder
from celo_bench.errors import CeloBenchError
from celo_bench.report import write_report
from celo_bench.submission import parse_submission
from celo_bench.submission.stored import keep, with_stored

TASKS = ["task_a", "task_b"]
OPTS = {"adam": ("handcrafted", 1.0), "sgd": ("handcrafted", 1.3), "celo": ("learned", 0.9)}
SUB = "mine"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("site")
    results = base / "results"
    reg = registry(TASKS, OPTS, steps=50, lrs=(0.01, 0.1), seeds=2)
    sub = parse_submission(make_submission(base / "subs", SUB))
    keep(sub, results)
    reg, problems = with_stored(reg, results)
    assert problems == []
    recs = grid_records(TASKS, OPTS, seeds=2, n=6, lrs=(0.01, 0.1))
    recs += grid_records(TASKS, {SUB: ("submission", 0.8)}, seeds=2, n=6, lrs=(0.01, 0.1))
    write(results, recs, reg)
    out = write_report(suite="fx", results=results, out=base / "site", reps=20, registry=reg, site=True)
    return {"out": out, "results": results, "registry": reg, "base": base}


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v is not None:
                self.refs.append((tag, v))


def refs(page: Path) -> list[tuple[str, str]]:
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.refs


def is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24])[0] > 100


def test_every_link_and_image_resolves_to_a_file_of_the_site(site):
    out = site["out"]
    pages = sorted(out.rglob("*.html"))
    assert out / "index.html" in pages
    checked = 0
    for page in pages:
        for tag, ref in refs(page):
            url = urlsplit(ref)
            assert not url.scheme and not url.netloc, f"{page.name}: {ref} leaves the site (no network)"
            assert not ref.startswith("/"), f"{page.name}: {ref} is absolute (a static host moves the root)"
            if not url.path:  # an anchor on the same page
                assert url.fragment and f'id="{url.fragment}"' in page.read_text(), ref
                continue
            target = (page.parent / unquote(url.path)).resolve()
            assert target.is_file(), f"{page.relative_to(out)}: {ref} does not resolve"
            assert out.resolve() in target.parents, f"{ref} points outside the site"
            if tag == "img":
                assert is_png(target), ref
            checked += 1
    assert checked > 20
    page = (out / "index.html").read_text()
    assert "data:image" not in page  # images are files next to the pages


def test_every_optimizer_has_a_page_linked_from_the_leaderboard(site):
    out = site["out"]
    names = {*OPTS, SUB}
    assert {p.stem for p in (out / "optimizers").glob("*.html")} == names
    links = {ref for _, ref in refs(out / "index.html")}
    assert {f"optimizers/{n}.html" for n in names} <= links
    for name in names:
        page = (out / "optimizers" / f"{name}.html").read_text()
        assert 'href="../index.html"' in page and f"../figures/optimizers/{name}.png" in page
        assert 'id="provenance"' in page and ">device<" in page and ">cpu<" in page  # from its records


def test_a_submission_page_shows_its_card_and_verification_status(site, tmp_path):
    page = (site["out"] / "optimizers" / f"{SUB}.html").read_text()
    assert "Submission card" in page and "by Your Name (MIT)" in page
    assert "<strong>Not verified.</strong>" in page
    baseline = (site["out"] / "optimizers" / "sgd.html").read_text()
    assert "A baseline of celo-bench" in baseline and "Submission card" not in baseline
    # with a verification kept beside it in the store, the page and the leaderboard say so
    results = tmp_path / "results"
    shutil.copytree(site["results"], results)
    (submission_folder(results, SUB) / VERIFICATION_NAME).write_text(json.dumps(
        {"verified": True, "sample_size": 3, "max_relative_difference": 2e-7, "device": "cpu",
         "date": "2026-01-02"}))
    out = write_report(suite="fx", results=results, out=tmp_path / "site", reps=20, registry=site["registry"],
                       site=True)
    page = (out / "optimizers" / f"{SUB}.html").read_text()
    assert "verified (3 runs re-run)" in page and "2e-07" in page and "2026-01-02" in page
    row = next(r for r in (out / "leaderboard.md").read_text().splitlines() if f"| {SUB} |" in r)
    assert "| submission · verified (3 runs re-run) |" in row


def test_cli_site_option(site, tmp_path):
    from celo_bench.cli import app

    both = CliRunner().invoke(app, ["report", "--suite", "smoke", "--out", str(tmp_path / "a"), "--site",
                                    str(tmp_path / "b")])
    assert isinstance(both.exception, CeloBenchError) and "--site and --out" in str(both.exception)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_site_pages_load_in_headless_chromium_at_two_widths(site, tmp_path):
    out = site["out"]
    for page in (out / "index.html", out / "optimizers" / f"{SUB}.html"):
        dom = _chromium(["--dump-dom", page.resolve().as_uri()], tmp_path / f"p-{page.stem}")
        assert dom.returncode == 0, dom.stderr[-2000:]
        bad = [ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln or "Failed to load resource" in ln]
        assert bad == [], bad
        if page.name == "index.html":  # the sorting script ran
            assert 'class="sortable"' in dom.stdout.split("<thead>")[1]
        for width in (1400, 800):
            shot = tmp_path / f"{page.stem}-{width}.png"
            proc = _chromium([f"--screenshot={shot}", f"--window-size={width},1600", page.resolve().as_uri()],
                             tmp_path / f"s-{page.stem}-{width}")
            assert proc.returncode == 0 and is_png(shot), proc.stderr[-2000:]
            assert struct.unpack(">II", shot.read_bytes()[16:24]) == (width, 1600)


def test_the_main_table_fits_800_pixels_without_scrolling(site):
    # the seven columns a reader ranks with; a CI sits in a span that wraps under its value
    page = (site["out"] / "index.html").read_text()
    main = page.split('id="leaderboard"')[1].split("</table>")[0]
    heads = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", main)]
    assert heads == ["#", "optimizer", "kind", "final loss IQM [95% CI]", "speedup IQM [95% CI]",
                     "P(better than adam) [95% CI]", "coverage"]
    assert '<span class="ci">[' in main and "@media (max-width:900px){td .ci{display:block}" in page
