"""``celo-bench verify``: rerun a sample of a bundle's runs from its own code and compare the curves.

**What is rerun.** For each task, the submission's tuned point (the suite's selection rule
applied to the bundle's records, as scoring picks it) at its lowest seed, plus a seeded
random sample of `sample` other runs (``--sample``, ``--seed``); ``failed`` runs hold no
curves and are never picked. A run's numbers depend on how many runs share its compiled
program and on the execution strategy (:mod:`celo_bench.versions`), so each picked run is
rerun in the job shape its record states: with ``runs="vmap"`` in its original job (the
records of its task that share its ``job_runs`` and its job's timings, in plan order; when the
bundle does not hold that whole job, the same number of the task's runs in plan order); with
``runs="sequential"`` on its own (one single-run program either way). Every run of a rerun job
is compared, so the sample is the set of runs compared, picked runs and their job mates.

**Where.** In a separate process with a time limit (:func:`~celo_bench.submission.validate.run_worker`,
as ``validate`` does), from the bundle's own ``optimizer.py`` (and checkpoint) written to a
temporary folder; the bundle is checked first exactly as ``import`` checks it.

**Comparison.** Per run: the status and ``eval_steps`` must be equal; over ``train_loss`` and
the three eval curves the largest relative difference ``|a - b| / max(|b|, 1e-12)`` (NaN equals
NaN; NaN against a number, or another length, is infinite) must be within the tolerance:
:data:`SAME_DEVICE_TOLERANCE` when the rerun's device kind is the record's,
:data:`OTHER_DEVICE_TOLERANCE` otherwise (``--tolerance`` sets one for both).

The result (verified or not, the runs compared, the largest difference, the device kind, the
date, the bundle's sha256 and the submission's factory) is written, passed or not, to
``<results>/.submissions/<name>/verification.json``
(:data:`celo_bench.submission.stored.VERIFICATION_NAME`), where the leaderboard reads it, when
the store keeps this very bundle; otherwise to ``<results>/.submissions/.verifications/``, from
where ``import`` of the same bundle moves it beside the submission
(:func:`verification_path`).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from celo_bench import __version__, fileio
from celo_bench.defaults import SUBMISSIONS_FOLDER, submission_folder
from celo_bench.errors import CeloBenchError
from celo_bench.score import ScoreConfig, run_frame, select
from celo_bench.submission import stored
from celo_bench.submission.bundle import BUNDLE_INFO, Bundle, open_bundle
from celo_bench.submission.validate import run_worker

SAME_DEVICE_TOLERANCE = 1e-6
"""Largest relative difference of a rerun on the records' device kind. Measured on a CPU: a rerun
of the same job in another process is bit-identical (0); the same run in a job of another size,
another steps/runs strategy or XLA level differs by 1e-7 to 8e-7 over 10-50 steps of the smoke
suite (float rounding), so a rerun in the wrong shape can reach this tolerance. The table is
in submissions/README.md."""
OTHER_DEVICE_TOLERANCE = 1e-2
"""... and on another device kind, whose kernels round differently; rounding differences grow over
a run (up to 2e-3 over 300 steps between two CPU programs of RNN-MLP-LOpt: :mod:`celo_bench.versions`).
Not measured against a GPU."""
DEFAULT_SAMPLE = 2
DEFAULT_TIMEOUT = 1800.0
"""Seconds for the rerun (importing JAX, compiling and training the rerun jobs)."""
CURVES = ("train_loss", "eval_train_loss", "eval_valid_loss", "eval_test_loss")
PENDING = ".verifications"
"""``<results>/.submissions/.verifications/<name>-<sha256[:16]>.json``: a verification of a bundle the
store does not keep (yet); ``import`` of that bundle moves it beside the submission."""


@dataclass
class RunCheck:
    """One rerun run against its record (``why``: ``tuned``, ``sample`` or ``job``, a job mate)."""

    key: str
    task: str
    hparam_id: str
    seed: int
    why: str
    device: str | None
    status: str
    rerun_status: str
    max_rel_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.status == self.rerun_status and self.max_rel_diff <= self.tolerance

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok, "max_rel_diff": _json_float(self.max_rel_diff)}


@dataclass
class Verification:
    """What ``verify`` found; ``problem`` is the one line that says why it failed ("" when verified)."""

    name: str
    suite: str
    suite_version: str
    bundle_sha256: str
    source_sha256: str
    factory: str
    sample: int
    seed: int
    device: str | None = None
    runs: list[RunCheck] = field(default_factory=list)
    problem: str = ""
    seconds: float = 0.0
    date: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    written: Path | None = None

    @property
    def verified(self) -> bool:
        return not self.problem and bool(self.runs) and all(r.ok for r in self.runs)

    @property
    def max_rel_diff(self) -> float:
        return max((r.max_rel_diff for r in self.runs), default=math.nan)

    @property
    def same_device(self) -> bool:
        return bool(self.runs) and all(r.device == self.device for r in self.runs)

    def as_dict(self) -> dict[str, Any]:
        """The content of ``verification.json``."""
        return {
            "verified": self.verified, "name": self.name, "suite": self.suite, "suite_version": self.suite_version,
            "bundle_sha256": self.bundle_sha256, "source_sha256": self.source_sha256, "factory": self.factory,
            "sample_size": len(self.runs), "sample": self.sample,
            "seed": self.seed, "max_relative_difference": _json_float(self.max_rel_diff),
            "tolerance": max((r.tolerance for r in self.runs), default=None), "device": self.device,
            "stored_devices": sorted({r.device or "unknown" for r in self.runs}), "same_device": self.same_device,
            "date": self.date, "seconds": round(self.seconds, 1), "celo_bench_version": __version__,
            "problem": self.problem, "runs": [r.as_dict() for r in self.runs],
        }


def _json_float(x: float) -> float | str | None:
    return None if math.isnan(x) else ("inf" if math.isinf(x) else x)


# --------------------------------------------------------------------------- what to rerun
def choose(b: Bundle, sample: int, seed: int) -> dict[str, str]:
    """Run key -> why it is rerun: each task's tuned point at its lowest seed (``tuned``), then a
    seeded random `sample` of the other runs that hold curves (``sample``)."""
    frame = b.frame()
    cfg = ScoreConfig.for_suite(b.suite)
    runs = select(run_frame(frame, cfg), cfg.selection)  # one row per record, in the frame's order
    keys = frame["key"].tolist()
    usable = (runs["status"] != "failed").to_numpy()
    chosen: dict[str, str] = {}
    for task in dict.fromkeys(runs["task"]):
        tuned = runs[(runs["task"] == task) & runs["selected"] & usable].sort_values("seed", kind="stable")
        if len(tuned):
            chosen[keys[tuned.index[0]]] = "tuned"
    rest = [k for k, ok in zip(keys, usable, strict=True) if ok and k not in chosen]
    picks = np.random.default_rng(seed).choice(len(rest), size=min(sample, len(rest)), replace=False)
    for i in sorted(int(i) for i in picks):
        chosen[rest[i]] = "sample"
    return chosen


def _execution(row: dict[str, Any]) -> dict[str, Any]:
    prov = json.loads(row["provenance"] or "{}")
    ex = prov.get("execution")
    if not isinstance(ex, dict) or not ex.get("runs"):
        raise CeloBenchError(f"record {row['key']} does not state how it ran (provenance 'execution'); it "
                             "cannot be rerun in its job's shape")
    return ex


def rerun_jobs(b: Bundle, chosen: dict[str, str]) -> list[dict[str, Any]]:
    """The jobs that rerun the chosen runs in their records' shapes: ``{task, keys, strategy}``."""
    order = list(b.rows)
    jobs: dict[tuple, dict[str, Any]] = {}
    for key in chosen:
        row = b.rows[key]
        ex = _execution(row)
        if ex["runs"] == "sequential":  # a single-run program: the job's size changes nothing
            job = jobs.setdefault(("sequential", row["task"], json.dumps(ex, sort_keys=True)),
                                  {"task": row["task"], "keys": [], "strategy": ex})
            job["keys"].append(key)
            continue
        n = row["job_runs"] or 1
        same_job = [k for k, r in b.rows.items() if r["task"] == row["task"] and r["job_runs"] == row["job_runs"]
                    and r["compile_seconds"] == row["compile_seconds"] and r["run_seconds"] == row["run_seconds"]]
        if len(same_job) != n or key not in same_job:
            others = [k for k, r in b.rows.items() if r["task"] == row["task"] and k != key]
            if len(others) + 1 < n:
                raise CeloBenchError(f"run {key} ran in a job of {n} runs, but the bundle holds only "
                                     f"{len(others) + 1} runs of task {row['task']}: its shape cannot be rebuilt")
            same_job = sorted([key, *others[: n - 1]], key=order.index)
        jobs.setdefault(("vmap", *same_job), {"task": row["task"], "keys": same_job, "strategy": ex})
    return list(jobs.values())


