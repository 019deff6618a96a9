"""``celo-bench export`` and ``celo-bench import``: a submission's runs from one store to another.

:func:`export_bundle` writes one file (:mod:`celo_bench.submission.bundle` documents the
format) holding the store's records of the submission's planned runs on a suite, byte for
byte, its ``submission.toml`` and ``optimizer.py`` (and a small checkpoint that lives in its
folder), and a manifest with the versions, the plan, the environments and a sha256 per part.
It refuses a grid with missing runs: a bundle holds the whole plan or nothing.

:func:`import_bundle` checks the bundle (:func:`~celo_bench.submission.bundle.open_bundle`),
then the store: a kept submission of the same name with other code, stored runs of the same
name made by other code, or a run stored with other values (identity, outcome or curves)
refuses the bundle with one line, and nothing in the store changes. Then each new record goes
through the store's normal atomic write (runs already stored with the same values are left as
they are) and the submission's folder is kept at ``<results>/.submissions/<name>/``
(:func:`celo_bench.defaults.submission_folder`): its files, ``bundle.json`` (the manifest
plus the bundle's sha256 and when it was imported) and, if ``celo-bench verify`` checked this
very bundle for this store (before or after the import), its ``verification.json``. Import never
runs the bundle's code.
"""

from __future__ import annotations

import json
import math
import stat
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from celo_bench import __version__, environment, fileio, plan, strategy
from celo_bench.defaults import SUBMISSIONS_FOLDER, submission_folder
from celo_bench.errors import CeloBenchError, SpecError
from celo_bench.records import CURVE_COLUMNS, IDENTITY_COLUMNS, OUTCOME_COLUMNS, SCHEMA_VERSION
from celo_bench.store import Store
from celo_bench.submission import stored
from celo_bench.submission.bundle import (
    BUNDLE_INFO,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MAX_CHECKPOINT_BYTES,
    RECORDS_DIR,
    SUBMISSION_DIR,
    BundleRefused,
    open_bundle,
    parse_record,
    sha256_bytes,
)
from celo_bench.submission.schema import CODE_NAME, TOML_NAME, Submission, parse_submission
from celo_bench.submission.verify import pending_path
from celo_bench.suite import load_registry
from celo_bench.versions import ENGINE_VERSION
from celo_bench.weights import FILENAME

COMPARED = (*IDENTITY_COLUMNS, *OUTCOME_COLUMNS, *CURVE_COLUMNS, "config")
"""Columns that must be equal for a run already in the store (timings and provenance may differ)."""


@dataclass
class ExportResult:
    """What ``export`` wrote."""

    path: Path
    name: str
    suite: str
    suite_version: str
    runs: int
    sha256: str
    checkpoint: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"path": str(self.path)}


@dataclass
class ImportResult:
    """What ``import`` did."""

    name: str
    suite: str
    suite_version: str
    imported: int
    already: int
    folder: Path
    sha256: str
    verification_kept: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"folder": str(self.folder)}


# --------------------------------------------------------------------------- export
def resolve_submission(submission: str | Path, results: Path) -> Path:
    """A submission folder: `submission` itself, or the folder store `results` keeps under that name."""
    path = Path(submission).expanduser()
    if path.exists():
        return path
    kept = submission_folder(results, str(submission))
    if (kept / TOML_NAME).is_file():
        return kept
    raise CeloBenchError(f"'{submission}' is neither a submission folder nor a submission kept in "
                         f"{results / SUBMISSIONS_FOLDER}: pass the folder that holds submission.toml and optimizer.py")


def _checkpoint(sub: Submission) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest's ``checkpoint`` entry and the checkpoint file to bundle (if it travels)."""
    if not sub.learned:
        return {}, {}
    source, sha = sub.checkpoint["source"], sub.checkpoint["sha256"]
    info: dict[str, Any] = {"source": source, "sha256": sha, "included": False}
    local = not (source.startswith(("hf://", "~")) or "$" in source or Path(source).is_absolute())
    folder = sub.folder.resolve()
    path = (folder / source).resolve() if local else None
    if path is not None and path.is_dir():
        path = path / FILENAME
    if path is None or not path.is_relative_to(folder) or not path.is_file():
        info["reason"] = "its source is not a file inside the submission folder: the verifier fetches it from there"
        return info, {}
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        info["reason"] = f"larger than {MAX_CHECKPOINT_BYTES >> 20} MiB: the verifier fetches it from its source"
        return info, {}
    data = path.read_bytes()
    if sha256_bytes(data) != sha:
        raise CeloBenchError(f"{path} has sha256 {sha256_bytes(data)}, submission.toml promises {sha}: fix "
                             "[checkpoint] in submission.toml (`celo-bench validate` checks it)")
    rel = path.relative_to(folder).as_posix()
    return info | {"included": True, "file": f"{SUBMISSION_DIR}/{rel}"}, {rel: data}


