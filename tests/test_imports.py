"""The package's import graph: layers point one way, and light commands stay light.

The graph is read with :mod:`ast` from every module of ``celo_bench`` (top-level and
in-function imports, absolute and relative), so the checks need no import of the package.
The command checks run ``celo-bench`` in a fresh interpreter and assert that JAX was never
imported; when it was, the failure names the chain of package files that imported it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "celo_bench"
PACKAGE = "celo_bench"


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at line ``line``; ``top`` is False inside a function."""

    source: str
    target: str
    line: int
    top: bool


def _module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(source: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative imports included)."""
    if not node.level:
        return node.module or ""
    base = source.split(".") if _is_package(source) else source.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(source: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules an import statement loads, most specific name first.

    ``from pkg import sub`` loads ``pkg.sub`` when ``sub`` is a module. Every ancestor package
    of a target is loaded as well, except the ones ``source`` already lives in (a module
    importing a sibling does not re-run its own package's ``__init__``).
    """
    if isinstance(node, ast.Import):
        named = [a.name for a in node.names]
    else:
        module = _resolve(source, node)
        named = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names]
    own = {".".join(source.split(".")[:i]) for i in range(1, source.count(".") + 2)}
    out: list[str] = []
    for name in named:
        parts = name.split(".")
        if parts[0] != PACKAGE:
            continue
        for i in range(len(parts), 0, -1):
            target = ".".join(parts[:i])
            if target in MODULES and target not in own and target != source and target not in out:
                out.append(target)
    return out


