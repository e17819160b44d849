"""Every notebook: committed clean, built on the course skeleton, and executed top to bottom.

Execution injects a cell after the notebook's "parameters" cell (papermill's convention) with
``DATASET`` ('demo', plus 'real' when $AUDIO_COURSE_REAL_DATA is set) and ``FAST = True``.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from conftest import REAL_DATA
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DATASETS = ["demo"] + (["real"] if REAL_DATA and Path(REAL_DATA).is_dir() else [])
ROOT_FINDER = re.compile(r"sys\.path\.insert\(0, .*utils\.py")


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _parameters_cells(nb: nbformat.NotebookNode) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no numbered notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text())
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; strip them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_follows_the_course_skeleton(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# ")
    head = first.source.lower()
    for needed in ("learn", "prerequisite", "runtime", "t4", "cpu"):
        assert needed in head, f"{path.name}: the opening cell does not mention {needed!r}"
    params = _parameters_cells(nb)
    assert len(params) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert "DATASET" in nb.cells[params[0]].source and "FAST" in nb.cells[params[0]].source
    text = "\n".join(c.source for c in nb.cells)
    assert re.search(r"^#+ .*summary", text, re.I | re.M), f"{path.name}: no Summary section"
    assert re.search(r"^#+ .*exercises", text, re.I | re.M), f"{path.name}: no Exercises section"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "import *" not in code
    assert code.count("sys.path") == len(ROOT_FINDER.findall(code)) <= 1, (
        f"{path.name}: only the one-line repo-root finder may touch sys.path"
    )


@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_executes_top_to_bottom(path: Path, dataset: str) -> None:
    nb = nbformat.read(path, as_version=4)
    (at,) = _parameters_cells(nb)
    injected = nbformat.v4.new_code_cell(f"# injected by tests\nDATASET = {dataset!r}\nFAST = True")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(at + 1, injected)
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    t0 = time.perf_counter()
    client.execute()
    took = time.perf_counter() - t0
    print(f"{path.name} [{dataset}] executed in {took:.1f} s")
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    if os.environ.get("AUDIO_COURSE_NOTEBOOK_OUT"):  # keep executed copies for inspection
        out = Path(os.environ["AUDIO_COURSE_NOTEBOOK_OUT"]) / f"{path.stem}-{dataset}.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)
