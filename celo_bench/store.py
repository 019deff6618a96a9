"""The results store: one parquet record per run, content-addressed.

Layout: ``<root>/<task>/<optimizer>/<run key>.parquet``. A record is written to a
temporary file ``.tmp-<host>-<pid>-<random>.parquet`` in the same folder and renamed
into place, so a killed process leaves either the whole record or a temporary file,
never a half record under a record's name. Records are plain values (no pickles).

Only *finished* records are read: a file named ``<key>.parquet`` (no leading dot) that
parses, whose stored ``key`` equals its name and whose task and optimizer are its
folders. Anything else is listed by :meth:`Store.scan`, never read:

- temporary files of a dead writer (``stale``) are removed by :meth:`Store.clean_stale`;
  those of a live writer (``in_flight``) are left alone;
- unreadable files (cut short, random bytes, empty, a macOS ``._<key>.parquet``
  sidecar, a key that is not its name) count as missing runs, so a re-run rewrites them,
  and :meth:`Store.quarantine` moves them to ``<root>/.quarantine/<UTC time>-<pid>/``
  (never deleted silently).

Every record is read through the declared schema (:mod:`celo_bench.records`), by every
reader alike (:meth:`Store.scan`, :meth:`Store.read`, :meth:`Store.status_of`), so every
command sees the same set of records:

- a record of an older schema version (or short of a column that has a default, or with a
  column of a castable type such as an int32 ``seed``) is upgraded as it is read; it stays as
  stored until :meth:`Store.migrate` (``celo-bench store check --migrate``) rewrites it;
- a record of a newer schema version (a newer celo-bench shares the store) is left in place,
  never read, never quarantined and never overwritten; each is one line in ``newer``;
- a record whose columns cannot be made the declared ones is unreadable (see above).

Hidden top folders (``.quarantine``, and ``.claims`` where runs claim jobs) are never
searched for records.

Record files get the mode a plain ``open()`` would give them (``0o666`` less the process
umask), not the owner-only mode of a temporary file, so a shared results folder is readable
by whoever its folders let in.

A write that fails in the operating system (full disk, no permission, read-only
filesystem) leaves no temporary file and raises :class:`StoreWriteError`, one line.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from celo_bench import fileio
from celo_bench.errors import CeloBenchError
from celo_bench.paths import unwritable_reason
from celo_bench.records import (
    COLUMNS,
    CURVE_COLUMNS,
    CURVE_DTYPES,
    SCALAR_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    STATUSES,
    RunRecord,
    SchemaError,
    Upgrade,
    plan_upgrade,
    to_table,
    upgrade_table,
    version_of,
    version_order,
)

QUARANTINE_DIR = ".quarantine"
CLAIMS_DIR = ".claims"
TMP_PREFIX = ".tmp-"
SUFFIX = ".parquet"
READ_THREADS = 4
"""Threads that read records (Arrow decodes without the GIL) ..."""
THREADED_READ_MIN = 64
"""... when there are at least this many to read."""
#: a temporary file older than this is stale even when its writer's pid is alive (pid reuse,
#: or a writer on another host); writing one record takes well under a second
STALE_AFTER_SECONDS = 3600.0
_CHECK_COLUMNS = ["key", "task", "optimizer", "status"]
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


class StoreWriteError(CeloBenchError):
    """The results folder cannot be written (full disk, no permission, read-only, ...).

    The message is one line: what failed (path and the system's reason), how many runs
    are stored when the caller knows (:meth:`with_count`), and what to do. Records
    written before are intact.
    """

    def __init__(self, what: str, reason: str, *, path: Path | None = None, stored: str = "",
                 hint: str = "re-run the same command to resume"):
        self.what, self.reason, self.path, self.stored, self.hint = what, reason, path, stored, hint
        super().__init__("; ".join([f"{what} ({reason})", *([stored] if stored else []), hint]))

    def with_count(self, stored: int, total: int) -> StoreWriteError:
        """The same error, saying that `stored` of the grid's `total` runs are stored."""
        return StoreWriteError(self.what, self.reason, path=self.path, hint=self.hint,
                               stored=f"{stored} of {total} runs of this grid are stored")


@dataclass(frozen=True)
class BadFile:
    """A file in a record folder that is not a readable record, and why."""

    path: Path
    reason: str

    def line(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class StoreScan:
    """What a results folder holds.

    Attributes:
        statuses: run key -> status of every finished, readable record.
        paths: run key -> its file.
        stale: temporary files left by writers that died (safe to remove).
        in_flight: temporary files of writers still alive (left alone).
        unreadable: files that are not readable records; their runs count as missing.
        newer: records of a newer schema version (left in place, never read; ``reason``
            names the version).
        upgraded: readable records of an older schema, upgraded as they were read.
    """

    statuses: Mapping[str, str]
    paths: Mapping[str, Path]
    stale: tuple[Path, ...] = ()
    in_flight: tuple[Path, ...] = ()
    unreadable: tuple[BadFile, ...] = ()
    newer: tuple[BadFile, ...] = ()
    upgraded: int = 0

    def lines(self) -> list[str]:
        """One line per problem: each unreadable file, each newer record, each stale
        temporary file, and one line for the records upgraded on read."""
        out = [f"unreadable record {b.line()} (counted as missing; moved aside before it is rewritten)"
               for b in self.unreadable]
        out += [newer_line(b) for b in self.newer]
        out += [f"temporary file of a killed write: {p}" for p in self.stale]
        if self.upgraded:
            out.append(upgraded_line(self.upgraded))
        return out


def newer_line(b: BadFile) -> str:
    """The one line of a record of a newer schema version."""
    return (f"skipped record {b.line()}: written by a newer celo-bench (this one reads schema version "
            f"{SCHEMA_VERSION}); left in place, upgrade celo-bench to read it")


def upgraded_line(n: int) -> str:
    """The one line saying that `n` records of an older schema were upgraded on read."""
    return (f"{n} records stored in an older schema (version, missing columns or column types) were "
            "upgraded as they were read; "
            "`celo-bench store check --migrate` rewrites them in the current schema")


@dataclass(frozen=True)
class RecordCheck:
    """One stored record's schema: its path, version and what reading it upgrades."""

    path: Path
    upgrade: Upgrade


@dataclass(frozen=True)
class StoreCheck:
    """What :meth:`Store.check` found: every readable record's upgrade, newer and unreadable files."""

    records: tuple[RecordCheck, ...]
    newer: tuple[BadFile, ...] = ()
    unreadable: tuple[BadFile, ...] = ()

    @property
    def by_version(self) -> dict[str, int]:
        """Schema version -> readable records stored under it (oldest first)."""
        out: dict[str, int] = {}
        for r in self.records:
            out[r.upgrade.version] = out.get(r.upgrade.version, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (len(kv[0]), kv[0])))

    @property
    def to_upgrade(self) -> tuple[RecordCheck, ...]:
        """Records a migration rewrites (older version, missing columns, other types)."""
        return tuple(r for r in self.records if r.upgrade.needed)


class _Unreadable(Exception):
    """A record file failed a check; the message is the reason."""


class _Newer(Exception):
    """A record of a newer schema version; the message names it."""


@dataclass(frozen=True)
class _Loaded:
    table: pa.Table
    upgrade: Upgrade


class Store:
    """A results folder (see the module docstring for its layout and guarantees).

    ``problems`` lists the unreadable files met by the last :meth:`scan`,
    :meth:`statuses` or :meth:`read` (one :class:`BadFile` each), ``newer`` the records of a
    newer schema version it skipped and ``upgraded`` how many records of an older one it
    upgraded.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.problems: list[BadFile] = []
        self.newer: list[BadFile] = []
        self.upgraded = 0
        self._dir_problems: list[BadFile] = []

    def path(self, task: str, optimizer: str, key: str) -> Path:
        return self.root / task / optimizer / f"{key}{SUFFIX}"

    # ------------------------------------------------------------------ reading
    def _candidates(self) -> list[Path]:
        """Every ``*.parquet`` two folders below the root, hidden top folders excluded.

        A folder that cannot be listed is added to ``problems`` (its runs count as missing).
        """
        if not self.root.is_dir():
            return []
        out: list[Path] = []
        for task_dir in _listing(self.root, self._dir_problems):
            if task_dir.name.startswith(".") or not task_dir.is_dir():
                continue
            for opt_dir in _listing(task_dir, self._dir_problems):
                if opt_dir.is_dir():
                    out.extend(p for p in _listing(opt_dir, self._dir_problems)
                               if p.name.endswith(SUFFIX) and p.is_file())
        return out

    def _load(self, path: Path, columns: list[str]) -> _Loaded:
        """The record at `path` (the given columns, upgraded to the current schema) and its
        upgrade; raises _Unreadable with the reason, or _Newer for a newer schema version.

        Whatever `columns` are asked for, the same checks decide whether it is a record: its
        row count, its version, every declared column present or defaulted and castable
        (from the file's schema), its key, folders and status.
        """
        if path.name.startswith("."):
            raise _Unreadable("not a record (hidden file, e.g. a macOS ._ sidecar)")
        cols = list(dict.fromkeys([*_CHECK_COLUMNS, *columns, "schema_version"]))
        try:
            with pq.ParquetFile(path) as f:  # 5x faster than read_table on one small file
                schema = f.schema_arrow
                stored = set(schema.names)
                table = f.read(columns=[c for c in cols if c in stored], use_threads=False)
        except (OSError, pa.ArrowException, ValueError) as e:
            size = path.stat().st_size if path.exists() else 0
            why = "empty file" if size == 0 else _first_line(e)
            raise _Unreadable(why) from None
        if table.num_rows != 1:
            raise _Unreadable(f"{table.num_rows} rows, a record has one")
        version = version_of(table.column("schema_version")[0].as_py() if "schema_version" in stored else None)
        try:
            if version_order(version) > 0:
                raise _Newer(f"schema version {version}")
            upgrade = plan_upgrade(schema, version)
            table = upgrade_table(table, cols)
        except SchemaError as e:
            raise _Unreadable(str(e)) from None
        key, task, opt, status = (table.column(c)[0].as_py() for c in _CHECK_COLUMNS)
        if key != path.stem:
            raise _Unreadable(f"stored key {key!r} is not its file name")
        if (task, opt) != (path.parent.parent.name, path.parent.name):
            raise _Unreadable(f"a record of {task}/{opt} in the folder of {path.parent.parent.name}/{path.parent.name}")
        if status not in STATUSES:
            raise _Unreadable(f"unknown status {status!r}")
        return _Loaded(table, upgrade)

    def _load_many(self, paths: list[Path], columns: list[str]) -> list[_Loaded | _Unreadable | _Newer]:
        """:meth:`_load` of every path, in order; an unreadable one gives its :class:`_Unreadable`,
        a newer one its :class:`_Newer`.

        Threads: Arrow decodes a file without the GIL, so reading a few thousand small records
        takes ~40 % less time with four threads (3.3 → 2.0 s for the quick tier's 3,066 on 2 cores).
        """
        def one(p: Path) -> _Loaded | _Unreadable | _Newer:
            try:
                return self._load(p, columns)
            except (_Unreadable, _Newer) as e:
                return e

        if len(paths) < THREADED_READ_MIN:
            return [one(p) for p in paths]
        with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
            return list(pool.map(one, paths))

    def scan(self) -> StoreScan:
        """Classify every file of the record folders (reads 4 small columns per record)."""
        statuses: dict[str, str] = {}
        paths: dict[str, Path] = {}
        stale, in_flight = [], []
        self._dir_problems = bad = []
        records = []
        for p in self._candidates():
            if p.name.startswith(TMP_PREFIX):
                (stale if _is_stale(p) else in_flight).append(p)
            else:
                records.append(p)
        newer, upgraded = [], 0
        for p, got in zip(records, self._load_many(records, []), strict=True):
            if isinstance(got, _Unreadable):
                bad.append(BadFile(p, str(got)))
                continue
            if isinstance(got, _Newer):
                newer.append(BadFile(p, str(got)))
                continue
            upgraded += got.upgrade.needed
            statuses[p.stem] = got.table.column("status")[0].as_py()
            paths[p.stem] = p
        self.problems, self.newer, self.upgraded = bad, newer, upgraded
        return StoreScan(statuses, paths, tuple(stale), tuple(in_flight), tuple(bad), tuple(newer), upgraded)

    def statuses(self) -> dict[str, str]:
        """key -> status of every readable record; unreadable files are skipped (see ``problems``)."""
        return dict(self.scan().statuses)

    def status_of(self, task: str, optimizer: str, key: str) -> str | None:
        """Status of one run's record, or None when it is missing, unreadable or of a newer
        schema version."""
        p = self.path(task, optimizer, key)
        if not p.is_file():
            return None
        try:
            return self._load(p, []).table.column("status")[0].as_py()
        except (_Unreadable, _Newer):
            return None

    def read(
        self,
        *,
        tasks: Iterable[str] | None = None,
        optimizers: Iterable[str] | None = None,
        curves: bool = True,
    ) -> pd.DataFrame:
        """All readable records as one frame (one row per run); curve cells are NumPy arrays.

        Records of an older schema are upgraded (counted in ``upgraded``); unreadable files are
        skipped and listed in ``problems``, records of a newer schema in ``newer``; temporary
        files are never read.
        """
        self._dir_problems = bad = []
        files = [p for p in self._candidates() if not p.name.startswith(TMP_PREFIX)]
        if tasks is not None:
            keep = set(tasks)
            files = [p for p in files if p.parent.parent.name in keep]
        if optimizers is not None:
            keep_o = set(optimizers)
            files = [p for p in files if p.parent.name in keep_o]
        cols = list(COLUMNS if curves else SCALAR_COLUMNS)
        tables, newer, upgraded = [], [], 0
        for p, got in zip(files, self._load_many(files, cols), strict=True):
            if isinstance(got, _Unreadable):
                bad.append(BadFile(p, str(got)))
            elif isinstance(got, _Newer):
                newer.append(BadFile(p, str(got)))
            else:
                upgraded += got.upgrade.needed
                tables.append(got.table.select(cols))
        self.problems, self.newer, self.upgraded = bad, newer, upgraded
        if not tables:
            return pd.DataFrame(columns=cols)
        df = pa.concat_tables(tables).to_pandas()
        if curves:
            for c in CURVE_COLUMNS:
                dtype = CURVE_DTYPES[c]
                # failed runs have no curves (null cells): read them as empty arrays
                df[c] = [np.asarray([] if v is None else v, dtype=dtype) for v in df[c]]
        return df.sort_values(["task", "optimizer", "hparam_id", "seed"]).reset_index(drop=True)

    # ------------------------------------------------------------------ repair
    def clean_stale(self, scan: StoreScan | None = None) -> list[Path]:
        """Remove temporary files of killed writers; returns those removed."""
        scan = scan or self.scan()
        gone = []
        for p in scan.stale:
            try:
                p.unlink()
            except FileNotFoundError:
                continue
            except OSError:
                continue  # read-only store: reported by scan, left in place
            gone.append(p)
        return gone

    def quarantine(self, files: Iterable[Path] | None = None) -> list[Path]:
        """Move unreadable files (default: those a fresh scan finds) under ``.quarantine``.

        Returns their new paths: ``<root>/.quarantine/<UTC time>-<pid>/<task>/<optimizer>/<name>``.
        """
        if files is None:
            files = [b.path for b in self.scan().unreadable]
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
        moved = []
        for p in files:
            p = Path(p)
            if p.is_dir():
                continue  # a folder that cannot be listed: reported, left for the user
            dest = self.root / QUARANTINE_DIR / stamp / p.relative_to(self.root)
            try:
                fileio.move(p, dest)
            except FileNotFoundError:
                continue  # moved by another process meanwhile
            except OSError as e:
                raise write_error(f"cannot move unreadable record {p} aside", e, p) from None
            moved.append(dest)
        return moved

    # ------------------------------------------------------------------ schema
    def check(self) -> StoreCheck:
        """Every record's schema version and what reading it upgrades (nothing is changed)."""
        self._dir_problems = bad = []
        files = [p for p in self._candidates() if not p.name.startswith(TMP_PREFIX)]
        found, newer = [], []
        for p, got in zip(files, self._load_many(files, []), strict=True):
            if isinstance(got, _Unreadable):
                bad.append(BadFile(p, str(got)))
            elif isinstance(got, _Newer):
                newer.append(BadFile(p, str(got)))
            else:
                found.append(RecordCheck(p, got.upgrade))
        self.problems, self.newer = bad, newer
        return StoreCheck(tuple(found), tuple(newer), tuple(bad))

    def migrate(self, check: StoreCheck | None = None) -> tuple[list[Path], list[BadFile]]:
        """Rewrite every record of an older schema in the current one, each atomically (the
        same write as a new record's); returns the paths rewritten and the records left as
        they are, with why (undeclared columns a rewrite would drop; changed meanwhile).

        Raises:
            StoreWriteError: a rewrite failed in the operating system (the record is intact).
        """
        check = check or self.check()
        done, left = [], []
        for r in check.to_upgrade:
            if r.upgrade.extra:
                left.append(BadFile(r.path, "has columns this schema does not declare ("
                                    f"{', '.join(r.upgrade.extra)}); a rewrite would drop them"))
                continue
            try:
                row = self._load(r.path, list(COLUMNS)).table.to_pylist()[0]
            except (_Unreadable, _Newer) as e:
                left.append(BadFile(r.path, f"changed since it was checked: {e}"))
                continue
            row.pop("schema_version", None)  # written as the current version
            done.append(self.write(row))
        return done, left

    def repair(self) -> StoreScan:
        """Scan, remove stale temporary files and quarantine unreadable ones; returns the scan.

        What a run calls first: ``scan.lines()`` says what was found and done.
        """
        scan = self.scan()
        self.clean_stale(scan)
        self.quarantine([b.path for b in scan.unreadable])
        return scan

    # ------------------------------------------------------------------ writing
    def check_writable(self) -> None:
        """Create the results folder if needed and prove a file can be written there.

        Raises:
            StoreWriteError: the folder cannot be created or written (one line).
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=_tmp_prefix(), suffix=".probe", dir=self.root)
            try:
                os.write(fd, b"x")
            finally:
                os.close(fd)
                Path(probe).unlink(missing_ok=True)
        except OSError as e:
            raise StoreWriteError(
                f"results folder {self.root} cannot be written", unwritable_reason(self.root) or _reason(e),
                path=self.root,
                hint="choose another --results folder or fix its permissions, then re-run the same command",
            ) from None

    def write(self, record: RunRecord | Mapping[str, Any]) -> Path:
        """Atomically write one record (a :class:`RunRecord`, or a dict of its columns).

        An unreadable file already at the record's place is moved to ``.quarantine`` first;
        a record of a newer schema version there is left in place (and nothing is written).

        Raises:
            StoreWriteError: the operating system refused the write (no temporary file is
                left behind; earlier records are intact).
        """
        table = to_table([record])
        target = self.path(record["task"], record["optimizer"], record["key"])
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() and self.status_of(record["task"], record["optimizer"], record["key"]) is None:
                if self._is_newer(target):
                    return target  # a newer celo-bench's record of this run: left in place
                self.quarantine([target])
            # a unique temporary name, fsync, a normal file's mode, one rename; removed on failure
            with fileio.atomic_path(target, prefix=_tmp_prefix(), suffix=SUFFIX, mkdir=False) as tmp:
                pq.write_table(table, tmp)
        except OSError as e:
            raise write_error(f"cannot write run record {target}", e, target) from None
        return target

    def _is_newer(self, path: Path) -> bool:
        try:
            self._load(path, [])
        except _Newer:
            return True
        except _Unreadable:
            return False
        return False

    def write_many(self, records: Iterable[RunRecord | Mapping[str, Any]]) -> int:
        n = 0
        for rec in records:
            self.write(rec)
            n += 1
        return n


def write_error(what: str, e: OSError, path: Path | None = None) -> StoreWriteError:
    """The one-line :class:`StoreWriteError` for an OSError met while doing `what`."""
    return StoreWriteError(what, _reason(e), path=path)


def _listing(folder: Path, problems: list[BadFile]) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as e:
        problems.append(BadFile(folder, f"folder cannot be listed: {_reason(e)}"))
        return []


def _tmp_prefix() -> str:
    return f"{TMP_PREFIX}{_HOST}-{os.getpid()}-"


def _is_stale(path: Path) -> bool:
    """A temporary file is stale when its writer is dead or it is older than an hour.

    Names that do not carry this host's writer (``.tmp-x.parquet``, old-format names) are
    stale at once unless they come from another host, which only age can tell.
    """
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False  # renamed into place meanwhile
    if age > STALE_AFTER_SECONDS:
        return True
    parts = path.name[len(TMP_PREFIX):].split("-")
    if len(parts) < 3 or not parts[1].isdigit() or len(parts[0]) != 8:
        return True  # not written by this store's writer
    if parts[0] != _HOST:
        return False
    return not _alive(int(parts[1]))


def _alive(pid: int) -> bool:
    if os.name == "nt":
        return True  # os.kill would terminate it there; age alone tells a stale file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except OSError:
        return False
    return True


def _reason(e: OSError) -> str:
    code = errno.errorcode.get(e.errno, "") if e.errno else ""
    text = e.strerror or _first_line(e)
    return f"{text} ({code})" if code else text


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


__all__ = [
    "COLUMNS",
    "CURVE_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "STATUSES",
    "BadFile",
    "RecordCheck",
    "RunRecord",
    "Store",
    "StoreCheck",
    "StoreScan",
    "StoreWriteError",
    "newer_line",
    "upgraded_line",
    "write_error",
]
