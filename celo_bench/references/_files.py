"""Reference results on disk: where they are, the manifest, and loading them with their sha256 checked.

A suite's references are two files in one folder, ``<root>/<suite>/``:

- ``results.parquet``: one row per run, zstd-compressed, with only the columns scoring and
  the report read (:data:`COLUMNS`: identity, outcome, ``eval_steps`` and the kept loss
  series, how the job ran, and a provenance cut to the environment); the per-step
  ``train_loss`` is left out (the report scores and draws an ``eval_*`` series);
- ``manifest.json``: what they are (:class:`Manifest`);
- ``intervals.json`` (optional): the bootstrap intervals of each packed optimizer's score
  matrices under the default scoring, keyed by :func:`celo_bench.aggregate.interval_key`
  (content addresses: an entry is used only for the exact matrix it was computed from), so
  scoring a submission against the references bootstraps the submission alone.

The root is the package's own folder (``celo_bench/references/``, package data) unless
``$CELO_BENCH_REFERENCES`` names another (a maintainer's fresh build, tests).
:func:`load` refuses, in one line, a file whose sha256 is not the manifest's.

Imports no JAX.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from celo_bench import environment, fileio
from celo_bench.errors import CeloBenchError
from celo_bench.records import COLUMNS, CURVE_COLUMNS, CURVE_DTYPES, SCHEMA_VERSION

ENV = "CELO_BENCH_REFERENCES"
"""A folder holding ``<suite>/manifest.json``: used instead of the references that ship."""
FORMAT = 1
"""The manifest's format version (bumped when the layout changes)."""
RESULTS_NAME = "results.parquet"
MANIFEST_NAME = "manifest.json"
INTERVALS_NAME = "intervals.json"
SERIES = ("eval_train_loss", "eval_valid_loss", "eval_test_loss")
"""The loss series kept by default (every ``eval_*`` one; ``train_loss`` is not kept)."""
IDENTITY = ("key", "suite", "suite_version", "task", "optimizer", "optimizer_kind", "hparams", "hparam_id",
            "learning_rate", "seed", "num_steps", "status", "message", "diverged_step")
HOW = ("job_runs", "strategy", "provenance")
"""How a run was made: its job's size, its strategy and its environment."""
SOURCE = "source"
"""The column that says where a scored record comes from: ``store`` or :func:`label`."""
STORE = "store"
REBUILD = "celo-bench references build --suite {suite}"
"""The command that remakes a suite's references (a maintainer's release step: docs/references.md)."""


def columns(series: Sequence[str] = SERIES) -> tuple[str, ...]:
    """The stored columns when `series` are kept (in :data:`~celo_bench.records.COLUMNS` order)."""
    keep = {*IDENTITY, *HOW, "eval_steps", *series}
    return tuple(c for c in COLUMNS if c in keep)


def root() -> Path:
    """The folder holding one folder of references per suite (``$CELO_BENCH_REFERENCES`` or the package's)."""
    given = os.environ.get(ENV)
    return Path(given).expanduser() if given else Path(__file__).resolve().parent


def label(device: str | None) -> str:
    """What the ``source`` column says of a record drawn from references made on `device`."""
    return f"reference ({device or environment.UNKNOWN})"


class ReferencesError(CeloBenchError):
    """Reference results that cannot be used: damaged, unreadable or not made for this suite."""


