"""``celo-bench bench meta-train``: seconds per outer meta-training step, per architecture."""

from __future__ import annotations

from pathlib import Path

import typer

from celo_bench.cli._bench_app import OutOpt, bench_app
from celo_bench.cli._common import Format, FormatOpt, console, emit_json, out, split_names


def meta_train_command(
    steps: int = typer.Option(5, "--steps", min=1, help="Timed outer steps per architecture after the "
                              "first (compiling) one; interleaved, median kept."),
    archs: list[str] = typer.Option(None, "--arch", "-a", help="Only these architectures (repeat or "
                                    "comma-separate; default: celo, rnn_mlp_lopt, adafac_mlp_lopt, velo_s)."),
    preset: str = typer.Option("cpu", "--preset", help="Meta-training preset whose settings are timed."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the meta-training run timed."),
    out_dir: Path = OutOpt,
    fmt: Format = FormatOpt,
) -> None:
    """Time the outer step of `celo-bench meta-train` (Celo phase 1 and the three learned baselines).

    Each architecture's trainer is built as the command builds it (nothing is written); the
    first outer step compiles and is reported apart. Writes <out>/meta_train.json.
    """
    from rich.table import Table

    from celo_bench.bench import results
    from celo_bench.bench.meta_train import ARCHITECTURES, measure
    from celo_bench.errors import CeloBenchError
    from celo_bench.metatrain.config import PRESETS
    from celo_bench.provenance import provenance

    if preset not in PRESETS:
        raise CeloBenchError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    chosen = split_names(archs, "--arch")
    known = dict(ARCHITECTURES)
    if chosen:
        unknown = [a for a in chosen if a not in known]
        if unknown:
            raise CeloBenchError(f"--arch {', '.join(unknown)}: choose from {', '.join(known)}")
    pairs = [(a, known[a]) for a in chosen] if chosen else list(ARCHITECTURES)

    def progress(arch: str, phase: str) -> None:
        console.print(f"compiling {arch} (phase {phase}, preset {preset})...")

    rows = measure(pairs, steps=steps, preset=preset, seed=seed,
                   on_compile=progress if fmt == Format.text else None)
    path = results.write(out_dir, "meta_train", settings={"preset": preset, "steps": steps, "seed": seed},
                         machine=provenance(), rows=[r.as_json() for r in rows])
    if fmt == Format.json:
        emit_json({"file": str(path), "rows": [r.as_json() for r in rows]})
        return
    table = Table(title=f"Seconds per outer meta-training step (preset {preset}, median of {steps})")
    for col in ("architecture", "phase", "s / outer step", "first step (compile)", "note"):
        table.add_column(col, justify="left" if col in ("architecture", "phase", "note") else "right")
    for r in rows:
        sps = "-" if r.seconds_per_step is None else f"{r.seconds_per_step:.3f}"
        first = "-" if r.first_step_seconds is None else f"{r.first_step_seconds:.1f}"
        table.add_row(r.arch, r.phase, sps, first, r.error[:120])
    out.print(table)
    console.print(f"written to {path}")


def register(app: typer.Typer) -> None:
    bench_app.command("meta-train")(meta_train_command)
