"""Device memory: a job's budget, how many runs fit in one program, and retrying on OOM.

A job's runs train in one vmapped program when they fit; otherwise they split into chunks
of at most ``budget // bytes_per_run`` runs. The budget follows the device: a fraction of
what XLA may allocate on an accelerator (``memory_stats()['bytes_limit']``), a fraction of
host RAM (capped at 4 GiB) on a CPU. The per-run estimate is rough, so a chunk that still
runs out of memory (XLA ``RESOURCE_EXHAUSTED``) is retried with half the runs
(:func:`run_chunked`) down to one run; only then is the job out of memory, and that is
the device's limit, never the optimizer's failure (:class:`DeviceOutOfMemoryError`).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jax

from celo_bench.errors import CeloBenchError

GiB = 2**30
ACCELERATOR_FRACTION = 0.7
"""Share of the device's allocatable bytes one job may plan for (the rest: data, XLA scratch)."""
HOST_FRACTION = 0.25
HOST_CAP = 4 * GiB
"""On a CPU: a quarter of host RAM, at most 4 GiB (the engine's former fixed budget)."""

_OOM_MARKERS = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "OOM when allocating",
                "Failed to allocate", "failed to allocate")

T = TypeVar("T")


class DeviceOutOfMemoryError(CeloBenchError):
    """Even one run of a job does not fit in the device's memory (not the optimizer's fault)."""


