"""Making a suite's reference results from a store, and checking them against the plan of now.

:func:`build` packs the records of the suite's current plan, for every optimizer of the suite
that runs offline and whose every planned run is stored, into one zstd parquet file of at
most :data:`MAX_BYTES` and writes its manifest (``celo-bench references build``, a
maintainer's release step: docs/references.md). :func:`check` lists what no longer matches:
the run keys ``plan`` computes now against the manifest's, the suite and engine versions, the
file's sha256 (``celo-bench references check``; a test runs it on every suite that ships).

Imports no JAX.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from celo_bench import __version__, environment, fileio, inputs
from celo_bench.errors import CeloBenchError
from celo_bench.plan import Job, expand
from celo_bench.records import SCHEMA
from celo_bench.references._files import (
    MANIFEST_NAME,
    REBUILD,
    RESULTS_NAME,
    SERIES,
    Manifest,
    ReferencesError,
    columns,
    manifest,
    read_frame,
    root,
    verify,
)
from celo_bench.score import ScoreConfig
from celo_bench.store import Store
from celo_bench.strategy import flags
from celo_bench.suite import Registry, load_registry
from celo_bench.versions import ENGINE_VERSION

MAX_BYTES = 5 * 2**20
"""The most a suite's reference file may weigh (it ships inside the package)."""
ZSTD_LEVEL = 19
"""zstd level of the reference file (written once per release, read often)."""


@dataclass(frozen=True)
class Built:
    """What :func:`build` wrote: the folder, its manifest and the file's size per record."""

    folder: Path
    manifest: Manifest

    @property
    def bytes_per_record(self) -> float:
        return self.manifest.bytes / max(self.manifest.records, 1)


def _offline(job: Job) -> str:
    """Why `job`'s optimizer cannot run on a machine without network ("" if it can): its
    weights are missing here, or they do not ship with the package."""
    w = inputs.weights_input(job.optimizer)
    if w is None:
        return ""
    if w.unavailable:
        return f"its weights are not available offline: {w.reason or w.unavailable}"
    if w.origin != "package":
        return (f"its weights come from {w.origin} ({w.path}), not from the package: a user offline cannot run "
                "or verify it")
    return ""


def _pack(records: pd.DataFrame, series: Sequence[str]) -> bytes:
    """The parquet bytes of `records` with only the kept columns (provenance cut to the environment)."""
    cols = columns(series)
    df = records[list(cols)].copy()
    df["provenance"] = [json.dumps(environment.of(p), sort_keys=True) for p in df["provenance"]]
    for c in ("eval_steps", *series):  # failed runs hold no curve
        df[c] = [None if v is None or len(v) == 0 else v for v in df[c]]
    table = pa.Table.from_pandas(df, schema=pa.schema([SCHEMA.field(c) for c in cols]), preserve_index=False)
    floats = list(series)
    strings = [c for c in cols if SCHEMA.field(c).type == pa.string()]
    buf = io.BytesIO()
    # losses are float32 noise to a dictionary coder: byte-stream-split them (~15 % smaller)
    pq.write_table(table, buf, compression="zstd", compression_level=ZSTD_LEVEL, use_dictionary=strings,
                   use_byte_stream_split=floats)
    return buf.getvalue()


def _command(suite: str, results: Path, steps: int | None, seeds: int | None,
             execution: Mapping[str, Any] | None) -> str:
    cmd = REBUILD.format(suite=suite) + f" --results {shlex.quote(str(results))}"
    cmd += f" --steps {steps}" if steps is not None else ""
    cmd += f" --seeds {seeds}" if seeds is not None else ""
    return cmd + flags(execution)


