"""The shape of the shared module (issue 11): small, short functions, dependencies one way.

A learner opens ``utils.py`` and the package behind it; these tests keep it readable:
- package + ``utils.py`` at most ``MAX_LINES`` lines in all;
- no function or method longer than ``MAX_FUNCTION_LINES`` lines;
- every module imports only modules *below* it in ``LAYERS`` (so there can be no cycle), and
  never from inside a function (the usual way to dodge a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "audiocourse"
MAX_LINES = 4500
MAX_FUNCTION_LINES = 80
# Bottom to top: a module may import only the ones before it.
LAYERS = [
    "env",
    "download",
    "demo",
    "data",
    "features",
    "plots",
    "images",
    "bcresnet",
    "models",
    "train",
    "infer",
    "cli",
]


def _sources() -> list[Path]:
    return sorted(PACKAGE.glob("*.py")) + [ROOT / "utils.py"]


def _package_imports(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """(module name, node) for every import of an ``audiocourse`` module in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level and not mod:  # from . import x
                found += [(a.name, node) for a in node.names]
            elif node.level or mod.startswith("audiocourse"):
                found.append((mod.removeprefix("audiocourse").lstrip("."), node))
        elif isinstance(node, ast.Import):
            found += [
                (a.name.removeprefix("audiocourse."), node)
                for a in node.names
                if a.name.startswith("audiocourse.")
            ]
    return [(name.split(".")[0], node) for name, node in found if name]


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_total_lines_within_budget() -> None:
    counts = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in _sources()}
    total = sum(counts.values())
    table = "\n".join(f"{n:>6}  {name}" for name, n in sorted(counts.items(), key=lambda kv: kv[1]))
    print(f"\n{table}\n{total:>6}  total (budget {MAX_LINES})")
    assert total <= MAX_LINES, f"package + utils.py is {total} lines (budget {MAX_LINES}):\n{table}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.name)
def test_no_long_functions(path: Path) -> None:
    tree = ast.parse(path.read_text())
    long = [
        f"{f.name} ({f.end_lineno - f.lineno + 1} lines, line {f.lineno})"
        for f in _functions(tree)
        if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_every_module_has_a_layer() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules <= set(LAYERS), f"modules without a layer: {sorted(modules - set(LAYERS))}"


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_imports_point_down_and_sit_at_the_top(path: Path) -> None:
    if path.stem == "__init__":
        return
    tree = ast.parse(path.read_text())
    mine = LAYERS.index(path.stem)
    inner = {id(n) for f in _functions(tree) for n in ast.walk(f)}
    for name, node in _package_imports(tree):
        assert name in LAYERS, f"{path.name} imports unknown module {name!r}"
        assert LAYERS.index(name) < mine, (
            f"{path.name}:{node.lineno} imports {name}, which sits above it in {LAYERS}"
        )
        assert id(node) not in inner, (
            f"{path.name}:{node.lineno} imports {name} inside a function (move it to the top)"
        )