def host_memory_bytes() -> int:
    """Physical RAM of this machine in bytes (0 if the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def budget_from_stats(stats: Mapping[str, Any] | None, platform: str, host_bytes: int | None = None) -> int:
    """The memory budget of one job in bytes, from a device's ``memory_stats()``.

    Args:
      stats: ``jax.Device.memory_stats()`` (None or without ``bytes_limit`` on CPUs).
      platform: ``"cpu"``, ``"gpu"``, ``"tpu"``.
      host_bytes: host RAM (default: :func:`host_memory_bytes`).

    Returns:
      ``ACCELERATOR_FRACTION * bytes_limit`` on accelerators that report it; otherwise
      ``min(HOST_FRACTION * host RAM, HOST_CAP)`` (``HOST_CAP`` when RAM is unknown).
    """
    limit = int((stats or {}).get("bytes_limit") or 0)
    if platform != "cpu" and limit > 0:
        return int(ACCELERATOR_FRACTION * limit)
    host = host_memory_bytes() if host_bytes is None else host_bytes
    return int(min(HOST_FRACTION * host, HOST_CAP)) if host > 0 else HOST_CAP


def device_memory_budget(device: Any = None) -> int:
    """The memory budget of one job on `device` (default: JAX's first device), in bytes.

    Accelerators: :data:`ACCELERATOR_FRACTION` of ``memory_stats()['bytes_limit']`` (what
    XLA's allocator may take, e.g. ~105 GiB of an H200 with the default 75 % preallocation).
    CPUs: :data:`HOST_FRACTION` of host RAM, capped at :data:`HOST_CAP`.
    """
    device = device or jax.devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # some backends do not implement memory_stats
        stats = None
    return budget_from_stats(stats, device.platform)


def peak_memory_bytes(device: Any = None) -> int | None:
    """``peak_bytes_in_use`` of `device` since the process started (None where unreported)."""
    device = device or jax.devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:
        return None
    peak = stats.get("peak_bytes_in_use")
    return int(peak) if peak is not None else None


class PeakSampler:
    """Largest ``bytes_in_use`` of a device while the ``with`` block runs (polled in a thread).

    XLA's allocator reports only the process-wide peak, which never resets; polling gives the
    peak of one job. ``peak`` is None on devices without memory statistics (CPUs).
    """

    def __init__(self, device: Any = None, interval_s: float = 0.02):
        self.device = device or jax.devices()[0]
        self.interval_s = interval_s
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        try:
            used = (self.device.memory_stats() or {}).get("bytes_in_use")
        except Exception:
            used = None
        if used is not None:
            self.peak = max(self.peak or 0, int(used))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakSampler:
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="celo-bench-peak", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sample()


def is_oom(exc: BaseException) -> bool:
    """Does `exc` say the device ran out of memory (XLA ``RESOURCE_EXHAUSTED`` and kin)?"""
    if isinstance(exc, DeviceOutOfMemoryError | MemoryError):
        return True
    text = f"{type(exc).__name__}: {exc}"
    return any(m in text for m in _OOM_MARKERS)


EVAL_SPLITS = 3
"""Evaluation batches of the train, validation and test splits run in one batched pass."""

EVAL_PASS_OUTPUT_CAP = 512 * 2**20
"""Float32 model-output bytes one evaluation pass of one run may hold (512 MiB).

An evaluation chunk is ``3 splits x gcd(eval_batches, last_eval_batches)`` batches; when
their outputs exceed this cap the batches are evaluated in groups of :func:`eval_group`
(a ``lax.map`` over groups, each group vmapped). The cap is a constant, not a share of the
device's memory, so that a task compiles the same evaluation program on every device."""


def eval_group(n_batches: int, batch_size: int, output_bytes: int, cap: int = EVAL_PASS_OUTPUT_CAP) -> int:
    """Batches of one evaluation chunk evaluated at once (vmapped) by one run.

    Args:
      n_batches: batches in the chunk (``3 x gcd(eval_batches, last_eval_batches)``).
      batch_size: examples per batch.
      output_bytes: float32 output bytes per example (:func:`output_bytes`).
      cap: output bytes one pass may hold (:data:`EVAL_PASS_OUTPUT_CAP`).

    Returns:
      ``n_batches`` when all fit under `cap` (one vmapped pass); otherwise the largest group
      size in ``[1, n_batches)`` that fits, at least 1. Example: the LSTM LMs of the paper
      (32,100-way logits, batch 128 x 32 tokens: 526 MB per batch) evaluate one batch at a
      time; the quick tier's models evaluate their 15 batches in one pass.
    """
    per_batch = max(1, int(batch_size) * int(output_bytes))
    return max(1, min(int(n_batches), int(cap) // per_batch))


def bytes_per_run(
    n_params: int, example_bytes: int, *, batch_size: int, eval_batches: int,
    last_eval_batches: int, num_steps: int, param_bytes: int = 4, output_bytes: int = 0,
) -> int:
    """Rough device bytes of one run (the engine's chunking estimate).

    ``12 x`` the parameters (params, gradients, optimizer state and their copies in the
    update), ``16 x`` the float32 inputs of the largest evaluation (activations), and the
    run's data order (``(T + 1) x batch`` int32 indices). With `output_bytes` (float32
    model outputs per example, :func:`output_bytes`) it adds ``3 x`` the outputs of one
    evaluation pass (logits, log-softmax, loss terms): :func:`eval_group` batches of the
    chunk's ``3 splits x gcd(eval_batches, last_eval_batches)``, or of one training batch
    when that is larger. For language models this term dominates: the LSTM LMs' 32,100-way
    logits take ~1.6 GB per run at batch 128 x 32 tokens (one batch per pass).
    """
    params = 12 * n_params * param_bytes
    activations = 16 * example_bytes * batch_size * max(eval_batches, last_eval_batches)
    n_eval = EVAL_SPLITS * math.gcd(eval_batches, last_eval_batches)
    group = eval_group(n_eval, batch_size, output_bytes) if output_bytes else n_eval
    outputs = 3 * group * batch_size * output_bytes
    return int(params + activations + outputs + 4 * (num_steps + 1) * batch_size)


def output_bytes(info: Mapping[str, Any], family: str = "") -> int:
    """Float32 bytes of a model's output for one example, from dataset facts.

    Language models: ``seq_len x vocab_size`` logits; autoencoders: the image; classifiers:
    ``num_classes`` logits.
    """
    if "vocab_size" in info:
        return 4 * int(info.get("seq_len", 1)) * int(info["vocab_size"])
    if family == "autoencoder" and "image_shape" in info:
        return 4 * math.prod(int(s) for s in info["image_shape"])
    return 4 * int(info.get("num_classes", 1))


def example_bytes(info: Mapping[str, Any]) -> int:
    """Float32 bytes of one training example from dataset facts (image + label, or tokens)."""
    if "image_shape" in info:
        return 4 * math.prod(int(s) for s in info["image_shape"]) + 4
    if "seq_len" in info:
        return 4 * (int(info["seq_len"]) + 1)
    raise ValueError(f"dataset facts without image_shape or seq_len: {sorted(info)}")


def runs_per_program(budget: int, per_run: int, cap: int | None = None) -> int:
    """Runs that fit in one program: ``budget // per_run``, at least 1, at most `cap`."""
    n = max(1, int(budget) // max(1, int(per_run)))
    return min(n, cap) if cap else n


def chunks(n_runs: int, per_program: int) -> int:
    """Number of programs a job of `n_runs` splits into."""
    return math.ceil(n_runs / max(1, per_program)) if n_runs else 0


@dataclass
class ChunkLog:
    """What :func:`run_chunked` did: the chunk size it ended with and every OOM retry."""

    chunk: int
    retries: list[tuple[int, int, str]] = field(default_factory=list)  # (start, size, message)


def run_chunked(
    fn: Callable[[int, int], T],
    n_runs: int,
    chunk: int,
    *,
    on_retry: Callable[[int, int, BaseException], None] | None = None,
) -> tuple[list[T], ChunkLog]:
    """Call ``fn(lo, hi)`` over ``[0, n_runs)`` in chunks, halving the chunk on OOM.

    A chunk that raises an out-of-memory error (:func:`is_oom`) is retried from the same
    start with half as many runs; later chunks keep the smaller size. Any other exception
    propagates unchanged.

    Args:
      fn: trains runs ``lo..hi-1`` and returns their result.
      n_runs: runs in the job.
      chunk: runs per program to try first (e.g. :func:`runs_per_program`).
      on_retry: called as ``on_retry(lo, new_chunk, exc)`` before each retry.

    Returns:
      (results in run order, one per successful chunk; the :class:`ChunkLog`).

    Raises:
      DeviceOutOfMemoryError: a single run does not fit.
    """
    size = max(1, min(int(chunk), n_runs or 1))
    log = ChunkLog(chunk=size)
    out: list[T] = []
    lo = 0
    while lo < n_runs:
        hi = min(lo + size, n_runs)
        try:
            out.append(fn(lo, hi))
        except Exception as e:
            if not is_oom(e):
                raise
            if hi - lo == 1:
                raise DeviceOutOfMemoryError(
                    f"one run does not fit in the device's memory ({str(e).splitlines()[0][:200]}); "
                    "use a device with more memory or a smaller task (batch size, model)"
                ) from None
            size = max(1, (hi - lo) // 2)
            log.chunk = size
            log.retries.append((lo, size, str(e).splitlines()[0][:200] if str(e) else type(e).__name__))
            if on_retry:
                on_retry(lo, size, e)
            continue
        lo = hi
    return out, log


def split_sizes(n_runs: int, chunk: int) -> Sequence[int]:
    """Sizes of the chunks a job of `n_runs` runs splits into at `chunk` runs per program."""
    return [min(chunk, n_runs - lo) for lo in range(0, n_runs, max(1, chunk))]


__all__ = [
    "ACCELERATOR_FRACTION",
    "HOST_CAP",
    "HOST_FRACTION",
    "ChunkLog",
    "DeviceOutOfMemoryError",
    "PeakSampler",
    "budget_from_stats",
    "bytes_per_run",
    "chunks",
    "device_memory_budget",
    "EVAL_PASS_OUTPUT_CAP",
    "eval_group",
    "example_bytes",
    "host_memory_bytes",
    "output_bytes",
    "is_oom",
    "peak_memory_bytes",
    "run_chunked",
    "runs_per_program",
    "split_sizes",
]
