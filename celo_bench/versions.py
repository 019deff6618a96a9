"""Version stamps that enter run keys, importable without JAX (planning and scoring read them)."""

ENGINE_VERSION = "2"
"""Bump when a change to the engine changes numbers: it is part of every run key."""

__all__ = ["ENGINE_VERSION"]
