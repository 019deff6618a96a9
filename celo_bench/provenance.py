"""What produced a number: package, git commit, jax version, device."""

from __future__ import annotations

import functools
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


@functools.cache
def provenance() -> dict[str, str]:
    import jax

    from celo_bench import __version__

    dev = jax.devices()[0]
    return {
        "celo_bench": __version__,
        "git_commit": git_commit(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "python": platform.python_version(),
    }
