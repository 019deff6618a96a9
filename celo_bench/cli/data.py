"""``celo-bench data prepare|list``: fill and inspect the dataset cache of the paper tier."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from celo_bench.cli._common import FormatOpt, console, emit_json, out, split_names
from celo_bench.data import cache, shipped
from celo_bench.data.sources import RECIPES, find_local
from celo_bench.errors import CeloBenchError
from celo_bench.paths import require_writable
from celo_bench.suite import load_registry

data_app = typer.Typer(help="Prepare and inspect the datasets of the paper tier; remake the ones that ship.", no_args_is_help=True)

DataDirOpt = typer.Option(
    None, "--data-dir", help=f"Cache folder (default: ${cache.ENV_VAR}, else {cache.default_root()})."
)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
        DownloadColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )


def _suite_datasets(suite: str) -> list[str]:
    reg = load_registry()
    names = {reg.task(t).dataset for t in reg.suite(suite).tasks}
    return sorted(n for n in names if n in RECIPES)


def _summary(name: str, root: Path | None) -> dict:
    m = cache.read_manifest(name, root)
    local = find_local(name, root)
    row = {"name": name, "kind": RECIPES[name].kind, "cached": m is not None,
           "path": str(cache.dataset_dir(name, root)) if m else "",
           "local_originals": str(local) if local else "", "examples": {}, "bytes": 0, "source": ""}
    if m:
        row["examples"] = {k: v["shape"][0] for k, v in m["arrays"].items()}
        row["bytes"] = sum(v["bytes"] for v in m["arrays"].values())
        src = m.get("source", {})
        row["source"] = src.get("repo") or src.get("location", "")
        row["created"] = m.get("created", "")
    return row


def prepare_command(
    names: list[str] = typer.Argument(None, help=f"Datasets: {', '.join(RECIPES)}."),
    suite: str = typer.Option(None, "--suite", "-s", help="Every dataset the suite's tasks use."),
    source: str = typer.Option("auto", "--source", help="auto | local | hub | original."),
    from_dirs: list[Path] = typer.Option(None, "--from", help="Folder with original files / parquet / spiece.model."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if already cached."),
    max_seq_len: int = typer.Option(32, "--max-seq-len", min=1, help="Tokens kept per LM example (+1)."),
    keep_downloads: bool = typer.Option(False, "--keep-downloads", help="Keep verified downloads."),
    data_dir: Path = DataDirOpt,
    fmt=FormatOpt,
) -> None:
    """Download (once) and convert datasets into compact cached arrays with a manifest."""
    # deferred: the downloaders (pooch, huggingface_hub) are imported only to prepare data
    from celo_bench.data.prepare import prepare

    wanted = split_names(names, "DATASETS") or []
    if suite:
        wanted += [n for n in _suite_datasets(suite) if n not in wanted]
    if not wanted:
        raise typer.BadParameter("name at least one dataset or give --suite")
    quiet = fmt.value == "json"
    rows = []
    for name in wanted:
        progress = None if quiet else _progress()
        if progress:
            progress.start()
        try:
            path = prepare(name, source=source, from_dirs=from_dirs or (), root=data_dir, force=force,
                           max_seq_len=max_seq_len, keep_downloads=keep_downloads, progress=progress)
        finally:
            if progress:
                progress.stop()
        row = _summary(name, data_dir)
        rows.append(row)
        if not quiet:
            sizes = ", ".join(f"{k} {v:,}" for k, v in row["examples"].items())
            console.print(f"[green]{name}[/]: {path} ({sizes}; {row['bytes'] / 1e6:.1f} MB; "
                          f"from {row['source']})")
    if quiet:
        emit_json(rows)


def list_command(
    verify: bool = typer.Option(False, "--verify", help="Recompute the sha256 of cached arrays."),
    data_dir: Path = DataDirOpt,
    fmt=FormatOpt,
) -> None:
    """Show which paper datasets are cached (and where their original files were found)."""
    rows = [_summary(n, data_dir) for n in RECIPES]
    if verify:
        for r in rows:
            if r["cached"]:
                r["corrupt_arrays"] = cache.verify(r["name"], data_dir)
    if fmt.value == "json":
        emit_json({"root": str(cache.data_root(data_dir)), "datasets": rows})
        return
    table = Table(title=f"datasets in {cache.data_root(data_dir)}")
    for c in ("name", "kind", "cached", "examples", "MB", "source / originals"):
        table.add_column(c)
    for r in rows:
        ex = ", ".join(f"{k.split('_')[0]} {v:,}" for k, v in r["examples"].items() if "label" not in k)
        state = "yes" if r["cached"] else "no"
        if r.get("corrupt_arrays"):
            state = f"[red]corrupt: {', '.join(r['corrupt_arrays'])}[/]"
        where = r["source"] or (f"originals in {r['local_originals']}" if r["local_originals"] else "")
        table.add_row(r["name"], r["kind"], state, ex, f"{r['bytes'] / 1e6:.1f}" if r["cached"] else "", where)
    out.print(table)


def derive_command(
    name: str = typer.Argument(..., help="Shipped dataset to remake: "
                               + ", ".join([*shipped.SHIPPED, *shipped.SHIPPED_TEXT]) + "."),
    source: Path = typer.Option(Path("/usr/share/datasets/fashion-mnist"), "--source",
                                help="Folder of the original IDX files (apt-get install "
                                     "dataset-fashion-mnist, or a `data prepare` folder)."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the derived files to."),
    fmt=FormatOpt,
) -> None:
    """Remake a dataset that ships inside the package from its originals (byte-identical)."""
    names = [*shipped.SHIPPED, *shipped.SHIPPED_TEXT]
    if name not in names:
        raise CeloBenchError(f"no shipped dataset '{name}'; choose one of: {', '.join(names)}")
    require_writable(out_dir, "output folder", "pass --out DIR with a writable folder")
    if name in shipped.SHIPPED_TEXT:  # from this Python's pydoc_data (--source is not used)
        sums = shipped.derive_text(name, out_dir)
        pinned = {shipped.SHIPPED_TEXT[name].file: shipped.SHIPPED_TEXT[name].sha256}
    else:
        sums = shipped.derive(name, source, out_dir)
        pinned = shipped.SHIPPED[name].sha256
    rows = [{"file": f, "sha256": h, "matches_package": h == pinned.get(f)} for f, h in sums.items()]
    if fmt.value == "json":
        emit_json({"dataset": name, "out": str(out_dir), "files": rows})
        return
    for r in rows:
        out.print(f"{r['file']}  {r['sha256']}  {'= package' if r['matches_package'] else 'DIFFERS from package'}")
    console.print(f"written to {out_dir}")


def register(app: typer.Typer) -> None:
    data_app.command("derive")(derive_command)
    data_app.command("prepare")(prepare_command)
    data_app.command("list")(list_command)
    app.add_typer(data_app, name="data")
