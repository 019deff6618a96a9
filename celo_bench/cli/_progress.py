"""Progress of a grid that a person can follow, on a terminal or in a log file.

Up front: jobs and runs to execute, runs already stored, optimizers that cannot run here.
Then one line per finished job with ``k/N`` jobs, runs done, elapsed time and ETA — printed
as plain lines when stderr is not a terminal (a log file, CI), with a live bar when it is.
Ctrl-C ends with one line: interrupted, how many runs are stored, re-run to resume.
With a `log` path, every line also goes to that file (plain text, appended).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from celo_bench.cli._interrupt import exit_interrupted
from celo_bench.runner import GridPlan

LOG_FOLDER = ".logs"
"""Where `run` appends its progress inside the results folder: ``<results>/.logs/run-<suite>-<time>.log``."""


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class GridProgress:
    """Callbacks for :func:`celo_bench.runner.run` that print the grid's progress."""

    def __init__(self, console: Console, *, quiet: bool = False, log: Path | None = None):
        self.console, self.quiet, self.log = console, quiet, log
        self.grid: GridPlan | None = None
        self.jobs_total = self.runs_total = self.jobs_done = self.runs_done = 0
        self.left: dict[bool, int] = {}  # jobs still to finish, by kind (learned or not)
        self.cost: dict[bool, list[float]] = {}  # compile + run seconds of finished jobs, by kind
        self.t0 = time.perf_counter()
        self.live = console.is_terminal and not quiet
        self.bar: Progress | None = None

    # ------------------------------------------------------------------ callbacks
    def planned(self, grid: GridPlan) -> None:
        self.grid = grid

    def start(self, todo: Sequence) -> None:
        self.jobs_total = len(todo)
        self.runs_total = sum(len(j.runs) for j in todo)
        self.left = {kind: sum(_kind(j) == kind for j in todo) for kind in (True, False)}
        self.cost = {True: [], False: []}
        self.t0 = time.perf_counter()
        if self.quiet:
            return
        g = self.grid
        stored = g.stored if g else 0
        skipped = f", {len(g.not_run)} optimizer{'s' if len(g.not_run) != 1 else ''} not run here (see the end)" if g and g.not_run else ""
        line = (f"grid: {self.jobs_total} jobs, {self.runs_total} runs to execute, {stored} already "
                f"stored{skipped}")
        self.console.print(escape(line), highlight=False)
        self.write_log(line)
        if self.live and self.jobs_total:
            self.bar = Progress(TextColumn("[bold]grid"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("runs"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                                console=self.console, transient=True)
            self.bar.start()
            self.bar_task = self.bar.add_task("grid", total=self.runs_total, eta="")

    def job_done(self, job, records) -> None:
        self.jobs_done += 1
        self.runs_done += len(records)
        rec = records[0] if records else None
        self._count(job, rec)
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.t0
        eta = self.eta(elapsed)
        bad = sum(r["status"] != "ok" for r in records)
        timing = (f", compile {rec['compile_seconds'] or 0:.1f}s + run {rec['run_seconds'] or 0:.1f}s"
                  if rec is not None and rec["status"] != "failed" else "")
        note = f", {bad} not ok" if bad else ""
        line = (f"[{self.jobs_done}/{self.jobs_total} jobs | {self.runs_done}/{self.runs_total} runs | "
                f"{_clock(elapsed)} elapsed | ETA {_clock(eta)}] {job.name}: {len(records)} runs{note}{timing}")
        self.write_log(line)
        if self.bar is not None:
            self.bar.update(self.bar_task, advance=len(records), eta=f"ETA {_clock(eta)}")
            self.bar.console.print(escape(line), highlight=False)
        else:
            self.console.print(escape(line), highlight=False, soft_wrap=True)

    def _count(self, job, rec) -> None:
        kind = _kind(job)
        self.left[kind] = max(0, self.left.get(kind, 0) - 1)
        seconds = 0.0 if rec is None else float(rec["compile_seconds"] or 0.0) + float(rec["run_seconds"] or 0.0)
        self.cost.setdefault(kind, []).append(seconds)

    def eta(self, elapsed: float) -> float:
        """Seconds left: `elapsed` times the expected cost of the jobs left over the cost of those
        done. A job's cost is its compile + run seconds; a job left is expected to cost the mean
        of the finished jobs of its kind (learned optimizers compile far longer than the others
        and run first), or of all finished jobs while none of its kind has finished."""
        done = [c for costs in self.cost.values() for c in costs]
        if not done or sum(done) <= 0:
            left = self.runs_total - self.runs_done
            return elapsed / self.runs_done * left if self.runs_done else 0.0
        mean_all = sum(done) / len(done)
        expected = sum(n * (sum(self.cost[k]) / len(self.cost[k]) if self.cost.get(k) else mean_all)
                       for k, n in self.left.items())
        return elapsed * expected / sum(done)

    def write_log(self, line: str) -> None:
        """Append `line` to the log file, if there is one (a log that cannot be written is dropped
        with one line: the grid matters more than its log)."""
        if self.log is None:
            return
        try:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with self.log.open("a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        except OSError as e:
            self.console.print(f"[yellow]log {escape(str(self.log))} cannot be written ({e.strerror}); "
                               "going on without it[/]")
            self.log = None

    def waiting(self, job) -> None:
        if not self.quiet:
            self.console.print(escape(f"waiting for {job.name}: another process on this results "
                                      "folder is training it"), highlight=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def interrupted(self) -> None:
        """Print the one line of a Ctrl-C and leave at once (code 130)."""
        self.stop()
        stored = (self.grid.stored if self.grid else 0) + self.runs_done
        # jobs in flight are abandoned; their records were never half-written
        exit_interrupted(f"interrupted: {stored} runs of this grid are stored ({self.runs_done} "
                         "from this session); re-run the same command to resume")


def _kind(job) -> bool:
    """True for a learned optimizer's job (the ETA keeps their costs apart)."""
    return getattr(getattr(job, "optimizer", None), "kind", None) == "learned"


def print_not_run(groups: Sequence[tuple[str, str, Sequence[str]]], console: Console | None = None) -> None:
    """One line per reason an optimizer of the grid did not run here, with its fix."""
    console = console or Console(stderr=True)
    for reason, fix, names in groups:
        text = f"not run: {', '.join(names)}: {reason}" + (f"; fix: {fix}" if fix else "")
        console.print(f"[yellow]{escape(text)}[/]", highlight=False, soft_wrap=True)


__all__ = ["LOG_FOLDER", "GridProgress", "print_not_run"]
