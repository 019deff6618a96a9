"""The vectorized training engine."""

from celo_bench.engine._train import JobResult, prepare_starts, run_job
from celo_bench.strategy import RUNS_CHOICES, STEPS_CHOICES, Strategy, default_strategy
from celo_bench.task import OptimizerBuilder
from celo_bench.versions import ENGINE_VERSION

__all__ = [
    "ENGINE_VERSION",
    "RUNS_CHOICES",
    "STEPS_CHOICES",
    "JobResult",
    "OptimizerBuilder",
    "Strategy",
    "default_strategy",
    "prepare_starts",
    "run_job",
]