def build(suite: str, results: str | os.PathLike, *, out: str | os.PathLike | None = None,
          registry: Registry | None = None, steps: int | None = None, seeds: int | None = None,
          execution: Mapping[str, Any] | None = None, series: Sequence[str] = SERIES,
          command: str | None = None, max_bytes: int = MAX_BYTES) -> Built:
    """Pack `suite`'s stored results into ``<out>/<suite>/`` (replaced whole); returns what was written.

    Kept: every optimizer of the suite that runs offline (hand-crafted, or learned with weights
    that ship with the package) whose every run of the current plan is stored in `results`.
    Every other optimizer of the suite is listed in the manifest's ``left_out`` with its reason.

    Args:
        suite: The suite (its optimizers only; submissions are never packed).
        results: The store the runs were made in.
        out: The folder of references (default: :func:`~celo_bench.references.root`, the package's).
        registry: Specs the plan is expanded from (default: :func:`load_registry`).
        steps, seeds, execution: Plan overrides, as ``run --steps/--seeds/--steps-strategy`` ...
            (the manifest records them; the shipped references use none).
        series: Loss series kept (the per-step ``train_loss`` never is).
        command: The command the manifest names (default: the ``references build`` one).
        max_bytes: Refuse a file larger than this.

    Raises:
        CeloBenchError: the reference optimizer's runs are not all stored, the records of the
            packed optimizers come from more than one environment, or the file would be too large.
    """
    reg = registry or load_registry()
    spec = reg.suite(suite)
    bad = [s for s in series if s not in SERIES]
    if bad or not series:
        raise CeloBenchError(f"--series must name some of {', '.join(SERIES)}, got {', '.join(series) or 'none'}")
    results = Path(results)
    jobs = expand(reg, spec, steps=steps, seeds=seeds, strategy_overrides=execution)
    planned: dict[str, set[str]] = {}
    for j in jobs:
        planned.setdefault(j.optimizer.name, set()).update(r.key for r in j.runs)
    df = Store(results).read()
    df = df.drop_duplicates("key") if len(df) else df
    left_out: dict[str, str] = {}
    kept: list[str] = []
    for name, keys in planned.items():
        why = next((w for w in (_offline(j) for j in jobs if j.optimizer.name == name) if w), "")
        n = int(df["key"].isin(keys).sum()) if len(df) else 0
        if why:
            left_out[name] = why
        elif n < len(keys):
            left_out[name] = (f"{n} of its {len(keys)} planned runs are stored in {results}" if n
                              else f"no run of the current plan is stored in {results}")
        else:
            kept.append(name)
    ref = ScoreConfig.for_suite(spec).reference
    if ref not in kept:
        raise CeloBenchError(f"cannot make references of suite '{suite}' from {results}: the reference optimizer "
                             f"'{ref}' is left out ({left_out.get(ref, 'not in the suite')}); every score is "
                             f"relative to it: `celo-bench run --suite {suite} --results {results}` first")
    keys_kept = set().union(*(planned[o] for o in kept))
    records = df[df["key"].isin(keys_kept)].sort_values(["task", "optimizer", "hparam_id", "seed"])
    try:
        environment.check(records)
    except environment.MixedEnvironmentsError as e:
        raise CeloBenchError(f"cannot make references of suite '{suite}': {e}. References are made in one "
                             "environment: re-run the odd records in the others' environment") from None
    envs = {json.dumps(environment.of(p), sort_keys=True) for p in records.loc[records["status"] != "failed",
                                                                                "provenance"]}
    if len(envs) > 1:
        raise CeloBenchError(f"cannot make references of suite '{suite}': its tasks were run in {len(envs)} "
                             f"environments ({'; '.join(sorted(envs))}); references are made in one")
    data = _pack(records, series)
    if len(data) > max_bytes:
        raise CeloBenchError(f"references of suite '{suite}' would weigh {len(data) / 2**20:.1f} MiB, over the "
                             f"{max_bytes / 2**20:.1f} MiB a package ships: keep fewer series (--series "
                             f"{series[0]})")
    env = json.loads(envs.pop()) if envs else {f: None for f in environment.FIELDS}
    statuses = {o: {s: int(n) for s, n in g["status"].value_counts().sort_index().items()}
                for o, g in records.groupby("optimizer", sort=False)}
    m = Manifest(
        suite=suite, suite_version=spec.version, engine_version=ENGINE_VERSION, celo_bench_version=__version__,
        plan={"steps": steps, "seeds": seeds, "execution": dict(sorted((execution or {}).items()))},
        sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), records=len(records), series=tuple(series), environment=env,
        keys={o: tuple(sorted(planned[o])) for o in kept}, statuses={o: statuses[o] for o in kept},
        left_out=left_out, command=command or _command(suite, results, steps, seeds, execution),
        made=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), task_seconds=_task_seconds(records),
    )
    dest = Path(out) if out is not None else root()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with fileio.staged_folder(dest / suite) as tmp:  # the file and its manifest, swapped in together
            fileio.atomic_write_bytes(tmp / RESULTS_NAME, data)
            fileio.atomic_write_text(tmp / MANIFEST_NAME, m.as_json())
    except OSError as e:
        raise CeloBenchError(f"cannot write references to {dest / suite}: {e.strerror or e}") from e
    return Built(folder=dest / suite, manifest=m)


