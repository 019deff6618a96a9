"""One prepared device check: all 17 paper tasks on synthetic data, Adam and Celo, timed.

For every paper task, on synthetic stand-in data of the task's exact shapes (no download):
Adam's learning-rate sweep (7 points x 3 seeds = 21 runs, one vmapped job) and Celo (3
seeds), each for ``--steps`` steps (default 200) with the default strategy of this device
(scan + vmap on a GPU). Per task it prints compile seconds, steps/s per run, runs per
program, peak device memory and the projected device-hours of the task's share of the full
paper grid (25 optimizers, 2,000 steps), and writes ``device_check.json`` and
``device_check.md`` into ``--out`` (default ``$OUT``, else ``./device-check-out``) after every
task, so a run stopped by its time limit still leaves what it measured.

Tasks are taken round-robin over model families, so every family is measured early; no new
task starts after ``--budget-s`` seconds (default 420: the whole check fits in 8 minutes).

``--tiny`` is the CPU mode the tests run: two small tasks, 10 steps, a 2-point sweep x 1 seed.

Usage (on the device machine, see scripts/device_check.sh)::

    python3 scripts/device_check.py --out "$OUT"
    python3 scripts/device_check.py --tiny --out /tmp/check
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

PAPER_HORIZON = 2000
TINY_TASKS = ("ImageMLP_FashionMnist_Relu128x128", "ImageMLPAE_Mnist_128x32x128_bs128")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="CPU mode for the tests: 2 tasks, 10 steps.")
    ap.add_argument("--out", type=Path, default=None, help="Output folder (default $OUT, else ./device-check-out).")
    ap.add_argument("--steps", type=int, default=None, help="Steps per job (default 200; tiny 10).")
    ap.add_argument("--tasks", default=None, help="Comma-separated tasks (default: the paper suite's 17).")
    ap.add_argument("--seeds", type=int, default=None, help="Seeds (default 3; tiny 1).")
    ap.add_argument("--budget-s", type=float, default=420.0, help="Start no task after this many seconds.")
    ap.add_argument("--suite", default="paper", help="Suite whose tasks and grid are measured and projected.")
    return ap.parse_args(argv)


def _order(tasks: list[str], family: dict[str, str]) -> list[str]:
    """Round-robin over families (in first-seen order), each family's tasks in suite order."""
    groups: dict[str, list[str]] = {}
    for t in tasks:
        groups.setdefault(family[t], []).append(t)
    out: list[str] = []
    while any(groups.values()):
        for g in groups.values():
            if g:
                out.append(g.pop(0))
    return out


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    out_dir = Path(args.out or os.environ.get("OUT") or "device-check-out")
    out_dir.mkdir(parents=True, exist_ok=True)

    import jax

    from celo_bench import calibration, plan, pricing
    from celo_bench.engine import memory
    from celo_bench.suite import load_registry

    reg = load_registry()
    suite = reg.suite(args.suite)
    tasks = args.tasks.split(",") if args.tasks else list(TINY_TASKS if args.tiny else suite.tasks)
    steps = args.steps or (10 if args.tiny else 200)
    seeds = args.seeds or (1 if args.tiny else 3)
    grids = None
    if args.tiny:  # two learning rates: still one vmapped job of several runs
        adam = reg.optimizer("adam").grid["learning_rate"]
        grids = {"adam": {"learning_rate": tuple(adam[2:4])}}
    dev = jax.devices()[0]
    backend = jax.default_backend()
    budget = memory.device_memory_budget(dev)
    header = {
        "device": getattr(dev, "device_kind", str(dev)), "platform": dev.platform, "backend": backend,
        "jax": jax.__version__, "memory_budget_bytes": budget, "steps": steps, "seeds": seeds,
        "tiny": args.tiny, "suite": suite.name, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"device check: {header['device']} ({backend}), jax {jax.__version__}, budget "
          f"{_gib(budget)} GiB/program, {len(tasks)} tasks x (adam sweep, celo) x {steps} steps", flush=True)

    # The full grid of the probed tasks, for the projection (counts need no device).
    sizes = calibration.task_sizes(reg.task(t) for t in tasks)
    full = pricing.price(reg, suite.name, tasks=tasks, data="synthetic", results=out_dir / "no-store",
                         backend=backend, memory_budget=budget, sizes=sizes)
    family = {t: reg.task(t).family for t in tasks}
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    cols = ("task", "optimizer", "runs", "runs/program", "compile s", "steps/s/run", "peak GiB", "grid h")
    print(" | ".join(cols), flush=True)
    for task in _order(tasks, family):
        if time.perf_counter() - t_start > args.budget_s:
            skipped.append(task)
            continue
        jobs = plan.expand(reg, suite, tasks=[task], optimizers=["adam", "celo"], seeds=seeds, steps=steps,
                           data="synthetic", grids=grids)
        probes, kinds = [], {}
        for job in jobs:
            try:
                pr = calibration.probe_job(job, horizon=PAPER_HORIZON, memory_budget=budget)
            except Exception as e:  # one task's failure must not lose the others' numbers
                if memory.is_oom(e):
                    msg = f"out of memory: {str(e).splitlines()[0][:300]}"
                else:
                    msg = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                rows.append({"task": task, "family": family[task], "optimizer": job.optimizer.name,
                             "error": msg})
                print(f"{task} | {job.optimizer.name} | error: {msg}", flush=True)
                continue
            probes.append(pr)
            kinds[pr.optimizer] = "learned" if job.optimizer.kind == "learned" else "handcrafted"
        rates = calibration.rates_for(probes, kinds)
        one = replace(full, jobs=[j for j in full.jobs if j.task == task])
        grid_s = pricing.project(one, {task: rates}, skip_unavailable=False)["seconds"] if len(rates) == 2 else None
        for pr in probes:
            row = pr.as_dict() | {"grid_task_hours": None if grid_s is None else grid_s / 3600}
            rows.append(row)
            print(" | ".join([
                task, pr.optimizer, str(pr.runs), str(pr.runs_per_program), f"{pr.compile_s:.1f}",
                f"{pr.steps_per_s_per_run:.1f}", _gib(pr.peak_bytes),
                "-" if grid_s is None else f"{grid_s / 3600:.3f}",
            ]), flush=True)
        _write(out_dir, header, rows, skipped, t_start, memory.peak_memory_bytes(dev))
    summary = _write(out_dir, header, rows, skipped, t_start, memory.peak_memory_bytes(dev))
    print(f"projected full grid ({len(summary['projected_tasks'])} tasks measured): "
          f"{summary['projected_device_hours']:.2f} device-hours; wall {summary['wall_s']:.0f} s; "
          f"wrote {out_dir / 'device_check.json'}", flush=True)
    return 0 if not any("error" in r for r in rows) else 1


