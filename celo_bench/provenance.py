"""What produced a number: package, git commit, device and library versions.

The keys of :data:`celo_bench.environment.FIELDS` (device kind, backend, jax, jaxlib, optax,
flax) make a record's environment, which scoring compares within a task.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path


@functools.cache
def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():  # an installed copy: any git repo above it is not ours
        return ""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def library_version(distribution: str) -> str:
    """The installed version of `distribution` ("" when it is not installed)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


@functools.cache
def provenance() -> dict[str, str]:
    """This process's provenance: what every record it writes carries (imports JAX)."""
    import jax

    from celo_bench import __version__

    dev = jax.devices()[0]
    return {
        "celo_bench": __version__,
        "git_commit": git_commit(),
        "jax": jax.__version__,
        "jaxlib": library_version("jaxlib"),
        "optax": library_version("optax"),
        "flax": library_version("flax"),
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "python": platform.python_version(),
    }
