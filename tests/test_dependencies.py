"""Dependencies are declared as used (issue 28, finding 9): every third-party module the package
imports comes from a distribution ``pyproject.toml`` declares (core or an extra), every core
dependency is imported somewhere, and the lower bounds cover the APIs the code calls.

Imports are read with :mod:`ast` from every module (top-level and in-function), so the check
needs neither the package nor the optional extras installed.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

# module -> distribution where the two names differ and the distribution may not be installed
KNOWN = {"PIL": "pillow", "sklearn": "scikit-learn", "sentencepiece": "sentencepiece", "ray": "ray",
         "pooch": "pooch", "yaml": "pyyaml"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(spec: str) -> tuple[str, str]:
    """``"optax>=0.2.6"`` -> ("optax", ">=0.2.6")."""
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", spec)
    return _norm(m.group(1)), m.group(2).split(";")[0].strip()


CORE = dict(_requirement(s) for s in PYPROJECT["dependencies"])
EXTRAS = {_requirement(s)[0] for specs in PYPROJECT.get("optional-dependencies", {}).values() for s in specs}


def imported_modules(root: Path = ROOT / "celo_bench") -> dict[str, set[str]]:
    """Top-level third-party module -> the package files that import it."""
    out: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top != "celo_bench" and top not in sys.stdlib_module_names:
                    out.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return out


def distribution(module: str) -> str:
    installed = packages_distributions().get(module)
    return _norm(KNOWN.get(module) or (installed[0] if installed else module))


IMPORTED = {distribution(m): files for m, files in imported_modules().items()}


def test_the_import_walk_sees_the_package():
    assert {"jax", "optax", "numpy", "pandas", "typer"} <= set(IMPORTED)
    assert "celo_bench" not in IMPORTED and "json" not in IMPORTED


def test_every_imported_distribution_is_declared():
    undeclared = {d: sorted(f)[:3] for d, f in IMPORTED.items() if d not in CORE and d not in EXTRAS}
    assert not undeclared, f"imported but not in pyproject.toml: {undeclared}"


def test_every_core_dependency_is_imported():
    unused = sorted(d for d in CORE if d not in IMPORTED)
    assert not unused, f"declared in pyproject.toml but never imported by the package: {unused}"


def test_typer_click_is_typer_s_own():
    """Typer vendors click since 0.26 (no click dependency): the package imports no click of its own,
    so a typer without click installed beside it runs the CLI."""
    assert "click" not in IMPORTED, IMPORTED.get("click")


@pytest.mark.parametrize("dist, least, why", [
    ("optax", (0, 2, 6), "optax.contrib.adopt (0.2.5) and optax.contrib.MuonDimensionNumbers (0.2.6)"),
])
def test_lower_bounds_cover_what_the_code_calls(dist, least, why):
    bound = re.search(r">=\s*([0-9][0-9.]*)", CORE[dist])
    assert bound, f"{dist} has no lower bound"
    got = tuple(int(x) for x in bound.group(1).split("."))
    assert got >= least, f"{dist}>={bound.group(1)}, but the code needs {'.'.join(map(str, least))}: {why}"


def test_the_apis_behind_the_optax_bound_are_called():
    """The bound above is needed only while the code calls these (drop it with them)."""
    text = "".join(p.read_text() for p in (ROOT / "celo_bench" / "optimizers").rglob("*.py"))
    assert "optax.contrib.adopt" in text and "MuonDimensionNumbers" in text