def _edges() -> list[Edge]:
    edges = []
    for source, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        top_level = {id(n) for n in tree.body}
        # imports under `if TYPE_CHECKING:` / `try:` at module level are still top-level
        for stmt in tree.body:
            if isinstance(stmt, ast.If | ast.Try):
                top_level |= {id(n) for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(source, node):
                    edges.append(Edge(source, target, node.lineno, id(node) in top_level))
    return edges


EDGES = _edges()


def _cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import cycles."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for e in edges:
        graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walker_sees_the_package():
    # guards the checks below against silently walking nothing
    assert len(MODULES) > 50
    assert Edge("celo_bench.data", "celo_bench.data.images", 17, True) in EDGES or any(
        e.source == "celo_bench.data" and e.target == "celo_bench.data.images" for e in EDGES
    )
    assert any(e.source == "celo_bench.cli.data" and e.target == "celo_bench.data" for e in EDGES)


def test_cycle_detection_finds_a_planted_cycle():
    planted = [Edge("celo_bench.task", "celo_bench.suite", 1, True),
               Edge("celo_bench.suite", "celo_bench.task", 1, True)]
    assert _cycles(planted) == [["celo_bench.suite", "celo_bench.task"]]


def test_no_import_cycle():
    cycles = _cycles([e for e in EDGES if e.top])
    assert not cycles, "import cycles (top-level imports): " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_import_cycle_counting_deferred_imports():
    # an import inside a function may defer a heavy dependency, never a cycle
    cycles = _cycles(EDGES)
    assert not cycles, "import cycles (with in-function imports): " + "; ".join(" <-> ".join(c) for c in cycles)


def test_models_do_not_import_optimizers():
    bad = [e for e in EDGES if e.source.startswith(f"{PACKAGE}.models")
           and e.target.startswith(f"{PACKAGE}.optimizers")]
    assert not bad, [f"{e.source}:{e.line} imports {e.target}" for e in bad]


def _private_owner(target: str) -> str | None:
    """The package that owns the first private (``_x``) part of `target`, or None."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def test_private_modules_stay_in_their_package():
    bad = []
    for e in EDGES:
        owner = _private_owner(e.target)
        if owner is not None and not (e.source == owner or e.source.startswith(owner + ".")):
            bad.append(f"{e.source}:{e.line} imports {e.target}")
    assert not bad, bad


def test_private_rule_flags_outside_imports():
    assert _private_owner("celo_bench.optimizers._registry") == "celo_bench.optimizers"
    assert _private_owner("celo_bench.optimizers.learned") is None
    assert _private_owner("celo_bench._schema") == "celo_bench"


# ---- commands that must not load JAX --------------------------------------------------------

PROBE = r"""
import json, sys, traceback

chain = []


class _WatchJax:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "jax" and not chain:
            chain.extend(f"{f.filename.rsplit('/celo_bench/', 1)[-1]}:{f.lineno}"
                         for f in traceback.extract_stack() if "/celo_bench/" in f.filename)
        return None


sys.meta_path.insert(0, _WatchJax)
from celo_bench.cli import main

codes = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["celo-bench", *argv]
    try:
        main()
        codes.append(0)
    except SystemExit as e:
        codes.append(e.code if isinstance(e.code, int) else int(e.code is not None))
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"jax", "numpy", "pandas", "matplotlib"})
print("\n@@" + json.dumps({"codes": codes, "heavy": heavy, "chain": " -> ".join(chain)}), flush=True)
"""


def run_cli(*commands: list[str], timeout: float = 600) -> tuple[list[int], str, set[str], str]:
    """Run ``celo-bench ARGV`` for each argv in `commands`, in order, in one fresh interpreter.

    Returns each exit code, the output, the heavy libraries imported by the end, and the chain
    of package files through which JAX was first imported ("" if it was not).
    """
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(commands)], capture_output=True,
                         text=True, timeout=timeout, cwd=ROOT.parent)
    last = [ln for ln in res.stdout.splitlines() if ln.startswith("@@")]
    assert last, f"the probe did not finish: {res.stdout[-2000:]}{res.stderr[-2000:]}"
    doc = json.loads(last[-1][2:])
    return doc["codes"], res.stdout + res.stderr, set(doc["heavy"]), doc["chain"]


def test_probe_sees_jax():
    # the probe itself must be able to fail: `list tasks` builds models, so it loads JAX
    codes, output, heavy, chain = run_cli(["list", "tasks", "--suite", "smoke", "--format", "json"])
    assert codes == [0], output
    assert "jax" in heavy and "cli/listing.py" in chain


def test_help_loads_no_command_and_no_heavy_library():
    codes, output, heavy, chain = run_cli(["--help"])
    assert codes == [0], output
    assert not heavy, f"`celo-bench --help` imported {heavy} (JAX via {chain or '-'})"
    from celo_bench.cli import COMMANDS

    for name in COMMANDS:
        assert name in output


def test_every_command_module_is_in_the_lazy_table():
    from celo_bench.cli import COMMANDS, load_command, unlisted_modules

    assert unlisted_modules() == [], "add these command modules to celo_bench.cli.COMMANDS"
    for name in COMMANDS:
        assert load_command(name) is not None, f"no module of COMMANDS[{name!r}] registers '{name}'"


def test_no_command_help_loads_jax():
    from celo_bench.cli import COMMANDS

    codes, output, heavy, chain = run_cli(*([name, "--help"] for name in COMMANDS))
    assert codes == [0] * len(COMMANDS), output
    assert "jax" not in heavy, f"a command's --help imported JAX: {chain}"


LIGHT = ("celo_bench.plan", "celo_bench.score", "celo_bench.aggregate", "celo_bench.results",
         "celo_bench.report", "celo_bench.task", "celo_bench.data", "celo_bench.cli")
"""Modules that planning, scoring and reporting use: importing them must not load JAX."""


def test_planning_scoring_and_reporting_modules_import_no_jax():
    code = ("import sys, " + ", ".join(LIGHT) + "\n"
            "print(sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", f"importing {LIGHT} loaded JAX"


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> Path:
    """A store with hand-made records of the smoke suite's plan (no training)."""
    from _score_fixtures import grid_records, write

    from celo_bench.suite import load_registry

    root = tmp_path_factory.mktemp("results")
    opts = {"adam": ("handcrafted", 1.0), "sgd": ("handcrafted", 1.3)}
    write(root, grid_records(["smoke_digits_mlp", "smoke_digits_ae"], opts, seeds=2, n=6, suite="smoke",
                             version="1"), load_registry())
    return root


def test_status_score_and_report_load_no_jax(smoke_results, tmp_path):
    results = ["--suite", "smoke", "--results", str(smoke_results)]
    codes, output, heavy, chain = run_cli(
        ["status", *results],
        ["score", *results, "--reps", "20", "--format", "json"],
        ["report", *results, "--out", str(tmp_path / "report"), "--reps", "20"],
    )
    assert codes == [0, 0, 0], output
    assert "missing" in output and '"optimizer": "adam"' in output  # status ran, score scored
    assert (tmp_path / "report" / "leaderboard.md").is_file()
    assert "jax" not in heavy, f"status, score or report imported JAX: {chain}"
