"""The vectorized training engine."""

from celo_bench.engine._strategy import Strategy, default_strategy
from celo_bench.engine._train import DEFAULT_MEMORY_BUDGET, JobResult, OptimizerBuilder, run_job

ENGINE_VERSION = "1"
"""Bump when a change to the engine changes numbers: it is part of every run key."""

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "ENGINE_VERSION",
    "JobResult",
    "OptimizerBuilder",
    "Strategy",
    "default_strategy",
    "run_job",
]
