"""Bundles: a submission's runs, folder and provenance in one file, checked before anything trusts it.

``celo-bench export`` writes a bundle (:mod:`celo_bench.submission.exchange`), ``celo-bench
import`` brings one into a store and ``celo-bench verify`` reruns a sample of it
(:mod:`celo_bench.submission.verify`). A bundle is a zip file holding exactly::

    manifest.json                   what the bundle holds (below)
    submission/submission.toml      the submission's metadata
    submission/optimizer.py         its code: `import` never runs it, `verify` runs it in a
                                    separate, time-limited process
    submission/<checkpoint>         a learned submission's meta-parameters, only when [checkpoint]
                                    source is a relative path inside its folder and the file is at
                                    most 16 MiB; else only source and sha256 travel (in the toml)
    records/<task>/<key>.parquet    the store's records of its planned runs, byte for byte

``manifest.json``: ``format`` and ``format_version``; the submission's ``name``, ``kind`` and
``source_sha256`` (of ``optimizer.py``) and ``checkpoint`` (source, sha256, whether included);
``suite``, ``suite_version``, ``engine_version`` (:data:`celo_bench.versions.ENGINE_VERSION`),
``celo_bench_version`` and ``schema_version``; the ``plan`` the runs belong to (``steps``,
``seeds``, ``execution`` settings and the ``backend`` that planned them); ``environments`` (the
distinct :data:`celo_bench.environment.FIELDS` of the records); ``runs`` (key, task, hparam_id,
seed, status, file; in plan order); ``files`` (the sha256 of every other member); ``created``
and the ``command`` that made it.

:func:`open_bundle` refuses, with one line, a bundle that is not a zip; that holds a member
outside this layout (an absolute path, a ``..`` part, a hidden name, a symbolic link or any
non-file, a duplicate); whose manifest is unreadable; whose members' sha256 differ from the
manifest's (or that lacks one, or holds one it does not list); whose suite, suite version or
engine version differ from this installation's; whose submission is unreadable or named like
a benchmark optimizer; or whose records are not the manifest's runs: each record's key is
recomputed from its content (:func:`celo_bench.plan.record_key`) and the set of keys must be
the plan this installation computes for the submission on that suite. Reading a bundle runs
none of its code: ``submission.toml`` is parsed as TOML, the spec comes from its text and the
bytes of ``optimizer.py`` (:func:`celo_bench.submission.stored.spec`).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from celo_bench import fileio, plan
from celo_bench.errors import CeloBenchError, SpecError
from celo_bench.records import (
    COLUMNS,
    CURVE_COLUMNS,
    CURVE_DTYPES,
    SchemaError,
    plan_upgrade,
    upgrade_table,
    version_of,
    version_order,
)
from celo_bench.submission import stored
from celo_bench.submission.schema import CODE_NAME, TOML_NAME, parse_submission
from celo_bench.suite import OptimizerSpec, Registry, SuiteSpec, load_registry
from celo_bench.versions import ENGINE_VERSION

FORMAT = "celo-bench-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUBMISSION_DIR = "submission"
RECORDS_DIR = "records"
BUNDLE_INFO = "bundle.json"
"""Kept beside an imported submission (``<results>/.submissions/<name>/``): its bundle's manifest,
``bundle_sha256``, ``bundle_file`` and ``imported`` (UTC, ISO 8601)."""
MAX_CHECKPOINT_BYTES = 16 << 20
"""A learned submission's checkpoint travels inside the bundle only up to this size."""
MAX_MEMBER_BYTES = 1 << 30
MAX_TOTAL_BYTES = 4 << 30
"""Declared sizes above these are refused before anything is decompressed."""

_PART = r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*"
_LAYOUT = re.compile(
    rf"{re.escape(MANIFEST)}|{SUBMISSION_DIR}/{_PART}(?:/{_PART})*|{RECORDS_DIR}/{_PART}/[0-9a-f]{{24}}\.parquet"
)


class BundleRefused(CeloBenchError):
    """A bundle failed a check (one line: the bundle, what is wrong, what to do)."""

    def __init__(self, path: str | Path, why: str):
        self.why = why
        super().__init__(f"bundle {path} refused: {why}")


