"""``python -m celo_bench.cli``: the same as the ``celo-bench`` command."""

from celo_bench.cli import main

main()