def _task_seconds(records: pd.DataFrame) -> dict[str, float]:
    """task -> the longest hand-crafted job's compile + run seconds (each record carries its job's)."""
    hand = records[(records["optimizer_kind"] == "handcrafted") & (records["status"] != "failed")]
    if not len(hand):
        return {}
    per_job = hand.groupby(["task", "optimizer", "hparam_id"], sort=True)[["compile_seconds", "run_seconds"]].first()
    seconds = (per_job["compile_seconds"].fillna(0) + per_job["run_seconds"].fillna(0)).groupby(level="task").max()
    return {t: round(float(v), 2) for t, v in seconds.items()}


def check(suite: str, at: str | os.PathLike | None = None, registry: Registry | None = None) -> list[str]:
    """What no longer matches between `suite`'s references under `at` (default: the shipped ones)
    and the plan this installation computes now; one line each (empty: they match).

    Compared: the file's sha256, the suite and engine versions, each optimizer's run keys
    (planned now with the manifest's overrides) and the file's keys, and the suite's optimizers
    (each must be in the file or in ``left_out``).
    """
    reg = registry or load_registry()
    try:
        m = manifest(suite, at)
        if m is None:
            return [f"no reference results of suite '{suite}' in {Path(at) if at is not None else root()}"]
        path = verify(suite, m, at)
    except ReferencesError as e:
        return [str(e)]
    out = []
    spec = reg.suites.get(suite)
    if spec is None:
        return [f"suite '{suite}' of the references is not registered"]
    if m.suite_version != spec.version:
        out.append(f"suite version: the references are of v{m.suite_version}, the suite is v{spec.version} now")
    if m.engine_version != ENGINE_VERSION:
        out.append(f"engine version: the references were made by engine {m.engine_version}, this is {ENGINE_VERSION}")
    jobs = expand(reg, spec, steps=m.plan.get("steps"), seeds=m.plan.get("seeds"),
                  strategy_overrides=m.plan.get("execution") or None)
    planned: dict[str, set[str]] = {}
    for j in jobs:
        planned.setdefault(j.optimizer.name, set()).update(r.key for r in j.runs)
    for name, keys in m.keys.items():
        if name not in planned:
            out.append(f"{name}: in the references but no longer an optimizer of suite '{suite}'")
            continue
        stale, new = set(keys) - planned[name], planned[name] - set(keys)
        if stale or new:
            out.append(f"{name}: {len(stale)} of its {len(keys)} shipped run keys are not planned now and "
                       f"{len(new)} planned keys are not shipped (a spec, grid, data, weights or engine changed)")
    for name in planned:
        if name not in m.keys and name not in m.left_out:
            out.append(f"{name}: an optimizer of suite '{suite}' neither in the references nor listed as left out")
    stored = set(read_frame(path)["key"])
    if stored != m.all_keys():
        out.append(f"{path}: holds {len(stored - m.all_keys())} keys the manifest lacks and lacks "
                   f"{len(m.all_keys() - stored)} it names")
    return out


__all__ = ["MAX_BYTES", "Built", "build", "check"]