def _environments(rows: list[dict[str, Any]]) -> list[dict[str, str | None]]:
    """The distinct environments (:data:`celo_bench.environment.FIELDS`) of the records."""
    seen: list[dict[str, str | None]] = []
    for row in rows:
        env = environment.of(row["provenance"])
        if env not in seen:
            seen.append(env)
    return seen


def _write_zip(out: Path, manifest: dict[str, Any], parts: dict[str, bytes]) -> None:
    """The bundle, atomically: the manifest first, then the parts by name; fixed member times."""
    with fileio.atomic_path(out, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w") as zf:
        items = [(MANIFEST, json.dumps(manifest, indent=1).encode()), *sorted(parts.items())]
        for name, data in items:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".parquet") else zipfile.ZIP_DEFLATED
            zf.writestr(info, data)


def export_bundle(submission: str | Path, *, suite: str, results: Path, out: Path | None = None,
                  steps: int | None = None, seeds: int | None = None,
                  execution: dict[str, Any] | None = None) -> ExportResult:
    """Write the bundle of `submission`'s runs of `suite`'s plan in store `results`.

    `submission` is a folder or the name of a submission kept in `results`; `steps`, `seeds`
    and `execution` are those the runs were made with (as for ``submit``). The bundle goes
    to `out` (default ``<name>-<suite>.bundle.zip`` in the working folder). Runs no code.

    Raises:
        CeloBenchError: the folder is no submission, the suite is unknown, or some planned
            run is not in the store (one line with the command that trains it).
    """
    results = Path(results).expanduser()
    folder = resolve_submission(submission, results)
    sub = parse_submission(folder)
    reg = load_registry()
    suite_spec = reg.suite(suite)
    known = reg.optimizers.get(sub.name)
    if known is not None and known.kind != "submission":
        raise CeloBenchError(f"submission '{sub.name}' is named like the benchmark's {known.kind} optimizer: "
                             "rename it in submission.toml")
    spec = stored.spec(sub)
    overrides = {k: v for k, v in (execution or {}).items() if v is not None}
    backend = strategy.backend_kind()
    jobs = plan.expand(reg.with_optimizer(spec), suite_spec, optimizers=[sub.name], seeds=seeds, steps=steps,
                       backend=backend, strategy_overrides=overrides)
    runs = [r for j in jobs for r in j.runs]
    scan = Store(results).scan()
    missing = [r for r in runs if r.key not in scan.paths]
    flags = "".join(f" --{k} {v}" for k, v in (("steps", steps), ("seeds", seeds)) if v) + strategy.flags(overrides)
    if missing:
        r = missing[0]
        raise CeloBenchError(
            f"{len(missing)} of the {len(runs)} planned runs of '{sub.name}' on suite '{suite}' are not in "
            f"{results} (e.g. task {r.task}, {r.hparam_id}, seed {r.seed}): train them with `celo-bench submit "
            f"{folder} --suite {suite}{flags} --results {results}`, then export again")
    parts: dict[str, bytes] = {}
    entries, rows = [], []
    for r in runs:
        data = scan.paths[r.key].read_bytes()
        row = parse_record(data)
        name = f"{RECORDS_DIR}/{r.task}/{r.key}.parquet"
        parts[name] = data
        rows.append(row)
        entries.append({"key": r.key, "task": r.task, "hparam_id": r.hparam_id, "seed": r.seed,
                        "status": row["status"], "file": name})
    ckpt_info, ckpt_files = _checkpoint(sub)
    for name in (TOML_NAME, CODE_NAME):
        parts[f"{SUBMISSION_DIR}/{name}"] = (folder / name).read_bytes()
    parts |= {f"{SUBMISSION_DIR}/{rel}": data for rel, data in ckpt_files.items()}
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": sub.name, "kind": sub.kind,
        "source_sha256": sha256_bytes(parts[f"{SUBMISSION_DIR}/{CODE_NAME}"]), "checkpoint": ckpt_info,
        "suite": suite, "suite_version": suite_spec.version, "engine_version": ENGINE_VERSION,
        "celo_bench_version": __version__, "schema_version": SCHEMA_VERSION,
        "plan": {"steps": steps, "seeds": seeds, "execution": overrides, "backend": backend},
        "environments": _environments(rows),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"celo-bench export {folder} --suite {suite}{flags} --results {results}",
        "runs": entries,
        "files": {n: sha256_bytes(d) for n, d in sorted(parts.items())},
    }
    out = Path(out).expanduser() if out else Path(f"{sub.name}-{suite}.bundle.zip")
    _write_zip(out, manifest, parts)
    return ExportResult(path=out, name=sub.name, suite=suite, suite_version=suite_spec.version, runs=len(runs),
                        sha256=fileio.sha256_file(out), checkpoint=ckpt_info)


