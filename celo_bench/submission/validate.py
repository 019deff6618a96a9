"""``celo-bench validate``: check a submission folder without trusting its code.

The metadata, the search space and (for learned submissions) the checkpoint are checked
here, reading files only. The code checks (:mod:`celo_bench.submission.checks`) run in a
fresh Python process with a time limit; at the limit its whole process group is killed,
so an infinite loop at import or inside ``update`` is reported, not waited on.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from celo_bench.errors import CeloBenchError, CheckpointError, SpecError
from celo_bench.submission.checks import Failure
from celo_bench.submission.schema import (
    TEMPLATE_HINT,
    Submission,
    check_points,
    parse_submission,
    source_sha256,
)

DEFAULT_TIMEOUT = 180.0
"""Seconds for the code checks (importing JAX and compiling a few tiny programs)."""


@dataclass
class Report:
    """What validation found: the parsed submission (if the metadata parsed) and failures."""

    folder: Path
    submission: Submission | None = None
    passed: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    source_sha256: str = ""
    checkpoint_sha256: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        return [f.line() for f in self.failures]

    def as_dict(self) -> dict:
        sub = self.submission
        return {
            "folder": str(self.folder), "ok": self.ok, "name": sub.name if sub else None,
            "kind": sub.kind if sub else None, "passed": self.passed,
            "failures": [f.as_dict() for f in self.failures], "source_sha256": self.source_sha256,
            "checkpoint_sha256": self.checkpoint_sha256, "seconds": round(self.seconds, 2),
        }


class SubmissionInvalid(CeloBenchError):
    """A submission failed validation; ``report`` holds every failure."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__("; ".join(report.lines()))


def _spec_failure(e: SpecError) -> Failure:
    """One problem of the folder or its metadata as a failure, with the fix that suits it."""
    if e.key == "<folder>":  # nothing to edit yet: the fix is to point at, or make, a folder
        fix = ("pass the folder that holds them, or create one by copying submissions/template/"
               if Path(e.path).exists() else
               f"create it by copying submissions/template/ (cp -r submissions/template {e.path}), "
               "or pass the path of an existing submission folder")
        return Failure("files", f"{e.path} {e.problem}", fix)
    if e.key == "<file>":
        name = Path(e.path).name
        fix = (f"copy {name} from submissions/template/" if e.problem == "is missing"
               else f"edit {name}; {TEMPLATE_HINT}")
        return Failure("files", f"{e.path} {e.problem}", fix)
    check = "search_space" if e.key.startswith("search_space") else (
        "checkpoint" if e.key.startswith("checkpoint") else "metadata")
    return Failure(check, f"{e.path}: key '{e.key}': {e.problem}", f"edit submission.toml; {TEMPLATE_HINT}")


def _metadata(folder: Path, report: Report) -> Submission | None:
    try:
        sub = parse_submission(folder)
    except SpecError as e:  # every problem, one failure each
        report.failures += [_spec_failure(p) for p in getattr(e, "problems", (e,))]
        return None
    report.passed += ["metadata", "search_space"]
    report.source_sha256 = source_sha256(sub.folder)
    from celo_bench.suite import load_registry

    taken = load_registry().optimizers
    if sub.name in taken:
        report.failures.append(Failure(
            "metadata", f"name '{sub.name}' is already the {taken[sub.name].kind} optimizer "
            f"'{sub.name}' of the benchmark", "pick another name in submission.toml"))
    return sub


def _checkpoint(sub: Submission, report: Report) -> str | None:
    from celo_bench.submission.loader import SubmissionCheckpointError, read_checkpoint

    try:
        _, path = read_checkpoint(sub)
    except SubmissionCheckpointError as e:
        report.failures.append(Failure("checkpoint", e.problem, e.fix))
        return None
    except CheckpointError as e:  # e.g. an hf:// source that cannot be fetched
        report.failures.append(Failure("checkpoint", str(e), "fix [checkpoint] source in submission.toml"))
        return None
    report.checkpoint_sha256 = sub.checkpoint["sha256"]
    report.passed.append("checkpoint")
    return str(path)


