"""Engine options of a grid, importable without JAX (the planner and the CLI build them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineSettings:
    """Engine options shared by every job of a grid (strategy overrides are per family).

    ``steps_strategy``, ``runs_strategy`` and ``xla_opt_level`` override the planned
    :class:`~celo_bench.strategy.Strategy` (they enter run keys); ``memory_budget`` is in
    bytes per compiled program (None: a fraction of the device's memory).
    """

    steps_strategy: str | None = None  # None: the measured default for the task's family
    runs_strategy: str | None = None
    xla_opt_level: int | None = None  # None: chosen per job from its expected cost
    block_size: int = 1
    memory_budget: int | None = None
    max_runs_per_program: int | None = None
    parallel_jobs: int | None = None  # local executor: jobs at once (None: 2 on CPU, 1 on GPU)

    def strategy_overrides(self) -> dict:
        """The overrides that enter run keys (unset ones omitted)."""
        out = {"steps": self.steps_strategy, "runs": self.runs_strategy, "xla_opt_level": self.xla_opt_level}
        return {k: v for k, v in out.items() if v is not None}


__all__ = ["EngineSettings"]
