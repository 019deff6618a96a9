"""Meta-training learned optimizers with the Celo paper's compute-diet recipe.

Modules: :mod:`config` (settings and the smoke / cpu / paper presets), :mod:`tasks` (the
8x8 image-MLP meta-training family and its reparametrisation augmentation), :mod:`pes`
(truncated antithetic PES), :mod:`phases` (Celo's two phases: masks and factory options),
:mod:`trainer` (outer loop, checkpoints, identical resume), :mod:`artifacts` (cards, curve,
plot, optimizer spec), :mod:`validation` (held-out meta-validation loss) and :mod:`recipe`
(both phases in one call, the outer learning-rate sweep). CLI: ``celo-bench meta-train``.

Example::

    from celo_bench.metatrain import meta_train
    final = meta_train("celo", preset="smoke", out="runs/celo-smoke")[-1]
    opt = celo_bench.optimizers.build("celo", num_steps=1000, checkpoint=str(final.out))
"""

from celo_bench.metatrain.config import PRESETS, MetaTrainConfig, preset_config
from celo_bench.metatrain.recipe import meta_train, sweep
from celo_bench.metatrain.trainer import MetaTrainer, RunResult

__all__ = ["PRESETS", "MetaTrainConfig", "MetaTrainer", "RunResult", "meta_train", "preset_config", "sweep"]
