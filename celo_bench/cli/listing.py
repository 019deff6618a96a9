"""``celo-bench list tasks|optimizers|suites``."""

from __future__ import annotations

from enum import StrEnum

import typer
from rich import box
from rich.table import Table

from celo_bench.cli._common import FormatOpt, emit_json, name_column, out
from celo_bench.data import dataset_info
from celo_bench.suite import TaskSpec, load_registry
from celo_bench.task import count_params as task_count_params


class What(StrEnum):
    tasks = "tasks"
    optimizers = "optimizers"
    suites = "suites"


def task_rows(names: list[str] | None = None, with_params: bool = True) -> list[dict]:
    """Facts for each task; ``n_params`` comes from shapes only (no data is loaded)."""
    reg = load_registry()
    rows = []
    for name in names or sorted(reg.tasks):
        t = reg.task(name)
        row = {
            "name": t.name, "family": t.family, "dataset": t.dataset, "batch_size": t.batch_size,
            "steps": t.steps, "eval_every": t.eval_every, "description": t.description,
        }
        if with_params:
            row["n_params"] = count_params(t)
        rows.append(row)
    return rows


def count_params(spec: TaskSpec) -> int | None:
    """Trainable scalars of `spec`'s model from dataset facts, or None if only the data tells."""
    # heavy: building a model imports JAX and every model family; only `list tasks` pays for it
    from celo_bench.assembly import build_model_only

    try:
        model = build_model_only(spec, dataset_info(spec.dataset, spec.data))
    except Exception:  # a model that needs the data itself to be built
        return None
    return task_count_params(model)


def optimizer_rows() -> list[dict]:
    reg = load_registry()
    return [
        {
            "name": o.name, "kind": o.kind, "label": o.kind_label, "factory": o.factory,
            "extra": o.kind == "extra",
            "tuned": sorted(o.grid), "grid": {k: list(v) for k, v in o.grid.items()},
            "defaults": o.defaults, "needs_loss": o.needs_loss, "reference": o.reference,
            "checkpoint": o.checkpoint.get("source", ""),
        }
        for o in sorted(reg.optimizers.values(), key=lambda o: (o.kind, o.name))
    ]


def suite_rows() -> list[dict]:
    reg = load_registry()
    return [
        {
            "name": s.name, "version": s.version, "tasks": list(s.tasks), "optimizers": list(s.optimizers),
            "seeds": s.seeds, "steps": s.steps, "selection": s.selection, "description": s.description,
        }
        for s in sorted(reg.suites.values(), key=lambda s: s.name)
    ]


def list_command(
    what: What = typer.Argument(..., help="What to list."),
    suite: str = typer.Option(None, "--suite", "-s", help="Only what this suite uses."),
    fmt=FormatOpt,
) -> None:
    """List registered tasks, optimizers or suites."""
    reg = load_registry()
    if what is What.tasks:
        rows = task_rows(list(reg.suite(suite).tasks) if suite else None)
    elif what is What.optimizers:
        rows = optimizer_rows()
        if suite:
            keep = set(reg.suite(suite).optimizers)
            rows = [r for r in rows if r["name"] in keep]
    else:
        rows = suite_rows()
    if fmt.value == "json":
        emit_json(rows)
        return
    table = Table(title=what.value, box=box.SIMPLE_HEAD, pad_edge=False)
    cols = {
        What.tasks: ["name", "family", "dataset", "batch_size", "steps", "n_params"],
        What.optimizers: ["name", "label", "tuned", "reference"],
        What.suites: ["name", "version", "seeds", "steps", "description"],
    }[what]
    for c in cols:
        if c == "name":
            name_column(table, c, [r["name"] for r in rows])
        else:
            table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*[", ".join(r[c]) if isinstance(r[c], list) else str(r[c]) for c in cols])
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("list")(list_command)