# --------------------------------------------------------------------------- comparison
def max_rel_diff(rerun: Any, stored_curve: Any) -> float:
    """Largest ``|a - b| / max(|b|, 1e-12)`` of two curves; NaN equals NaN, a NaN against a
    number or another length is infinite; two empty curves differ by 0."""
    a = np.asarray([] if rerun is None else rerun, dtype=np.float64)
    b = np.asarray([] if stored_curve is None else stored_curve, dtype=np.float64)
    if a.shape != b.shape or (np.isnan(a) != np.isnan(b)).any():
        return math.inf
    m = ~np.isnan(a)
    x, y = a[m], b[m]
    if not x.size:
        return 0.0
    with np.errstate(invalid="ignore"):
        d = np.where(x == y, 0.0, np.abs(x - y) / np.maximum(np.abs(y), 1e-12))
    return float(np.nan_to_num(d, nan=math.inf).max())


def compare(row: dict[str, Any], rerun: dict[str, Any], why: str, device: str | None,
            tolerance: float | None) -> RunCheck:
    """One run's record against its rerun."""
    stored_device = json.loads(row["provenance"] or "{}").get("device")
    tol = tolerance if tolerance is not None else (
        SAME_DEVICE_TOLERANCE if stored_device == device else OTHER_DEVICE_TOLERANCE)
    diff = 0.0
    if row["status"] != "failed" or rerun["status"] != "failed":
        same_steps = list(row["eval_steps"] or []) == list(rerun["eval_steps"] or [])
        diff = max([max_rel_diff(rerun[c], row[c]) for c in CURVES] + [0.0 if same_steps else math.inf])
    return RunCheck(key=row["key"], task=row["task"], hparam_id=row["hparam_id"], seed=int(row["seed"]), why=why,
                    device=stored_device, status=row["status"], rerun_status=rerun["status"],
                    max_rel_diff=diff, tolerance=tol)


