"""Notebook 05 shows BC-ResNet's block as code: one source with the module (issue 15)."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest

from audiocourse import bcresnet

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_keyword_spotting.ipynb"


def _notebook_classes() -> dict[str, str]:
    """``{class name: source}`` of every class defined in a code cell of notebook 05."""
    found = {}
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] != "code" or "class " not in src:
            continue
        magic = ("!", "%")  # IPython lines are not Python
        src = "\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith(magic))
        for node in ast.parse(src).body:
            if isinstance(node, ast.ClassDef):
                found[node.name] = ast.get_source_segment(src, node)
    return found


@pytest.mark.parametrize("name", ["SubSpectralNorm", "BCResBlock"])
def test_notebook_class_is_the_module_class(name: str) -> None:
    shown = _notebook_classes()
    assert name in shown, f"notebook 05 no longer defines {name}"
    assert shown[name] == inspect.getsource(getattr(bcresnet, name)).rstrip("\n"), (
        f"notebook 05's {name} differs from audiocourse/bcresnet.py: copy the module's class"
    )