@dataclass(frozen=True)
class Manifest:
    """What a suite's reference file holds (``manifest.json``).

    Attributes:
        suite, suite_version: The suite and its version the runs were planned from.
        engine_version: :data:`celo_bench.versions.ENGINE_VERSION` when they were made.
        celo_bench_version: The package version that made them.
        plan: The plan's overrides (``steps``, ``seeds``, ``execution``; None / {}: the suite's).
        sha256, bytes, records: The parquet file's sha256, size and row count.
        series: The loss series kept (scoring another one uses the store alone).
        environment: Device kind, backend and library versions (:data:`celo_bench.environment.FIELDS`).
        keys: optimizer -> its run keys, sorted.
        statuses: optimizer -> status -> runs.
        left_out: optimizer of the suite -> why its runs are not in the file.
        command: The command that remade them.
        made: UTC date and time they were made.
        task_seconds: task -> the longest hand-crafted optimizer's job (compile + run seconds)
            when they were made: what one more optimizer's job on that task costs on a cold
            store, so ``submit`` starts the longest first.
    """

    suite: str
    suite_version: str
    engine_version: str
    celo_bench_version: str
    plan: Mapping[str, Any]
    sha256: str
    bytes: int
    records: int
    series: tuple[str, ...]
    environment: Mapping[str, str | None]
    keys: Mapping[str, tuple[str, ...]]
    statuses: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    left_out: Mapping[str, str] = field(default_factory=dict)
    command: str = ""
    made: str = ""
    file: str = RESULTS_NAME
    format: int = FORMAT
    task_seconds: Mapping[str, float] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return self.environment.get("device") or environment.UNKNOWN

    @property
    def label(self) -> str:
        return label(self.environment.get("device"))

    def as_json(self) -> str:
        body = {
            "format": self.format, "suite": self.suite, "suite_version": self.suite_version,
            "engine_version": self.engine_version, "celo_bench_version": self.celo_bench_version,
            "command": self.command, "made": self.made, "plan": dict(self.plan), "file": self.file,
            "sha256": self.sha256, "bytes": self.bytes, "records": self.records, "series": list(self.series),
            "environment": dict(self.environment), "left_out": dict(self.left_out),
            "statuses": {o: dict(s) for o, s in self.statuses.items()},
            "task_seconds": dict(self.task_seconds),
            "keys": {o: list(k) for o, k in self.keys.items()},
        }
        return json.dumps(body, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, where: Path) -> Manifest:
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                raise ReferencesError(f"reference manifest {where} has format {d.get('format')!r}; this celo-bench "
                                      f"reads format {FORMAT}: remake them with `{REBUILD.format(suite=d.get('suite'))}`")
            return cls(
                suite=d["suite"], suite_version=str(d["suite_version"]), engine_version=str(d["engine_version"]),
                celo_bench_version=d.get("celo_bench_version", ""), plan=d.get("plan") or {}, sha256=d["sha256"],
                bytes=int(d["bytes"]), records=int(d["records"]), series=tuple(d["series"]),
                environment=d.get("environment") or {}, keys={o: tuple(k) for o, k in d["keys"].items()},
                statuses=d.get("statuses") or {}, left_out=d.get("left_out") or {}, command=d.get("command", ""),
                made=d.get("made", ""), file=d.get("file", RESULTS_NAME), format=d["format"],
                task_seconds={t: float(v) for t, v in (d.get("task_seconds") or {}).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ReferencesError(f"reference manifest {where} cannot be read ({type(e).__name__}: {e}): "
                                  "reinstall celo-bench or remake the references") from None

    def all_keys(self) -> set[str]:
        return {k for keys in self.keys.values() for k in keys}


def suites(at: str | os.PathLike | None = None) -> list[str]:
    """The suites that have references under `at` (default :func:`root`), sorted."""
    base = Path(at) if at is not None else root()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / MANIFEST_NAME).is_file())


def manifest(suite: str, at: str | os.PathLike | None = None) -> Manifest | None:
    """The manifest of `suite`'s references under `at` (default :func:`root`), None when there is none."""
    path = (Path(at) if at is not None else root()) / suite / MANIFEST_NAME
    if not path.is_file():
        return None
    m = Manifest.from_json(path.read_text(encoding="utf-8"), path)
    if m.suite != suite:
        raise ReferencesError(f"reference manifest {path} is for suite '{m.suite}', not '{suite}'")
    return m