def _problem(v: Verification) -> str:
    bad = [r for r in v.runs if not r.ok]
    if not bad:
        return ""
    worst = max(bad, key=lambda r: (r.status == r.rerun_status, -r.max_rel_diff))
    where = f"run {worst.key} ({worst.task}, {worst.hparam_id}, seed {worst.seed})"
    if worst.status != worst.rerun_status:
        return f"{where} is {worst.status} in the bundle but {worst.rerun_status} when rerun"
    return (f"{where} differs from its rerun by {worst.max_rel_diff:.3g} (relative), more than the tolerance "
            f"{worst.tolerance:g}" + ("" if len(bad) == 1 else f" ({len(bad)} of {len(v.runs)} runs differ)"))


# --------------------------------------------------------------------------- where the result goes
def verification_path(results: Path, name: str, bundle_sha256: str) -> Path:
    """Where ``verify`` writes its result for a bundle in store `results`: beside the kept
    submission when the store keeps this very bundle (its ``bundle.json`` names the sha256),
    else :func:`pending_path`, where ``import`` finds it."""
    folder = submission_folder(results, name)
    try:
        kept = json.loads((folder / BUNDLE_INFO).read_text(encoding="utf-8")).get("bundle_sha256")
    except (OSError, ValueError, AttributeError):
        kept = None
    if kept == bundle_sha256:
        return folder / stored.VERIFICATION_NAME
    return pending_path(results, name, bundle_sha256)


