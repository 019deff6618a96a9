"""Verification worker: ``python -m celo_bench.submission._verify_worker PAYLOAD.json OUT.json``.

Started by :func:`celo_bench.submission.verify.verify_bundle` in its own process with a time
limit (:func:`celo_bench.submission.validate.run_worker`): it imports the bundle's
``optimizer.py`` (the one place verification runs submitted code), plans the submission's grid
as the bundle states it, trains the requested runs, each job in the shape the records state
(its runs, in order, and its execution strategy), and writes their curves to ``OUT.json``.
Before each stage it writes the stage's name to ``OUT.json.stage``, so a timeout can say where.

It calls the executors' unit, :func:`celo_bench.execute.execute_job`, not :func:`celo_bench.runner.run`:
a rerun writes no store, and its jobs are the records' shapes, not what a plan leaves to do.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path


def _stage(out: Path, name: str) -> None:
    out.with_name(out.name + ".stage").write_text(name, encoding="utf-8")


def _curves(record) -> dict:
    out = {"key": record["key"], "status": record["status"], "message": record["message"]}
    for c in ("train_loss", "eval_steps", "eval_train_loss", "eval_valid_loss", "eval_test_loss"):
        v = record[c]
        out[c] = None if v is None else v.tolist()
    return out


def main(payload_path: str, out_path: str) -> int:
    from celo_bench.errors import describe

    out = Path(out_path)
    payload = json.loads(Path(payload_path).read_text(encoding="utf-8"))
    report: dict = {"runs": [], "error": None, "device": None}
    try:
        _stage(out, "importing optimizer.py")
        sys.dont_write_bytecode = True
        from celo_bench import plan
        from celo_bench.execute import EngineSettings, execute_job
        from celo_bench.provenance import provenance
        from celo_bench.strategy import Strategy
        from celo_bench.submission.loader import register_submission
        from celo_bench.submission.schema import parse_submission
        from celo_bench.suite import load_registry

        sub = parse_submission(payload["folder"])
        reg = load_registry().with_optimizer(register_submission(sub))
        p = payload["plan"]
        tasks = sorted({j["task"] for j in payload["jobs"]})
        planned = {j.task.name: j for j in plan.expand(
            reg, reg.suite(payload["suite"]), tasks=tasks, optimizers=[sub.name], seeds=p.get("seeds"),
            steps=p.get("steps"), backend=p.get("backend"), strategy_overrides=p.get("execution") or {})}
        runs = {r.key: r for j in planned.values() for r in j.runs}
        prov = provenance()
        report["device"], report["backend"] = prov["device"], prov["backend"]
        for i, want in enumerate(payload["jobs"]):
            _stage(out, f"training job {i + 1} of {len(payload['jobs'])} ({want['task']}, {len(want['keys'])} runs)")
            strategy = Strategy(**want["strategy"])
            job = dataclasses.replace(planned[want["task"]].with_runs([runs[k] for k in want["keys"]]),
                                      strategy=strategy)
            records = execute_job(job, EngineSettings(block_size=strategy.block_size))
            report["runs"] += [_curves(r) for r in records]
    except Exception as e:  # one line for the parent, never a traceback
        report["error"] = describe(e)
    out.write_text(json.dumps(report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