def _write(out_dir: Path, header: dict, rows: list[dict], skipped: list[str], t_start: float,
           process_peak: int | None) -> dict:
    per_task: dict[str, float] = {}
    for r in rows:
        if r.get("grid_task_hours") is not None:
            per_task[r["task"]] = r["grid_task_hours"]
    summary = header | {
        "wall_s": time.perf_counter() - t_start, "process_peak_bytes": process_peak,
        "rows": rows, "skipped_for_time": skipped, "projected_tasks": sorted(per_task),
        "projected_device_hours": sum(per_task.values()),
    }
    (out_dir / "device_check.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    lines = ["| task | optimizer | runs | runs/program | strategy | compile s | steps/s per run | peak GiB | grid share h |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['task']} | {r['optimizer']} | error: {r['error']} | | | | | | |")
            continue
        gh = "-" if r.get("grid_task_hours") is None else f"{r['grid_task_hours']:.3f}"
        lines.append(f"| {r['task']} | {r['optimizer']} | {r['runs']} | {r['runs_per_program']} | {r['strategy']} | "
                     f"{r['compile_s']:.1f} | {r['steps_per_s_per_run']:.1f} | {_gib(r['peak_bytes'])} | {gh} |")
    lines.append(f"\nProjected full grid: {summary['projected_device_hours']:.2f} device-hours "
                 f"({len(per_task)} tasks measured; skipped for time: {', '.join(skipped) or 'none'}).")
    (out_dir / "device_check.md").write_text("\n".join(lines) + "\n")
    return summary


if __name__ == "__main__":
    sys.exit(main())
