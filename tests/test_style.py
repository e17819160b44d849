"""Lint and module hygiene: ruff, docstrings that name a notebook, utils re-exports."""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    result = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _modules() -> list[str]:
    import utils

    return [m for m in utils._MODULES if (ROOT / (m.replace(".", "/") + ".py")).exists()]


@pytest.mark.parametrize("name", _modules())
def test_public_names_documented_and_reexported(name: str) -> None:
    import utils

    module = importlib.import_module(name)
    for public in module.__all__:
        obj = getattr(module, public)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            doc = inspect.getdoc(obj) or ""
            assert doc, f"{name}.{public} has no docstring"
            assert re.search(r"notebook|setup|README", doc), (
                f"{name}.{public}: the docstring should name the notebook that introduces it"
            )
        assert getattr(utils, public) is obj, f"utils does not re-export {name}.{public}"
