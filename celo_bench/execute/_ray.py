"""The Ray executor: every (task, optimizer) job is one Ray task on a cluster.

Workers only compute: each returns its job's records (plain dicts with NumPy arrays) to
the driver, and the driver alone writes the store, so the nodes need no shared
filesystem. Resume needs nothing Ray-specific either: the planner ships only the runs
the store lacks. A job whose worker dies (node lost, process killed, out of memory) is
retried by Ray up to ``max_retries`` times; exceptions raised by the job are *not*
retried, because :func:`~celo_bench.execute._job.execute_job` already turns them into
``failed`` records that ``--retry-failed`` can re-run.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import ray

from celo_bench.errors import CeloBenchError
from celo_bench.execute._job import EngineSettings, execute_job, failed_records
from celo_bench.plan import Job
from celo_bench.records import RunRecord

ENV_PREFIX = "CELO_BENCH_RAY_"
JobFn = Callable[[Job, EngineSettings], list[dict]]


@dataclass(frozen=True)
class RayResources:
    """What Ray reserves for each job, and how often a job lost with its worker is retried.

    ``num_gpus`` may be fractional (``0.5`` packs two jobs on a GPU); JAX's GPU memory
    preallocation is then scaled down to the same share so the jobs fit side by side.
    ``memory_gb`` is a scheduling reservation (Ray places no more jobs on a node than its
    memory holds), not a hard limit.
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_gb: float | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        for name in ("num_cpus", "num_gpus", "max_retries"):
            if getattr(self, name) < 0:
                raise CeloBenchError(f"Ray {name} per job must be >= 0, got {getattr(self, name)}")
        if self.num_gpus > 1 and self.num_gpus != int(self.num_gpus):
            raise CeloBenchError(
                f"Ray GPUs per job above 1 must be whole, got {self.num_gpus}; use 0.5, 1, 2, ..."
            )
        if self.memory_gb is not None and self.memory_gb <= 0:
            raise CeloBenchError(f"Ray memory per job must be > 0 GB, got {self.memory_gb}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RayResources:
        """Read ``CELO_BENCH_RAY_{CPUS_PER_JOB,GPUS_PER_JOB,MEMORY_GB_PER_JOB,MAX_RETRIES}``."""
        env = os.environ if environ is None else environ
        fields = {
            "num_cpus": ("CPUS_PER_JOB", float),
            "num_gpus": ("GPUS_PER_JOB", float),
            "memory_gb": ("MEMORY_GB_PER_JOB", float),
            "max_retries": ("MAX_RETRIES", int),
        }
        kwargs: dict[str, Any] = {}
        for field_name, (suffix, kind) in fields.items():
            raw = env.get(ENV_PREFIX + suffix, "").strip()
            if not raw:
                continue
            try:
                kwargs[field_name] = kind(raw)
            except ValueError:
                raise CeloBenchError(
                    f"{ENV_PREFIX}{suffix}={raw!r} is not a {kind.__name__}; unset it or fix it"
                ) from None
        return cls(**kwargs)

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``RemoteFunction.options``."""
        opts: dict[str, Any] = {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "max_retries": self.max_retries,
            # system failures (worker or node death) only: a job's own exceptions come
            # back as `failed` records and must not be re-run behind the user's back
            "retry_exceptions": False,
        }
        if self.memory_gb is not None:
            opts["memory"] = int(self.memory_gb * 2**30)
        return opts


def _run_on_worker(job: Job, settings: EngineSettings, job_fn: JobFn, num_gpus: float) -> list[dict]:
    """The Ray task body: train one job on this worker and return its records."""
    if 0 < num_gpus < 1:
        # JAX grabs 75% of a GPU at start-up; a fractional share must take only its part
        # (this is read when JAX first touches the GPU, i.e. by the worker's first job)
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.75 * num_gpus:.3f}")
    node = ray.util.get_node_ip_address()
    return [RunRecord.from_mapping(rec).with_provenance(executor="ray", node=node) for rec in job_fn(job, settings)]


class RayExecutor:
    """``map(jobs) -> (job, records)`` in completion order, the jobs running on a Ray cluster.

    Args:
        settings: engine options shipped with every job.
        address: the cluster (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``). ``None``
            joins the cluster Ray finds itself (``RAY_ADDRESS``, or one started on this
            machine with ``ray start``) and otherwise starts a private one for this run.
        resources: per-job reservation, or a mapping of :class:`RayResources` fields
            overriding the ``CELO_BENCH_RAY_*`` variables (``None`` values are ignored,
            so CLI options can be passed through as they are).
        job_fn: what a worker runs per job (tests swap it to inject faults).
    """

    name = "ray"

    def __init__(
        self,
        settings: EngineSettings = EngineSettings(),
        address: str | None = None,
        resources: RayResources | Mapping[str, Any] | None = None,
        *,
        job_fn: JobFn = execute_job,
    ):
        self.settings = settings
        self.address = address
        if not isinstance(resources, RayResources):
            given = {k: v for k, v in (resources or {}).items() if v is not None}
            resources = replace(RayResources.from_env(), **given)
        self.resources = resources
        self.job_fn = job_fn

    def _connect(self) -> bool:
        """Join or start a cluster; True when this call started Ray (so we shut it down)."""
        if ray.is_initialized():
            return False
        try:
            ray.init(address=self.address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = self.address or "this machine"
            raise CeloBenchError(
                f"cannot reach a Ray cluster at {where}: {str(e).rstrip('.')}. Start one with `ray start --head` "
                "or pass --address HOST:PORT (see docs/ray.md)"
            ) from None
        return True

    def _check_feasible(self, private: bool) -> None:
        """Fail (private cluster) or warn (shared one) when no node can ever hold a job.

        Ray would otherwise queue the jobs forever; on a shared cluster an autoscaler may
        still add a fitting node, so there it is only a warning.
        """
        need = {"CPU": self.resources.num_cpus, "GPU": self.resources.num_gpus}
        if self.resources.memory_gb is not None:
            need["memory"] = self.resources.memory_gb * 2**30
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if any(all(res.get(k, 0) >= v for k, v in need.items() if v) for res in nodes):
            return
        have = [{k: res.get(k, 0) for k in need} for res in nodes]
        msg = (
            f"no node of the Ray cluster offers {need} per job (nodes: {have}); lower "
            "--ray-cpus-per-job / --ray-gpus-per-job / --ray-memory-gb-per-job"
        )
        if private:
            raise CeloBenchError(msg)
        warnings.warn(msg + ", or let the autoscaler add such a node", stacklevel=4)

    def map(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, list[dict]]]:
        jobs = list(jobs)
        if not jobs:
            return
        started = self._connect()
        pending: dict[ray.ObjectRef, Job] = {}
        try:
            self._check_feasible(private=started)
            task = ray.remote(_run_on_worker).options(**self.resources.options())
            # the settings and job function are shared by every job: ship them once
            settings_ref = ray.put(self.settings)
            fn_ref = ray.put(self.job_fn)
            for job in jobs:
                ref = task.remote(job, settings_ref, fn_ref, self.resources.num_gpus)
                pending[ref] = job
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    yield job, self._result(ref, job)
        finally:
            for ref in pending:  # interrupted: free the cluster for its next user
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()

    def _result(self, ref: ray.ObjectRef, job: Job) -> list[dict]:
        """The job's records, or ``failed`` ones when the job could not run on its worker."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # raised by the job function: not retried
            cause = e.cause if isinstance(e.cause, BaseException) else e
            msg = f"ray: {type(cause).__name__}: {_first_line(cause)}"
        except ray.exceptions.RayError as e:  # worker or node lost, retries exhausted
            retries = self.resources.max_retries
            msg = f"ray: {type(e).__name__} after {retries} retries: {_first_line(e)}"
        return failed_records(job, msg, {"executor": "ray"})


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else ""
