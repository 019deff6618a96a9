"""Engine options of a grid, importable without JAX (the planner and the CLI build them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EngineSettings:
    """Engine options shared by every job of a grid (strategy overrides are per family).

    ``execution`` sets execution settings by name (:data:`celo_bench.strategy.SETTINGS`, e.g.
    ``{"steps": "loop"}``): they override the planned :class:`~celo_bench.strategy.Strategy`
    and enter run keys (None or absent: the measured default for the task's family).
    ``memory_budget`` is in bytes per compiled program (None: a fraction of the device's memory).
    """

    execution: Mapping[str, Any] = field(default_factory=dict)
    block_size: int = 1
    memory_budget: int | None = None
    max_runs_per_program: int | None = None
    parallel_jobs: int | None = None  # local executor: jobs at once (None: 2 on CPU, 1 on GPU)

    def strategy_overrides(self) -> dict:
        """The settings that override the planned strategy and enter run keys (unset ones omitted)."""
        return {k: v for k, v in self.execution.items() if v is not None}


__all__ = ["EngineSettings"]