# --------------------------------------------------------------------------- import
def _same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN (curves compared element by element)."""
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        return (isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _check_kept(b, dest: Path) -> None:
    """Refuse when the store keeps another submission (other code or checkpoint) under the name."""
    if not (dest / TOML_NAME).exists():
        return
    try:
        kept = stored.spec(parse_submission(dest))
    except SpecError as e:
        raise BundleRefused(b.path, f"{dest} holds no readable submission ({e}); move it aside first") from None
    if kept.factory != b.spec.factory:
        raise BundleRefused(b.path, f"the store keeps another submission named '{b.name}' ({dest}: other "
                            "optimizer.py or checkpoint); rename one of them")


def _check_store(b, store: Store) -> tuple[list[dict[str, Any]], int]:
    """The bundle's records the store lacks, and how many it holds already with the same values."""
    df = store.read(optimizers=[b.name], curves=False)
    for bad in store.newer:
        if bad.path.stem in b.rows:
            raise BundleRefused(b.path, f"{bad.path} is a newer celo-bench's record of run {bad.path.stem}: "
                                "import with that celo-bench")
    others = [c for c in df["config"] if json.loads(c)["optimizer"]["factory"] != b.spec.factory]
    if others:
        raise BundleRefused(b.path, f"{store.root} holds {len(others)} runs of '{b.name}' made by another "
                            "optimizer.py or checkpoint; they would be scored together: rename the submission")
    held = set(df["key"])
    todo, already = [], 0
    for key, row in b.rows.items():
        if key not in held:
            todo.append(row)
            continue
        old = parse_record(store.path(row["task"], b.name, key).read_bytes())
        diff = [c for c in COMPARED if not _same(old[c], row[c])]
        if diff:
            raise BundleRefused(b.path, f"run {key} ({row['task']}, {row['hparam_id']}, seed {row['seed']}) is "
                                f"already in {store.root} with another {diff[0]}; move that record aside to "
                                "import this bundle's")
        already += 1
    return todo, already


def _mix_notes(b, store: Store) -> list[str]:
    """One note per task where the bundle's environment differs from the store's other records."""
    ours = b.frame(curves=False)
    theirs = store.read(tasks=sorted(set(ours["task"])), curves=False)
    theirs = theirs[(theirs["optimizer"] != b.name) & (theirs["suite_version"] == b.suite.version)]
    cols = ["task", "optimizer", "status", "provenance"]
    found = environment.mixes(pd.concat([theirs[cols], ours[cols]], ignore_index=True))
    by_task: dict[str, list[str]] = {}
    for m in found:
        if any(b.name in by for by in m.values.values()):
            by_task.setdefault(m.task, []).append(m.describe())
    return [f"task {task}: {', '.join(what)}; scoring it needs {environment.ALLOW_OPTION}"
            for task, what in by_task.items()]


def _verification(b, dest: Path, pending: Path) -> bytes | None:
    """The verification of this very bundle: the one kept beside the submission, else a pending one."""
    for path in (dest / stored.VERIFICATION_NAME, pending):
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("bundle_sha256") == b.sha256:
                return path.read_bytes()
        except (OSError, ValueError, AttributeError):
            continue
    return None


def _keep_folder(b, dest: Path, results: Path) -> bool:
    """Write the submission's folder whole; returns whether a verification of this bundle was kept."""
    pending = pending_path(results, b.name, b.sha256)
    verification = _verification(b, dest, pending)
    info = dict(b.manifest) | {"bundle_sha256": b.sha256, "bundle_file": b.path.name,
                               "imported": datetime.now(UTC).isoformat(timespec="seconds")}
    fileio.recover_folder(dest)
    with fileio.staged_folder(dest) as tmp:
        b.write_submission(tmp)
        fileio.atomic_write_text(tmp / BUNDLE_INFO, json.dumps(info, indent=1) + "\n")
        if verification is not None:
            fileio.atomic_write_bytes(tmp / stored.VERIFICATION_NAME, verification)
    pending.unlink(missing_ok=True)
    return verification is not None


def import_bundle(path: str | Path, *, results: Path) -> ImportResult:
    """Bring a bundle's records into store `results` and keep its submission's folder there.

    Every check comes before the first write: on any refusal the store is unchanged.

    Raises:
        BundleRefused: the bundle or the store failed a check (one line).
        StoreWriteError: the store cannot be written.
    """
    b = open_bundle(path)
    store = Store(Path(results).expanduser())
    dest = submission_folder(store.root, b.name)
    _check_kept(b, dest)
    todo, already = _check_store(b, store)
    notes = _mix_notes(b, store)
    store.check_writable()
    for row in todo:
        store.write(row)
    try:
        kept = _keep_folder(b, dest, store.root)
    except OSError as e:
        raise CeloBenchError(f"the records are imported, but the submission's folder {dest} cannot be written "
                             f"({e.strerror or e}); import again once it can") from e
    return ImportResult(name=b.name, suite=b.suite.name, suite_version=b.suite.version, imported=len(todo),
                        already=already, folder=dest, sha256=b.sha256, verification_kept=kept, notes=notes)


__all__ = ["BUNDLE_INFO", "ExportResult", "ImportResult", "export_bundle", "import_bundle", "resolve_submission"]
