"""``celo-bench store check [--migrate]``: the records of a store by schema version, and their upgrade."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from celo_bench.cli._common import FormatOpt, ResultsOpt, console, emit_json, out, results_path
from celo_bench.errors import CeloBenchError
from celo_bench.records import SCHEMA_HISTORY, SCHEMA_VERSION
from celo_bench.store import Store, newer_line

store_app = typer.Typer(help="Inspect and upgrade the records of a results store.", no_args_is_help=True)

SHOWN = 20
"""Records listed one per line in the text output (the JSON lists all)."""


@store_app.command("check")
def check_command(
    results: Path = ResultsOpt,
    migrate: bool = typer.Option(False, "--migrate", help="Rewrite every record of an older schema in the "
                                 f"current one (version {SCHEMA_VERSION}), each atomically."),
    fmt=FormatOpt,
) -> None:
    """List the records by schema version and what reading each upgrades; --migrate rewrites them."""
    root = results_path(results)
    if not root.is_dir():
        raise CeloBenchError(f"{root} is not a results folder: pass --results DIR")
    store = Store(root)
    check = store.check()
    todo = check.to_upgrade
    rewritten, left = store.migrate(check) if migrate and todo else ([], [])
    versions = {c.version: c.note for c in SCHEMA_HISTORY}
    if fmt.value == "json":
        emit_json({
            "results": str(root), "schema_version": SCHEMA_VERSION, "records": len(check.records),
            "by_version": check.by_version,
            "to_upgrade": [{"path": str(r.path), "version": r.upgrade.version, "filled": list(r.upgrade.filled),
                            "cast": [list(c) for c in r.upgrade.cast], "extra": list(r.upgrade.extra),
                            "change": r.upgrade.describe()} for r in todo],
            "migrated": [str(p) for p in rewritten], "left": [b.line() for b in left],
            "newer": [b.line() for b in check.newer], "unreadable": [b.line() for b in check.unreadable],
        })
        return
    out.print(f"{len(check.records)} readable records in {root}; this celo-bench writes schema version "
              f"{SCHEMA_VERSION}", highlight=False)
    for version, n in check.by_version.items():
        what = versions.get(version, "before versions were stored" if version == "0" else "")
        label = " (current)" if version == SCHEMA_VERSION else ""
        out.print(f"  schema {version}{label}: {n} records" + (f" — {what}" if what else ""), highlight=False)
    if todo:
        verb = "rewritten" if migrate else "upgraded as they are read"
        out.print(f"{len(todo)} records stored in an older form (schema version, missing columns or column "
                  f"types), {verb}:", highlight=False)
        for r in todo[:SHOWN]:
            out.print(f"  {r.path}: {r.upgrade.describe()}", highlight=False, markup=False)
        if len(todo) > SHOWN:
            out.print(f"  ... and {len(todo) - SHOWN} more (--format json lists all)", highlight=False)
    else:
        out.print("every readable record is in the current schema", highlight=False)
    for b in left:
        console.print(f"[yellow]left as stored[/]: {escape(b.line())}")
    for b in check.newer:
        console.print(f"[yellow]{escape(newer_line(b))}[/]")
    for b in check.unreadable:
        console.print(f"[yellow]unreadable record {escape(b.line())}[/] (counted as missing; `celo-bench run` "
                      "moves it aside and rewrites it)")
    if migrate and todo:
        console.print(f"migrated {len(rewritten)} records to schema version {SCHEMA_VERSION}")
    elif todo:
        console.print(f"`celo-bench store check --results {root} --migrate` rewrites them in the current schema")


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