@dataclass(frozen=True)
class Bundle:
    """A bundle that passed every check of :func:`open_bundle`.

    Attributes:
        path: The bundle file.
        sha256: The sha256 of the whole file (what ``verification.json`` and the imported
            folder's ``bundle.json`` name).
        manifest: ``manifest.json`` as read.
        files: The submission folder's files, name (relative, ``/``-separated) -> bytes.
        rows: Run key -> the record as one row of the current schema (stored form: JSON
            columns as strings, curves as lists), in plan order.
        spec: The submission as an optimizer spec (built without running its code).
        suite: This installation's spec of the bundle's suite.
    """

    path: Path
    sha256: str
    manifest: dict[str, Any]
    files: dict[str, bytes]
    rows: dict[str, dict[str, Any]]
    spec: OptimizerSpec
    suite: SuiteSpec

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def plan_settings(self) -> dict[str, Any]:
        """``steps``, ``seeds``, ``execution`` and ``backend`` of the plan the runs belong to."""
        return self.manifest["plan"]

    def write_submission(self, folder: Path) -> Path:
        """Write the submission's files under `folder` (each atomically); returns `folder`."""
        for name, data in self.files.items():
            fileio.atomic_write_bytes(folder / name, data)
        return folder

    def frame(self, curves: bool = True) -> pd.DataFrame:
        """The records as a ``Store.read()`` frame (curve cells NumPy arrays), in plan order."""
        df = pd.DataFrame(list(self.rows.values()), columns=list(COLUMNS))
        if not curves:
            return df.drop(columns=list(CURVE_COLUMNS))
        for c in CURVE_COLUMNS:
            df[c] = [np.asarray(v if v is not None else [], dtype=CURVE_DTYPES[c]) for v in df[c]]
        return df


