"""Version stamps that enter run keys, importable without JAX (planning and scoring read them)."""

ENGINE_VERSION = "3"
"""Bump when a change to the engine changes numbers: it is part of every run key.

3: CPU jobs default to ``steps="split"`` (gradient and update as two programs); bit-identical
to ``scan`` for the hand-crafted optimizers, Celo, Celo-Adam and VeLO-S on the quick tier's
MLP, transformer and learned-optimizer tasks, not for RNN-MLP-LOpt (float rounding of the
fused program: up to 2e-3 in training loss over 300 steps)."""

__all__ = ["ENGINE_VERSION"]