def verify(suite: str, m: Manifest, at: str | os.PathLike | None = None) -> Path:
    """The reference file of `suite`, checked against its manifest's sha256.

    Raises:
        ReferencesError: the file is missing or its bytes are not the ones the manifest names.
    """
    path = (Path(at) if at is not None else root()) / suite / m.file
    if not path.is_file():
        raise ReferencesError(f"reference results of suite '{suite}' are incomplete: {path} is missing; "
                              f"reinstall celo-bench, or remake them with `{REBUILD.format(suite=suite)}`")
    got = fileio.sha256_file(path)
    if got != m.sha256:
        raise ReferencesError(f"reference results of suite '{suite}' are damaged: {path} has sha256 {got[:16]}…, "
                              f"its manifest says {m.sha256[:16]}…; reinstall celo-bench, or remake them with "
                              f"`{REBUILD.format(suite=suite)}`")
    return path


@dataclass(frozen=True)
class References:
    """One suite's reference results, loaded: the manifest and the records.

    ``records`` has every :data:`~celo_bench.records.COLUMNS` column (the ones not kept are
    filled: empty ``train_loss``, no timings, no config) plus ``source`` (:func:`label`).
    """

    manifest: Manifest
    records: pd.DataFrame
    folder: Path
    intervals: Mapping[str, list[list[float]]] = field(default_factory=dict)
    """Remembered bootstrap intervals (``intervals.json``; empty when absent or made for another file)."""

    @property
    def label(self) -> str:
        return self.manifest.label

    def holds(self, series: str) -> bool:
        """Whether scoring `series` can use these references."""
        return series in self.manifest.series

    def covering(self, planned: Iterable[str], stored_optimizers: Iterable[str]) -> pd.DataFrame:
        """The reference records whose keys are `planned`, for optimizers not in `stored_optimizers`
        (an optimizer's runs come all from the store or all from the references)."""
        df = self.records
        keep = df["key"].isin(set(planned)) & ~df["optimizer"].isin(set(stored_optimizers))
        return df[keep].reset_index(drop=True)


def read_frame(path: Path) -> pd.DataFrame:
    """The records of a reference file as a ``Store.read()`` frame (curves as NumPy arrays)."""
    df = pq.read_table(path).to_pandas()
    for c in COLUMNS:
        if c in CURVE_COLUMNS:
            dtype = CURVE_DTYPES[c]
            cells = df[c] if c in df.columns else [None] * len(df)
            df[c] = [np.asarray([] if v is None else v, dtype=dtype) for v in cells]
        elif c not in df.columns:
            df[c] = {"schema_version": SCHEMA_VERSION, "config": "", "message": ""}.get(c)
    return df[list(COLUMNS)]


def load(suite: str, at: str | os.PathLike | None = None) -> References | None:
    """`suite`'s references under `at` (default :func:`root`), checked; None when there are none.

    Raises:
        ReferencesError: the file is damaged or missing, or the manifest unreadable (one line).
    """
    m = manifest(suite, at)
    if m is None:
        return None
    path = verify(suite, m, at)
    try:
        df = read_frame(path)
    except (OSError, ValueError) as e:
        raise ReferencesError(f"reference results {path} cannot be read ({e}); reinstall celo-bench") from None
    df[SOURCE] = m.label
    return References(manifest=m, records=df, folder=path.parent, intervals=_read_intervals(path.parent, m))


