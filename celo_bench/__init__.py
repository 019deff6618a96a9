"""celo-bench: a benchmark suite and leaderboard generator for neural-network optimizers."""

__version__ = "0.1.0"

__all__ = ["__version__"]
