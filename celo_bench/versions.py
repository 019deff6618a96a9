"""Version stamps that enter run keys, importable without JAX (planning and scoring read them)."""

ENGINE_VERSION = "3"
"""Bump when a change to the engine changes numbers: it is part of every run key.

3: CPU jobs default to ``steps="split"`` (gradient and update as two programs); bit-identical
to ``scan`` for the hand-crafted optimizers, Celo, Celo-Adam and VeLO-S on the quick tier's
MLP, transformer and learned-optimizer tasks, not for RNN-MLP-LOpt (float rounding of the
fused program: up to 2e-3 in training loss over 300 steps). Measured on the quick grid's jobs
(21 runs per hand-crafted job, 3 per learned one); other run counts can round differently: with
2 runs of Adam, 20-30 steps, scan and split differ by up to 1.4e-6 on the transformer task and
2e-3 on the LOpt task (2026-12-05). Since then, ``split`` takes the final loss from the
gradient program and shares learned optimizers' programs: curves bit-identical to before on the
conv, LSTM, transformer and LOpt tasks. The start program (task init, data order, keys) then
moved to XLA backend level 1: bit-identical outputs on all 7 quick and 17 paper tasks."""

__all__ = ["ENGINE_VERSION"]