def _read_intervals(folder: Path, m: Manifest) -> dict[str, list[list[float]]]:
    """``intervals.json`` of `folder` when it was made for the results file `m` describes; else none."""
    try:
        doc = json.loads((folder / INTERVALS_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("results_sha256") != m.sha256 or not isinstance(doc.get("intervals"), dict):
        return {}
    return doc["intervals"]


def write_intervals(suite: str, intervals: Mapping[str, list[list[float]]],
                    at: str | os.PathLike | None = None) -> Path:
    """Write `suite`'s ``intervals.json`` (under `at`, default :func:`root`) for its current results file."""
    m = manifest(suite, at)
    if m is None:
        raise ReferencesError(f"no reference results of suite '{suite}' to remember intervals for")
    path = (Path(at) if at is not None else root()) / suite / INTERVALS_NAME
    fileio.atomic_write_text(path, json.dumps({"results_sha256": m.sha256, "intervals": dict(intervals)},
                                              sort_keys=True) + "\n")
    return path


MARK = "†"
"""How a leaderboard marks a row drawn from reference results."""


def for_scoring(given: bool | str | os.PathLike | References | None, suite: str,
                series: str) -> tuple[References | None, list[str]]:
    """The references `given` names for `suite` (True: :func:`root`'s; a folder; loaded ones;
    False / None: none), and a note when they cannot serve the scored `series`."""
    if given is None or given is False:
        return None, []
    loaded = given if isinstance(given, References) else load(suite, None if given is True else given)
    if loaded is not None and not loaded.holds(series):
        return None, [f"the reference results of suite '{suite}' hold the series {', '.join(loaded.manifest.series)} "
                      f"only: scoring {series} uses this store alone"]
    return loaded, []


def line(m: Manifest, drawn: Mapping[str, int], every: bool) -> str:
    """One Markdown sentence on the rows drawn from references `m` (`drawn`: optimizer -> runs;
    `every`: no row is the store's), with where they were made."""
    env = ", ".join(f"{environment.LABELS[f]} {m.environment.get(f) or environment.UNKNOWN}"
                    for f in environment.FIELDS if f != "device")
    what = "every row comes" if every else f"the {len(drawn)} rows marked {MARK} come"
    return (f"**{MARK} Reference results**: {what} from the reference results shipped with celo-bench "
            f"(suite `{m.suite}` v{m.suite_version}, made on device kind `{m.device}`; {env}), not runs of this "
            "store; `celo-bench run` trains an optimizer here, and its row is then this store's.")


def environments_note(store: pd.DataFrame, refs: References, used: pd.DataFrame) -> list[str]:
    """One line per task where records drawn from `refs` (`used`) and `store` records differ in
    environment: both device kinds and the fields that differ. Scoring compares them: using
    references is the explicit choice (``--no-references`` scores the store alone)."""
    if store.empty or used.empty:
        return []
    ref_env = {f: refs.manifest.environment.get(f) for f in environment.FIELDS}
    diff: dict[str, list[str]] = {}
    for task in sorted(set(store["task"]) & set(used["task"])):
        rows = store[(store["task"] == task) & (store["status"] != "failed")]
        envs = {tuple(sorted(environment.of(p).items())) for p in rows["provenance"]}
        for env in envs:
            e = dict(env)
            fields = [f for f in environment.FIELDS if e[f] is None or e[f] != ref_env[f]]
            if fields:
                what = (f"device kind {e['device'] or environment.UNKNOWN} (this store) vs "
                        f"{ref_env['device'] or environment.UNKNOWN} (references)")
                others = [f"{environment.LABELS[f]} {e[f] or environment.UNKNOWN} vs "
                          f"{ref_env[f] or environment.UNKNOWN}" for f in fields if f != "device"]
                diff.setdefault("; ".join([what, *others]), []).append(task)
    return [f"reference results and this store's records come from different environments in "
            f"task{'s' if len(t) > 1 else ''} {', '.join(t)} ({what}): scored together because the references "
            "were used (`--no-references` scores the store alone)" for what, t in diff.items()]


__all__ = ["ENV", "FORMAT", "MANIFEST_NAME", "MARK", "REBUILD", "RESULTS_NAME", "SERIES", "SOURCE", "STORE",
           "Manifest", "References", "ReferencesError", "columns", "environments_note", "for_scoring", "label", "line",
           "load", "manifest", "read_frame", "root", "suites", "verify"]
