"""Submissions stay: a submission accepted into a store is ranked by every later report of it.

``celo-bench submit`` keeps the submission's folder in the store it trained into,
``<results>/.submissions/<name>/`` (:data:`celo_bench.defaults.SUBMISSIONS_FOLDER`:
``submission.toml`` and ``optimizer.py``; ``celo-bench import`` puts an imported bundle's
folder there too, with its ``verification.json``). Every command that scores the store
(``score``, ``report``, the report of ``run``, ``submit``) reads these folders through
:func:`with_stored` and adds each submission's :class:`~celo_bench.suite.OptimizerSpec` to
the registry, so its planned run keys select its records and its row (kind ``submission``,
with its card) stays on the leaderboard.

Reading a kept submission runs none of its code: :func:`spec` is built from
``submission.toml`` and the sha256 of ``optimizer.py`` alone (scoring needs the records, not
the optimizer). Only ``submit`` (and ``verify``) import the code, after validation.
"""

from __future__ import annotations

import os
from pathlib import Path

from celo_bench import fileio
from celo_bench.defaults import SUBMISSIONS_FOLDER, VERIFICATION_NAME, submission_folder
from celo_bench.errors import CeloBenchError, SpecError
from celo_bench.submission.schema import (
    CODE_NAME,
    TOML_NAME,
    Submission,
    parse_submission,
    source_sha256,
)
from celo_bench.suite import OptimizerSpec, Registry


def factory_name(sub: Submission) -> str:
    """``submission:<name>@<source sha>[+<checkpoint sha>]``: part of every run key, so
    editing ``optimizer.py`` or swapping the checkpoint makes new runs, never stale ones."""
    name = f"submission:{sub.name}@{source_sha256(sub.folder)[:12]}"
    if sub.learned:
        name += f"+{sub.checkpoint['sha256'][:12]}"
    return name


def reference_text(sub: Submission) -> str:
    """One line for the leaderboard: who, license, and the hashes that identify the runs."""
    text = f"by {', '.join(sub.authors)} ({sub.license}); {CODE_NAME} sha256 `{source_sha256(sub.folder)}`"
    if sub.learned:
        text += f"; checkpoint sha256 `{sub.checkpoint['sha256']}`"
    if sub.reference:
        text += f"; {sub.reference}"
    return text


def spec(sub: Submission) -> OptimizerSpec:
    """The submission as an optimizer spec of kind ``"submission"`` (no code is run).

    Its resolved part (what enters the run keys) depends on ``submission.toml`` and the bytes
    of ``optimizer.py`` only, so a kept copy of the folder plans the keys of the original.
    """
    return OptimizerSpec(
        name=sub.name, kind="submission", factory=factory_name(sub), defaults=dict(sub.defaults),
        grid=dict(sub.search_space), reference=reference_text(sub), needs_loss=sub.learned,
        checkpoint=dict(sub.checkpoint), meta_training=sub.card(), description=sub.description,
        path=str(sub.toml_path),
    )


def keep(sub: Submission, results: str | os.PathLike) -> Path:
    """Keep `sub`'s ``submission.toml`` and ``optimizer.py`` in store `results`; returns the folder.

    The folder is replaced whole (staged beside it, then swapped in). A folder already holding
    the same two files is left as it is (with its ``verification.json``); a different one (the
    submission was edited) is replaced, and a verification of the old code is dropped with it.
    """
    dest = submission_folder(results, sub.name)
    names = (TOML_NAME, CODE_NAME)
    try:
        if all((dest / n).is_file() and (dest / n).read_bytes() == (sub.folder / n).read_bytes() for n in names):
            return dest
        fileio.recover_folder(dest)
        with fileio.staged_folder(dest) as tmp:
            for n in names:
                fileio.atomic_write_bytes(tmp / n, (sub.folder / n).read_bytes())
    except OSError as e:
        raise CeloBenchError(f"cannot keep submission '{sub.name}' in {dest}: {e.strerror or e}; its runs are "
                             "stored, but later reports of this store will leave it out until `celo-bench "
                             "submit` succeeds again") from e
    return dest


def kept(results: str | os.PathLike) -> tuple[list[Submission], list[str]]:
    """Every submission kept in store `results` (by name), and one line per folder that is not one."""
    root = Path(results).expanduser() / SUBMISSIONS_FOLDER
    subs, problems = [], []
    if not root.is_dir():
        return subs, problems
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            sub = parse_submission(folder)
        except SpecError as e:
            problems.append(f"kept submission {folder} left out: {e}")
            continue
        if sub.name != folder.name:
            problems.append(f"kept submission {folder} left out: its submission.toml names '{sub.name}'")
            continue
        subs.append(sub)
    return subs, problems


def with_stored(registry: Registry, results: str | os.PathLike) -> tuple[Registry, list[str]]:
    """`registry` plus every submission kept in store `results` (:func:`kept`), and one line
    per kept folder left out (unreadable, or named like an optimizer the registry has)."""
    subs, problems = kept(results)
    for sub in subs:
        known = registry.optimizers.get(sub.name)
        if known is not None and known.kind != "submission":
            problems.append(f"kept submission '{sub.name}' left out: a {known.kind} optimizer has that name")
            continue
        registry = registry.with_optimizer(spec(sub))
    return registry, problems


__all__ = ["VERIFICATION_NAME", "factory_name", "keep", "kept", "reference_text", "spec", "with_stored"]