def pending_path(results: Path, name: str, bundle_sha256: str) -> Path:
    """Where a verification of a bundle the store does not keep waits for its import (:data:`PENDING`)."""
    return Path(results).expanduser() / SUBMISSIONS_FOLDER / PENDING / f"{name}-{bundle_sha256[:16]}.json"


# --------------------------------------------------------------------------- entry point
def verify_bundle(path: str | Path, *, results: Path | None, sample: int = DEFAULT_SAMPLE, seed: int = 0,
                  timeout: float = DEFAULT_TIMEOUT, tolerance: float | None = None) -> Verification:
    """Rerun a sample of a bundle's runs in a separate process and compare them with its records.

    Writes ``verification.json`` beside the submission in store `results` (None: nowhere),
    whether it passed or not.

    Raises:
        BundleRefused: the bundle failed a check of :func:`~celo_bench.submission.bundle.open_bundle`.
        CeloBenchError: a picked run's job shape cannot be rebuilt from the bundle.
    """
    t0 = time.perf_counter()
    b = open_bundle(path)
    chosen = choose(b, sample, seed)
    jobs = rerun_jobs(b, chosen)
    v = Verification(name=b.name, suite=b.suite.name, suite_version=b.suite.version, bundle_sha256=b.sha256,
                     source_sha256=b.manifest["source_sha256"], factory=b.spec.factory, sample=sample, seed=seed)
    with tempfile.TemporaryDirectory(prefix="celo-bench-verify-") as tmp:
        folder = b.write_submission(Path(tmp) / "submission")
        payload = {"folder": str(folder), "suite": b.suite.name, "plan": b.plan_settings, "jobs": jobs}
        run = run_worker("celo_bench.submission._verify_worker", payload, timeout, prefix="celo-bench-verify-")
    report = run.report or {}
    if run.timed_out:
        v.problem = (f"the rerun did not finish within {timeout:g} s (stuck while {run.stage or 'starting Python'}); "
                     "pass a larger --timeout")
    elif run.report is None:
        last = run.stderr.strip().splitlines()[-1:] or [f"exit code {run.returncode}"]
        v.problem = f"the rerun's process died before reporting ({last[0]})"
    elif report.get("error"):
        v.problem = f"the rerun failed: {report['error']}"
    else:
        v.device = report.get("device")
        reruns = {r["key"]: r for r in report["runs"]}
        for job in jobs:
            for key in job["keys"]:
                v.runs.append(compare(b.rows[key], reruns[key], chosen.get(key, "job"), v.device, tolerance))
        v.problem = _problem(v)
    v.seconds = time.perf_counter() - t0
    if results is not None:
        v.written = fileio.atomic_write_text(verification_path(results, b.name, b.sha256),
                                             json.dumps(v.as_dict(), indent=1) + "\n")
    return v


__all__ = ["DEFAULT_SAMPLE", "DEFAULT_TIMEOUT", "OTHER_DEVICE_TOLERANCE", "PENDING", "SAME_DEVICE_TOLERANCE",
           "RunCheck", "Verification", "choose", "compare", "max_rel_diff", "pending_path", "rerun_jobs",
           "verification_path", "verify_bundle"]
