"""Turn a validated submission into something the runner can train.

- :func:`checkpoint_path` / :func:`read_checkpoint`: find a learned submission's
  meta-parameters and verify them (flax-msgpack only, pickles refused, sha256 checked);
- :func:`load_module`: import ``optimizer.py`` (this runs the submitter's code, so it is
  done only after :func:`~celo_bench.submission.validate.validate_submission` passed in a
  separate process);
- :func:`register_submission`: register its factory in the optimizer registry and
  return an :class:`~celo_bench.suite.OptimizerSpec` of kind ``"submission"``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from celo_bench.errors import CheckpointError, SpecError
from celo_bench.optimizers import checkpoint as ckpt
from celo_bench.submission import stored
from celo_bench.submission.schema import CODE_NAME, FACTORY_NAME, Submission, source_sha256
from celo_bench.suite import OptimizerSpec


class SubmissionCheckpointError(CheckpointError):
    """A learned submission's checkpoint is missing, unsafe or not the promised file."""

    def __init__(self, problem: str, fix: str):
        self.problem, self.fix = problem, fix
        super().__init__(f"{problem}; {fix}")


def checkpoint_path(sub: Submission) -> Path:
    """The local file named by ``[checkpoint] source``.

    ``source`` is a path (relative to the submission folder; ``$VARS`` and ``~`` are
    expanded, so ``$CELO_BENCH_CHECKPOINTS/celo/theta.state`` works) to a ``theta.state``
    file or a folder holding one, or an ``hf://owner/repo[/file]`` URI.
    """
    source = sub.checkpoint["source"]
    if source.startswith("hf://"):
        return ckpt.fetch_hf(source, name=sub.name)
    expanded = os.path.expanduser(os.path.expandvars(source))
    if "$" in expanded:
        var = expanded[expanded.index("$"):].split("/")[0]
        raise SubmissionCheckpointError(
            f"checkpoint source '{source}' uses {var}, which is not set",
            f"export {var.lstrip('$')}=/path/to/checkpoints, or make source a path relative to {sub.folder}",
        )
    path = Path(expanded)
    if not path.is_absolute():
        path = sub.folder / path
    if path.is_dir():
        path = path / ckpt.FILENAME
    if not path.is_file():
        raise SubmissionCheckpointError(
            f"checkpoint source '{source}' -> {path} does not exist",
            f"put the {ckpt.FILENAME} file there, or fix [checkpoint] source in submission.toml",
        )
    return path


def read_checkpoint(sub: Submission) -> tuple[dict, Path]:
    """Meta-parameters (nested NumPy arrays) and their file, after every safety check.

    The bytes are decoded first, which refuses pickles without unpickling anything, then
    their sha256 must equal ``[checkpoint] sha256``.
    """
    path = checkpoint_path(sub)
    data = path.read_bytes()
    try:
        tree = ckpt.decode(data, origin=str(path))
    except CheckpointError as e:
        pickle = "pickle" in str(e)
        raise SubmissionCheckpointError(
            f"{path} is a Python pickle, refused: unpickling runs arbitrary code" if pickle
            else str(e).split(" (")[0],
            "save the meta-parameters as flax-msgpack: flax.serialization.to_bytes(tree) or "
            "celo_bench.optimizers.checkpoint.write(path, tree)",
        ) from None
    got = hashlib.sha256(data).hexdigest()
    if got != sub.checkpoint["sha256"]:
        raise SubmissionCheckpointError(
            f"{path} has sha256 {got}, but submission.toml promises {sub.checkpoint['sha256']}",
            "fetch the right file; or, if this file is the one you meant, put its sha256 "
            "(`sha256sum theta.state`) in [checkpoint] sha256",
        )
    return tree, path


def load_module(sub: Submission) -> ModuleType:
    """Import ``optimizer.py`` under a private module name (no bytecode is written)."""
    name = f"celo_bench_submission_{sub.name}_{source_sha256(sub.folder)[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, sub.folder / CODE_NAME)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has a loader
        raise SpecError(sub.folder / CODE_NAME, "<file>", "cannot be imported")
    module = importlib.util.module_from_spec(spec)
    before = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # keep the submission folder (and its hash) untouched
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = before
    sys.modules[name] = module
    return module


def meta_params(sub: Submission, module: ModuleType) -> Any:
    """The checkpoint's tree, matched by key path to ``init_meta_params`` when defined."""
    tree, path = read_checkpoint(sub)
    init = getattr(module, "init_meta_params", None)
    if init is None:
        return tree
    import jax

    template = jax.eval_shape(init, jax.random.PRNGKey(0))
    return ckpt.match(template, tree, origin=str(path))


def provenance(sub: Submission) -> dict[str, str]:
    """What goes into every run record of the submission."""
    out = {"submission": sub.name, "submission_source_sha256": source_sha256(sub.folder),
           "submission_authors": ", ".join(sub.authors), "submission_license": sub.license}
    if sub.learned:
        out["submission_checkpoint_sha256"] = sub.checkpoint["sha256"]
    return out


def register_submission(sub: Submission) -> OptimizerSpec:
    """Import the code, load meta-parameters (learned), register the factory; return the spec.

    Learned meta-parameters are loaded here, once, and bound to the factory, so the
    runner sees an ordinary hand-crafted-style factory ``fn(**hparams, num_steps=T)``.
    """
    from celo_bench.optimizers import REGISTERED_FACTORIES, register

    out = stored.spec(sub)
    if out.factory not in REGISTERED_FACTORIES:  # same name = same source and checkpoint bytes
        module = load_module(sub)
        fn = getattr(module, FACTORY_NAME)
        if sub.learned:
            fn = functools.partial(fn, meta_params(sub, module))
        register(out.factory, fn)
    return out
