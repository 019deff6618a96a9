"""Benchmarks of the benchmark: how fast the engine, the optimizers and a whole grid run.

Above the engine and the runner (they never import this package):

- :mod:`celo_bench.bench.engine`: the engine's one-program job against a per-step Python
  loop (``celo-bench bench engine``);
- :mod:`celo_bench.bench.overhead`: per-step time of every optimizer relative to Adam,
  the paper's runtime table (``celo-bench bench overhead``);
- :mod:`celo_bench.bench.grid`: a suite's grid through the public runner into a fresh
  store: wall time, compile share and runs/s (``celo-bench bench grid``);
- :mod:`celo_bench.bench.meta_train`: seconds per outer step of ``celo-bench meta-train``
  for Celo and the three learned baselines on the ``cpu`` preset (``celo-bench bench meta-train``);
- :mod:`celo_bench.bench.results`: where results are written, ``<out>/<name>.json``
  (default ``benchmarks/``); the report's runtime table reads ``overhead.json`` there.

This module imports nothing heavy; import the benchmark modules themselves to run one.
"""

from celo_bench.bench.results import DEFAULT_OUT

__all__ = ["DEFAULT_OUT"]