def _kill(proc: subprocess.Popen) -> None:
    """Kill the worker and anything it started (it leads its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


_PASSED: dict[str, list[str]] = {}
"""Fingerprints of folders whose code checks passed in this process (see :func:`_fingerprint`)."""


def _fingerprint(sub: Submission, payload: dict) -> str:
    """Hash of every file in the folder plus the check payload: the code checks are a pure
    function of these bytes, so a passing result is reused (``submit`` right after
    ``validate``, or twice in one process); failures are always re-run."""
    h = hashlib.sha256(json.dumps(payload, sort_keys=True).encode())
    for p in sorted(sub.folder.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(sub.folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def run_code_checks(sub: Submission, checkpoint: str | None, timeout: float) -> tuple[list[str], Failure | None]:
    """Run :mod:`~celo_bench.submission.checks` in a new process; (passed, failure or None)."""
    payload_data = {
        "folder": str(sub.folder), "kind": sub.kind, "defaults": sub.defaults,
        "points": check_points(sub), "checkpoint": checkpoint, "sha256": sub.checkpoint.get("sha256"),
    }
    key = _fingerprint(sub, payload_data)
    if key in _PASSED:
        return list(_PASSED[key]), None
    passed, failure = _spawn(payload_data, timeout)
    if failure is None:
        _PASSED[key] = list(passed)
    return passed, failure


@dataclass(frozen=True)
class WorkerRun:
    """What a worker process left (see :func:`run_worker`).

    Attributes:
        report: The JSON it wrote to its output file (None: it wrote none: it crashed, exited
            or timed out).
        timed_out: It was killed at the time limit.
        stage: The last stage it announced (its output file's ``.stage`` companion), "" if none.
        stderr: What it printed on stderr (empty after a timeout).
        returncode: Its exit code (None after a timeout).
    """

    report: dict | None
    timed_out: bool = False
    stage: str = ""
    stderr: str = ""
    returncode: int | None = None


def run_worker(module: str, payload: dict, timeout: float, *, prefix: str = "celo-bench-validate-") -> WorkerRun:
    """Run ``python -m <module> PAYLOAD.json OUT.json`` in a fresh process, its own session and a
    temporary working folder, for at most `timeout` seconds (then its whole process group is
    killed). The worker announces stages in ``OUT.json.stage`` and writes its report to ``OUT.json``."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        payload_path, out = Path(tmp) / "payload.json", Path(tmp) / "report.json"
        payload_path.write_text(json.dumps(payload), encoding="utf-8")
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", module, str(payload_path), str(out)],
            cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, text=True,
        )
        stage_file = out.with_name(out.name + ".stage")
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            stage = stage_file.read_text(encoding="utf-8") if stage_file.exists() else ""
            return WorkerRun(None, timed_out=True, stage=stage)
        stage = stage_file.read_text(encoding="utf-8") if stage_file.exists() else ""
        report = json.loads(out.read_text(encoding="utf-8")) if out.exists() else None
        return WorkerRun(report, stage=stage, stderr=stderr or "", returncode=proc.returncode)


def _spawn(payload_data: dict, timeout: float) -> tuple[list[str], Failure | None]:
    run = run_worker("celo_bench.submission._worker", payload_data, timeout)
    if run.timed_out:
        return [], Failure(
            "timeout", f"the checks did not finish within {timeout:g} s (stuck while {run.stage or 'starting Python'}): "
            "an infinite loop, or far too much work for a 49-parameter problem",
            "make import, make_optimizer, init and update terminate quickly; if it is only slow, "
            "pass a larger --timeout")
    if run.report is None:
        last = run.stderr.strip().splitlines()[-1:] or [f"exit code {run.returncode}"]
        return [], Failure("crash", f"the checks' process died before reporting ({last[0]})",
                           "optimizer.py must not exit the interpreter or crash it (sys.exit, "
                           "os._exit, native code)")
    result = run.report
    failure = Failure(**result["failure"]) if result["failure"] else None
    return result["passed"], failure


def validate_submission(folder: str | os.PathLike, *, timeout: float = DEFAULT_TIMEOUT) -> Report:
    """Check a submission folder; never raises for problems of the submission itself.

    Order: files and metadata, search space, checkpoint (learned), then the code checks
    in a worker process. Code checks run only when everything before them passed.
    """
    t0 = time.perf_counter()
    report = Report(folder=Path(folder).expanduser().resolve())
    sub = _metadata(report.folder, report)
    report.submission = sub
    if sub is not None:
        report.folder = sub.folder
    checkpoint = None
    if sub is not None and sub.learned:
        checkpoint = _checkpoint(sub, report)
    if sub is not None and report.ok:
        passed, failure = run_code_checks(sub, checkpoint, timeout)
        report.passed += passed
        if failure:
            report.failures.append(failure)
    report.seconds = time.perf_counter() - t0
    return report
