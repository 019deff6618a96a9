"""``celo-bench meta-train ARCH``: meta-train a learned optimizer with the Celo recipe.

Thin layer over :mod:`celo_bench.metatrain.recipe`. Bad arguments (unknown architecture,
a phase the architecture lacks, a missing ``--init``, non-positive numbers) are reported
as one line with exit code 2 before any compilation starts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from celo_bench.cli._common import Format, FormatOpt, console, emit_json, out, split_names
from celo_bench.errors import CeloBenchError
from celo_bench.suite import load_registry
from celo_bench.weights import ENV_FOLDER


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("meta-loss {task.fields[loss]}"), TimeRemainingColumn(),
        console=console, transient=False,
    )


def meta_train_command(
    arch: str = typer.Argument(..., help="Learned optimizer: celo, celo_adam, velo_s, rnn_mlp_lopt, "
                               "adafac_mlp_lopt, nn_adam, ..."),
    phase: str = typer.Option(None, "--phase", help="Celo only: 1 (update-rule MLP, scheduler off), 2 "
                              "(scheduler, needs --init), or joint. Default: both phases for Celo, "
                              "joint for the others."),
    init: Path = typer.Option(None, "--init", help="Start from this theta.state (or its folder)."),
    preset: str = typer.Option("cpu", "--preset", help="smoke (minutes), cpu (about an hour on 2 "
                               "cores: 8x8 digits + Fashion-MNIST where present) or paper (the paper's recipe, GPU-days)."),
    outer_iterations: int = typer.Option(None, "--outer-iterations", help="Outer steps (per phase; "
                                         "default: the preset's)."),
    outer_lr: float = typer.Option(None, "--outer-lr", help="AdamW learning rate (default: the "
                                   "preset's; paper 3e-4, cpu 1e-3, smoke 1e-2)."),
    seed: int = typer.Option(0, "--seed", help="Run seed (meta-parameter init, tasks, noise)."),
    out_dir: Path = typer.Option(None, "--out", help="Output folder (default metatrain/ARCH-PRESET-seedS); "
                                 "an existing run there is resumed."),
    tasks: list[str] = typer.Option(None, "--tasks", help="Meta-training datasets (default: the "
                                    "preset's), e.g. digits,fashion_mnist."),
    sweep: bool = typer.Option(False, "--sweep", help="Outer-LR sweep: 5 rates x 3 seeds, best "
                               "checkpoint by held-out meta-validation loss into OUT/best."),
    select_best: bool = typer.Option(False, "--select-best", help="After training, score every "
                                     "checkpoint of the final phase by held-out meta-validation loss "
                                     "and copy the best to OUT/best (the sweep's rule, one run)."),
    install: bool = typer.Option(False, "--install", help="Copy the result (OUT/best with "
                                 "--select-best) into the local weights folder ($CELO_BENCH_WEIGHTS, "
                                 "default ~/.cache/celo-bench/weights), where the *_cpu_diet "
                                 "optimizers of the suites load it."),
    fmt: Format = FormatOpt,
) -> None:
    """Meta-train a learned optimizer (truncated PES, task augmentation, Celo's two phases)."""
    # heavy: meta-training imports JAX and every learned optimizer; `--help` does not
    from celo_bench.metatrain import recipe
    from celo_bench.metatrain.tasks import available

    if outer_iterations is not None and outer_iterations < 1:
        raise CeloBenchError(f"--outer-iterations must be >= 1, got {outer_iterations}")
    if outer_lr is not None and not outer_lr > 0:
        raise CeloBenchError(f"--outer-lr must be > 0, got {outer_lr}")
    options = dict(phase=phase, preset=preset, init=str(init) if init else None,
                   outer_iterations=outer_iterations, tasks=split_names(tasks, "--tasks"))
    quiet = fmt == Format.json
    progress, bar = _progress(), {}

    def on_phase(ph, cfg):
        label = f"{arch} phase {ph}" if ph != "joint" else arch
        if not quiet:
            if not progress.live.is_started:
                progress.start()
            bar["id"] = progress.add_task(label, total=cfg.outer_iterations, loss="…")
            bar["fresh"] = True
            present, missing = available(cfg.tasks, cfg.image_size)
            absent = f" (no data here: {', '.join(missing)})" if missing else ""
            progress.console.log(f"{label}: tasks {', '.join(present) or 'none'}{absent}, "
                                 f"{cfg.outer_iterations} outer steps, lr {cfg.outer_lr:g}"
                                 + ("" if cfg.init or cfg.meta_init == "reference" else f", start {cfg.meta_init}")
                                 + " (the first step compiles)")

    def on_step(done, total, loss):
        if not quiet and "id" in bar:
            if bar.pop("fresh", False) and done > 1:  # the first step of this session is not step 1
                progress.console.log(f"resumed from outer step {done - 1} of {total} (a saved run of the "
                                     "same settings in --out)")
            progress.update(bar["id"], completed=done, loss=f"{loss:.4f}")

    try:
        if install:
            from celo_bench.metatrain.install import check_target  # heavy: the optimizers

            check_target()  # before an hour of training, not after
        if sweep:
            if out_dir is None:
                out_dir = Path("metatrain") / f"{arch}-{preset}-sweep"
            recipe.plan(arch, seed=0, out=out_dir, outer_lr=outer_lr, **options)  # validate first
            if outer_lr is not None or seed != 0:
                raise CeloBenchError("--sweep chooses --outer-lr and --seed itself; do not pass them")
            summary = recipe.sweep(arch, out=out_dir, on_phase=on_phase, on_step=on_step, **options)
            card = json.loads((Path(summary["best_checkpoint"]).parent / "card.json").read_text())
            result = {"checkpoint": summary["best_checkpoint"], "best": summary["best"],
                      "sweep": str(out_dir / "sweep.json"), "outer_iterations": card["outer_step"],
                      "meta_loss_first": card["meta_loss_first"], "meta_loss_last": card["meta_loss_last"]}
        else:
            recipe.plan(arch, outer_lr=outer_lr, seed=seed, out=out_dir, **options)  # validate first
            results = recipe.meta_train(arch, outer_lr=outer_lr, seed=seed, out=out_dir,
                                        on_phase=on_phase, on_step=on_step, **options)
            final = results[-1]
            result = {
                "checkpoint": str(final.checkpoint),
                "outer_iterations": final.outer_iterations,
                "meta_loss_first": final.meta_loss_first,
                "meta_loss_last": final.meta_loss_last,
                "phases": [{"phase": r.card["phase"], "checkpoint": str(r.checkpoint),
                            "outer_iterations": r.outer_iterations, "meta_loss_first": r.meta_loss_first,
                            "meta_loss_last": r.meta_loss_last, "wall_seconds": round(r.wall_seconds, 1),
                            "resumed_from": r.resumed_from} for r in results],
                "label": final.card["label"],
            }
            if select_best:
                if not quiet:
                    progress.console.log("scoring every checkpoint by held-out meta-validation loss")
                chosen = recipe.select_best(arch, outer_lr=outer_lr, seed=seed, out=out_dir, **options)
                result.update(final_checkpoint=result["checkpoint"], checkpoint=chosen["best_checkpoint"],
                              best={k: chosen["best"][k] for k in ("step", "meta_validation_loss")})
        if install:
            from celo_bench.metatrain.install import install as install_run  # heavy: the optimizers

            made_by = " ".join(["celo-bench", *(a for a in sys.argv[1:] if a != "--install")])
            result["installed"] = str(install_run(Path(result.get("final_checkpoint", result["checkpoint"])).parent,
                                                  command=made_by))
    finally:
        if progress.live.is_started:
            progress.stop()
    if quiet:
        emit_json(result)
        return
    if sweep:
        b = result["best"]
        out.print(f"best: lr {b['outer_lr']:g} seed {b['seed']} step {b['step']} "
                  f"(meta-validation {b['meta_validation_loss']:.4f}) -> {result['checkpoint']}")
        return
    for ph in result["phases"]:
        out.print(f"phase {ph['phase']}: {ph['outer_iterations']} outer steps, meta-loss "
                  f"{ph['meta_loss_first']:.4f} -> {ph['meta_loss_last']:.4f} "
                  f"({ph['wall_seconds']:.0f} s) -> {ph['checkpoint']}")
    if "best" in result:
        out.print(f"best: step {result['best']['step']} (meta-validation "
                  f"{result['best']['meta_validation_loss']:.4f})")
    if "installed" in result:
        out.print(f"installed: {result['installed']}")
    folder = Path(result["checkpoint"]).parent
    python = f"in Python: build('{arch}', num_steps=T, checkpoint='{folder}')"
    installed = Path(result["installed"]) if "installed" in result else None
    if installed is not None and installed.name in load_registry().optimizers:
        how = f"run it: {ENV_FOLDER}={installed.parent} celo-bench run -o {installed.name}"
    elif installed is not None:
        how = python
    else:
        how = f"--install copies it where the benchmark finds it; {python}"
    out.print(f"checkpoint: {result['checkpoint']} ({result['label']}); {how}")


def register(app: typer.Typer) -> None:
    app.command("meta-train")(meta_train_command)
