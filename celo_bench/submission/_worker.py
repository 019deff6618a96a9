"""Validation worker: ``python -m celo_bench.submission._worker PAYLOAD.json OUT.json``.

Runs in its own process (started by :func:`celo_bench.submission.validate.validate_submission`)
so that a submission that loops forever, exits, or crashes the interpreter cannot take the
caller down: the parent kills the process group at the time limit. Before each stage the
worker writes the stage's name to ``OUT.json.stage``, so a timeout can say where it hung.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _stage(out: Path, name: str) -> None:
    out.with_name(out.name + ".stage").write_text(name, encoding="utf-8")


def main(payload_path: str, out_path: str) -> int:
    from celo_bench.errors import describe
    from celo_bench.submission.checks import Checker, CheckFailed, Failure

    out = Path(out_path)
    payload = json.loads(Path(payload_path).read_text(encoding="utf-8"))
    folder = Path(payload["folder"])
    passed: list[str] = []
    failure: Failure | None = None
    try:
        _stage(out, "importing optimizer.py")
        sys.dont_write_bytecode = True
        import importlib.util

        spec = importlib.util.spec_from_file_location("submission_optimizer", folder / "optimizer.py")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except SyntaxError as e:
            raise CheckFailed("syntax", f"optimizer.py line {e.lineno}: {e.msg}",
                              "fix the syntax (`python -m py_compile optimizer.py` shows the same error)") from None
        except Exception as e:
            raise CheckFailed("import", f"importing optimizer.py raised {describe(e)}",
                              "make `python optimizer.py` run cleanly: install or remove the missing "
                              "import, and do no work at import time") from None
        passed.append("import")
        meta = None
        if payload["kind"] == "learned":
            _stage(out, "loading the checkpoint into init_meta_params' tree")
            from celo_bench.errors import CheckpointError
            from celo_bench.optimizers import checkpoint as ckpt

            try:
                tree = ckpt.read(payload["checkpoint"], sha256=payload["sha256"])
                init = getattr(module, "init_meta_params", None)
                if init is not None:
                    import jax

                    template = jax.eval_shape(init, jax.random.PRNGKey(0))
                    tree = ckpt.match(template, tree, origin=payload["checkpoint"])
            except CheckpointError as e:
                raise CheckFailed("checkpoint", str(e), "ship the checkpoint that matches "
                                  "init_meta_params, or fix init_meta_params") from None
            meta = tree
            passed.append("checkpoint_tree")
        checker = Checker(module, kind=payload["kind"], defaults=payload["defaults"],
                          points=payload["points"], meta_params=meta)
        _stage(out, "calling make_optimizer, init and update (jit, vmap)")
        try:
            checker.run_all()
        finally:
            passed += checker.passed
    except CheckFailed as e:
        failure = e.failure
    except Exception as e:  # anything unforeseen is still one line, never a traceback
        failure = Failure("internal", f"the checks raised {describe(e)}",
                          "run `celo-bench validate` again; report it if it persists")
    out.write_text(json.dumps({"passed": passed, "failure": failure.as_dict() if failure else None}),
                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