def parse_record(data: bytes) -> dict[str, Any]:
    """One record file's bytes as a row of the current schema (older schemas upgraded).

    Raises:
        ValueError: not one record of a schema this celo-bench reads (one line: why).
    """
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"not a readable parquet record ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if table.num_rows != 1:
        raise ValueError(f"{table.num_rows} rows, a record has one")
    names = table.schema.names
    version = version_of(table.column("schema_version")[0].as_py() if "schema_version" in names else None)
    try:
        if version_order(version) > 0:
            raise ValueError(f"schema version {version}, written by a newer celo-bench: upgrade celo-bench")
        plan_upgrade(table.schema, version)
        return upgrade_table(table, COLUMNS).to_pylist()[0]
    except SchemaError as e:
        raise ValueError(str(e)) from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member may not be in a bundle (None: it may)."""
    name = info.filename
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if "\\" in name or any(p in ("", ".", "..") for p in name.split("/")):
        return "a path that escapes the bundle's folder"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if info.is_dir() or stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: a zip tool that sets no file type
        return "not a plain file"
    if not _LAYOUT.fullmatch(name):
        return f"not part of a bundle (only {MANIFEST}, {SUBMISSION_DIR}/ and {RECORDS_DIR}/<task>/<key>.parquet)"
    if info.file_size > MAX_MEMBER_BYTES:
        return f"{info.file_size} bytes, more than a bundle member may hold ({MAX_MEMBER_BYTES})"
    return None


def _read_members(zf: zipfile.ZipFile, path: Path) -> dict[str, bytes]:
    infos = zf.infolist()
    seen: set[str] = set()
    for info in infos:
        why = _member_problem(info)
        if why:
            raise BundleRefused(path, f"it holds '{info.filename}', {why}; make bundles with `celo-bench export`")
        if info.filename.lower() in seen:  # twice, or twice on a case-insensitive filesystem
            raise BundleRefused(path, f"it holds '{info.filename}' twice")
        seen.add(info.filename.lower())
    if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
        raise BundleRefused(path, f"its members add up to more than {MAX_TOTAL_BYTES} bytes")
    try:
        return {i.filename: zf.read(i) for i in infos}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:  # CRC mismatch, truncated data
        raise BundleRefused(path, f"a member cannot be read ({e}); the file is damaged: export it again") from None


_MANIFEST_KEYS = ("format", "format_version", "name", "kind", "source_sha256", "suite", "suite_version",
                  "engine_version", "plan", "runs", "files")


def _manifest(members: dict[str, bytes], path: Path) -> dict[str, Any]:
    if MANIFEST not in members:
        raise BundleRefused(path, f"it has no {MANIFEST}; make bundles with `celo-bench export`")
    try:
        m = json.loads(members[MANIFEST].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BundleRefused(path, f"its {MANIFEST} is not JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise BundleRefused(path, f"its {MANIFEST} is not a celo-bench bundle's (format '{FORMAT}')")
    missing = [k for k in _MANIFEST_KEYS if k not in m]
    if missing:
        raise BundleRefused(path, f"its {MANIFEST} lacks {', '.join(missing)}")
    if m["format_version"] != FORMAT_VERSION:
        raise BundleRefused(path, f"bundle format version {m['format_version']}, this celo-bench reads "
                            f"{FORMAT_VERSION}: use the celo-bench that made it, or export it again")
    if not isinstance(m["files"], dict) or not isinstance(m["runs"], list) or not isinstance(m["plan"], dict):
        raise BundleRefused(path, f"its {MANIFEST} is malformed (files, runs or plan)")
    return m


def _check_hashes(members: dict[str, bytes], m: dict[str, Any], path: Path) -> None:
    listed, held = set(m["files"]), set(members) - {MANIFEST}
    for name in sorted(held - listed):
        raise BundleRefused(path, f"it holds '{name}', which its manifest does not list")
    for name in sorted(listed - held):
        raise BundleRefused(path, f"its manifest lists '{name}', which it does not hold")
    for name in sorted(listed):
        got = sha256_bytes(members[name])
        if got != m["files"][name]:
            raise BundleRefused(path, f"'{name}' has sha256 {got[:16]}…, its manifest says "
                                f"{str(m['files'][name])[:16]}…: the bundle was altered or damaged; export it again")


def _check_versions(m: dict[str, Any], reg: Registry, path: Path) -> SuiteSpec:
    if m["suite"] not in reg.suites:
        raise BundleRefused(path, f"its suite '{m['suite']}' is not one of this installation's "
                            f"({', '.join(sorted(reg.suites))})")
    suite = reg.suite(m["suite"])
    if str(m["suite_version"]) != suite.version:
        raise BundleRefused(path, f"its runs are of suite '{suite.name}' version {m['suite_version']}, this "
                            f"installation's is version {suite.version}: results of different suite versions "
                            "are never compared; rerun the submission on this version and export again")
    if str(m["engine_version"]) != ENGINE_VERSION:
        raise BundleRefused(path, f"its runs were made by engine version {m['engine_version']}, this installation "
                            f"runs engine version {ENGINE_VERSION}, whose numbers differ: rerun the submission "
                            "with this celo-bench and export again")
    return suite


def _submission(members: dict[str, bytes], m: dict[str, Any], reg: Registry, path: Path
                ) -> tuple[dict[str, bytes], OptimizerSpec]:
    prefix = f"{SUBMISSION_DIR}/"
    files = {n[len(prefix):]: data for n, data in members.items() if n.startswith(prefix)}
    for need in (TOML_NAME, CODE_NAME):
        if need not in files:
            raise BundleRefused(path, f"it holds no {prefix}{need}")
    with tempfile.TemporaryDirectory(prefix="celo-bench-bundle-") as tmp:
        folder = Path(tmp) / "submission"
        for name in (TOML_NAME, CODE_NAME):  # the spec needs these two; nothing is run
            fileio.atomic_write_bytes(folder / name, files[name])
        try:
            sub = parse_submission(folder)
        except SpecError as e:
            raise BundleRefused(path, f"its submission.toml is invalid ({str(e).replace(str(folder), 'submission')})"
                                ) from None
        spec = stored.spec(sub)
    if sub.name != m["name"]:
        raise BundleRefused(path, f"its manifest names '{m['name']}', its submission.toml '{sub.name}'")
    if sha256_bytes(files[CODE_NAME]) != m["source_sha256"]:
        raise BundleRefused(path, "its optimizer.py is not the one its manifest names (source_sha256)")
    known = reg.optimizers.get(sub.name)
    if known is not None and known.kind != "submission":
        raise BundleRefused(path, f"it is named '{sub.name}', like the benchmark's {known.kind} optimizer: "
                            "rename the submission (name in submission.toml), rerun it and export again")
    return files, spec


def _records(members: dict[str, bytes], m: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    runs = m["runs"]
    listed = set()
    for run in runs:
        if not isinstance(run, dict) or not {"key", "task", "file"} <= set(run):
            raise BundleRefused(path, "its manifest's runs are malformed (each needs key, task and file)")
        key, task, file = run["key"], run["task"], run["file"]
        if file != f"{RECORDS_DIR}/{task}/{key}.parquet" or file not in members:
            raise BundleRefused(path, f"run {key} of its manifest has no record file {RECORDS_DIR}/{task}/{key}.parquet")
        if key in rows:
            raise BundleRefused(path, f"its manifest lists run {key} twice")
        listed.add(file)
        try:
            row = parse_record(members[file])
        except ValueError as e:
            raise BundleRefused(path, f"record {file} is unreadable: {e}") from None
        got = {"key": row["key"], "task": row["task"], "optimizer": row["optimizer"], "suite": row["suite"],
               "suite_version": row["suite_version"]}
        want = {"key": key, "task": task, "optimizer": m["name"], "suite": m["suite"],
                "suite_version": str(m["suite_version"])}
        if got != want:
            what = next(k for k in want if got[k] != want[k])
            raise BundleRefused(path, f"record {file} states {what} '{got[what]}', its manifest '{want[what]}'")
        try:
            recomputed = plan.record_key(row)
        except (ValueError, KeyError, TypeError) as e:
            raise BundleRefused(path, f"record {file}: its run key cannot be recomputed ({e})") from None
        if recomputed != key:
            raise BundleRefused(path, f"record {file} does not match its key: its content gives run key "
                                f"{recomputed} (config, hyper-parameters, seed, horizon, suite, inputs or "
                                "execution were altered); export the bundle again")
        if row["status"] != run.get("status", row["status"]):
            raise BundleRefused(path, f"record {file} is {row['status']}, its manifest says {run['status']}")
        rows[key] = row
    extra = sorted(n for n in members if n.startswith(f"{RECORDS_DIR}/") and n not in listed)
    if extra:
        raise BundleRefused(path, f"it holds {extra[0]}, a record its manifest's runs do not list")
    return rows


def _check_plan(rows: dict[str, dict[str, Any]], m: dict[str, Any], reg: Registry, suite: SuiteSpec,
                spec: OptimizerSpec, path: Path) -> None:
    p = m["plan"]
    try:
        jobs = plan.expand(reg, suite, optimizers=[spec.name], seeds=p.get("seeds"), steps=p.get("steps"),
                           backend=p.get("backend"), strategy_overrides=p.get("execution") or {})
    except CeloBenchError as e:
        raise BundleRefused(path, f"its plan cannot be made here ({e})") from None
    planned = {r.key: (j, r) for j in jobs for r in j.runs}
    extra = [k for k in rows if k not in planned]
    if extra:
        row = rows[extra[0]]
        job = next((j for j in jobs if j.task.name == row["task"]), None)
        why = f"; {job.data_missing}" if job is not None and job.data_missing else (
            " (its task or data differ from this installation's)")
        raise BundleRefused(path, f"{len(extra)} of its runs (e.g. {extra[0]} of task {row['task']}) are not in "
                            f"this installation's plan of '{spec.name}' on suite '{suite.name}'{why}")
    missing = [k for k in planned if k not in rows]
    if missing:
        raise BundleRefused(path, f"it lacks {len(missing)} of the {len(planned)} runs its plan has (e.g. "
                            f"{missing[0]} of task {planned[missing[0]][1].task}): export a complete grid")


def open_bundle(path: str | Path, registry: Registry | None = None) -> Bundle:
    """Read and check a bundle (see the module docstring); runs none of its code.

    Raises:
        BundleRefused: any check failed (one line naming the bundle and the problem).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BundleRefused(path, "no such file")
    data = path.read_bytes()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise BundleRefused(path, "it is not a zip file; make bundles with `celo-bench export`") from None
    with zf:
        members = _read_members(zf, path)
    m = _manifest(members, path)
    _check_hashes(members, m, path)
    reg = registry or load_registry()
    suite = _check_versions(m, reg, path)
    files, spec = _submission(members, m, reg, path)
    rows = _records(members, m, path)
    reg = reg.with_optimizer(spec)
    _check_plan(rows, m, reg, suite, spec, path)
    return Bundle(path=path, sha256=sha256_bytes(data), manifest=m, files=files, rows=rows, spec=spec,
                  suite=suite)


__all__ = [
    "BUNDLE_INFO",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "MAX_CHECKPOINT_BYTES",
    "RECORDS_DIR",
    "SUBMISSION_DIR",
    "Bundle",
    "BundleRefused",
    "open_bundle",
    "parse_record",
    "sha256_bytes",
]
