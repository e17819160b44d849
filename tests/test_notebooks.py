"""Every notebook: committed clean, built on the course skeleton, and executed top to bottom.

Execution injects a cell after the notebook's "parameters" cell (papermill's convention) with
``DATASET`` ('demo', plus 'real' when $AUDIO_COURSE_REAL_DATA is set) and ``FAST = True``, and
runs the kernel with the inline backend, so the executed copy holds the figures a learner sees.
A hidden first cell (:func:`_kernel_install`) records, per cell, the figures pyplot creates and
the ones it shows, inspecting each as it is shown (:func:`_kernel_inspect`). A cell fails when it
errors, warns from the course's code, draws but shows no image, leaves a figure unshown, or shows
an empty figure (no data, empty axes, a near-uniform PNG). Missing axis labels, units and colour
bars, duplicate figures and third-party warnings are reported as warnings, not failures.
Executed copies (hidden cells removed) and their findings land in notebooks/executed/.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import os
import re
import time
import warnings
from collections import Counter
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import NOTEBOOKS, REAL_DATA
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ["demo"] + (["real"] if REAL_DATA and Path(REAL_DATA).is_dir() else [])
ROOT_FINDER = re.compile(r"sys\.path\.insert\(0, .*utils\.py")
EXECUTED = Path(os.environ.get("AUDIO_COURSE_NOTEBOOK_OUT") or ROOT / "notebooks" / "executed")
INLINE = "module://matplotlib_inline.backend_inline"  # what Jupyter and Colab use
DRAWS = re.compile(r"\bplt\.(show|subplots|figure|subplot_mosaic)\(|\butils\.plot_\w+\(")
WARNING_LINE = re.compile(r"^(?P<file>.+?):\d+: (?P<kind>\w*Warning): (?P<msg>.*)$")
COURSE_CODE = (str(ROOT / "audiocourse") + os.sep, str(ROOT / "utils.py"), "ipykernel_")
DUMP = "# injected by tests\nimport json as _j; print(_j.dumps(get_ipython()._course_ci)); del _j"


class NotebookReport(UserWarning):
    """A figure or output a learner would find lacking, reported without failing the run."""


def _kernel_inspect(fig: object) -> dict:
    """Runs in the kernel: a shown figure's title, hard problems and soft notes."""
    import re

    import numpy as np
    from matplotlib.collections import QuadMesh

    unitful = re.compile(r"\b(time|frequency|duration|latency|level|power|amplitude)\b", re.I)
    has_unit = re.compile(r"[(\[]|\bdB\b|\bHz\b|\bms\b")
    axes = [a for a in fig.axes if a.get_visible()]
    bars = [a for a in axes if getattr(a, "_colorbar", None) is not None]
    plots = [a for a in axes if a not in bars]
    sup = fig._suptitle.get_text() if fig._suptitle else ""
    title = sup or next((a.get_title() for a in plots if a.get_title()), "") or "untitled"
    hard, soft = [], []
    if not any(a.has_data() for a in plots):
        hard.append("the figure holds no data" + ("" if plots else " (no axes)"))
    mapped = {id(b._colorbar.mappable) for b in bars}
    # one colour bar may serve several images drawn on the same scale (a grid of spectrograms)
    scales = {(m.get_cmap().name, *m.get_clim()) for m in (b._colorbar.mappable for b in bars)}
    for k, a in enumerate(plots):
        name = f"axes {k}" if a.get_title() in ("", title) else repr(a.get_title())
        if not a.axison:  # axis("off"): a picture or an unused grid cell
            continue
        if not a.has_data():
            hard.append(f"{name}: empty axes")
            continue
        for xy in "xy":
            sup_label = getattr(fig, f"_sup{xy}label", None)
            group = getattr(a, f"get_shared_{xy}_axes")().get_siblings(a)
            labels = [getattr(s, f"get_{xy}label")() for s in group]
            label = next((t for t in [*labels, sup_label and sup_label.get_text()] if t), "")
            if not getattr(a, f"{xy}axis").get_visible():
                continue
            if not label:
                soft.append(f"{name}: no {xy}-axis label")
            elif unitful.search(label) and not has_unit.search(label):
                soft.append(f"{name}: {xy} label {label!r} gives no unit")
        for line in a.lines:
            y = np.asarray(line.get_ydata())
            if y.dtype.kind in "fiu" and not np.isfinite(y.astype(float)).any():
                hard.append(f"{name}: a line with no finite values")
        for art in [*a.images, *(c for c in a.collections if isinstance(c, QuadMesh))]:
            if art.get_array() is None:  # explicit colours: no colour scale
                continue
            values = np.ma.masked_invalid(np.ma.asarray(art.get_array(), dtype=float))
            if values.ndim == 3:  # an RGB(A) picture: no colour scale
                continue
            if values.count() == 0 or values.min() == values.max():
                hard.append(f"{name}: colour-coded data with no finite values or one colour")
            if id(art) not in mapped and (art.get_cmap().name, *art.get_clim()) not in scales:
                soft.append(f"{name}: colour-coded data without a colour bar")
    for b in bars:
        if not (b.get_ylabel() or b.get_xlabel()):
            soft.append("a colour bar without a label")
    return {"title": title, "hard": hard, "soft": soft}


def _kernel_install(inspect_figure) -> None:
    """Runs in the kernel: per cell, the figures pyplot creates, shows and leaves unshown."""
    import time

    import IPython.core.pylabtools as pylabtools
    from IPython import get_ipython
    from matplotlib._pylab_helpers import Gcf

    ip = get_ipython()
    state = ip._course_ci = {"cells": {}, "errors": [], "render_s": 0.0}
    cur = [None]  # the running cell's record
    print_figure, set_active = pylabtools.print_figure, Gcf._set_new_active_manager.__func__

    def shown(fig, fmt="png", *args, **kwargs):  # the inline backend's PNG formatter calls this
        if fmt in ("png", "retina") and cur[0] is not None:
            try:
                cur[0]["shown"].append({"id": id(fig), **inspect_figure(fig)})
            except Exception as e:  # reported by the test; never break the learner's cell
                state["errors"].append(f"inspecting a figure: {e!r}")
        t0 = time.perf_counter()
        try:
            return print_figure(fig, fmt, *args, **kwargs)
        finally:
            state["render_s"] += time.perf_counter() - t0

    def created(cls, manager):
        if cur[0] is not None:
            cur[0]["created"].append(id(manager.canvas.figure))
        return set_active(cls, manager)

    def pre(info):
        cur[0] = {"created": [], "shown": [], "lost": []}

    def post(result):
        rec, cur[0] = cur[0], None
        if rec is None:  # the cell that installed these hooks
            return
        try:
            state["cells"][str(result.execution_count)] = rec
            opened = {id(m.canvas.figure): m.canvas.figure for m in Gcf.get_all_fig_managers()}
            seen = {s["id"] for s in rec["shown"]}
            for i in rec["created"]:
                if i in opened and i not in seen:
                    rec["lost"].append(inspect_figure(opened[i])["title"])
        except Exception as e:
            state["errors"].append(f"after a cell: {e!r}")

    pylabtools.print_figure = shown  # before pyplot loads the backend, which registers it
    Gcf._set_new_active_manager = classmethod(created)
    ip.events.register("pre_run_cell", pre)
    ip.events.register("post_run_cell", post)


HOOK = "\n\n".join(
    ["# injected by tests: records what each cell draws (tests/test_notebooks.py)"]
    + [inspect.getsource(f) for f in (_kernel_inspect, _kernel_install)]
    + ["_kernel_install(_kernel_inspect)\ndel _kernel_install, _kernel_inspect"]
)


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _parameters_cells(nb: nbformat.NotebookNode) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]


def _prepared(path: Path, dataset: str) -> tuple[nbformat.NotebookNode, list[int | None]]:
    """The notebook with the hidden hook first, parameters injected, the dump cell last; and
    each cell's index in the committed notebook (None for injected cells)."""
    nb = nbformat.read(path, as_version=4)
    (at,) = _parameters_cells(nb)
    origin: list[int | None] = list(range(len(nb.cells)))
    params = nbformat.v4.new_code_cell(f"# injected by tests\nDATASET = {dataset!r}\nFAST = True")
    params.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(at + 1, params)
    origin.insert(at + 1, None)
    hook, dump = (nbformat.v4.new_code_cell(s) for s in (HOOK, DUMP))
    for cell in (hook, dump):
        cell.metadata["tags"] = ["injected-checks"]
    nb.cells = [hook, *nb.cells, dump]
    return nb, [None, *origin, None]


def _save(nb: nbformat.NotebookNode, out: Path) -> None:
    """The executed copy as a learner sees it: hidden check cells removed."""
    copy = nbformat.from_dict(nb)
    copy.cells = [c for c in copy.cells if "injected-checks" not in c.metadata.get("tags", [])]
    nbformat.write(copy, out)


def _records(nb: nbformat.NotebookNode) -> dict:
    outputs = nb.cells[-1].get("outputs", [])
    return json.loads("".join(o.get("text", "") for o in outputs if o.get("name") == "stdout"))


def _png_problem(data: str) -> str | None:
    """'near-uniform' for a PNG that is (almost) one grey level: a blank figure."""
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L"))
    top = np.bincount(grey.ravel(), minlength=256).max() / grey.size
    if top > 0.995 or grey.std() < 2:
        return f"a near-uniform image ({100 * top:.1f} % one grey level, std {grey.std():.1f})"
    return None


def _stderr_findings(text: str) -> tuple[list[str], list[str]]:
    """Warnings (and other lines) on stderr from the course's code, and from third parties."""
    ours, theirs = [], []
    for line in text.splitlines():
        m = WARNING_LINE.match(line.strip())
        if m:
            mine = any(k in m["file"] for k in COURSE_CODE)
            (ours if mine else theirs).append(f"{m['kind']}: {m['msg']} ({m['file']})")
        elif "audiocourse" in line or COURSE_CODE[1] in line:
            ours.append(f"stderr: {line.strip()}")
    return ours, theirs


def _cell_findings(cell: nbformat.NotebookNode, rec: dict) -> tuple[list[str], list[str]]:
    hard, soft = [], []
    outputs = cell.get("outputs", [])
    errors = [o for o in outputs if o.output_type == "error"]
    hard += [f"error {o.get('ename')}: {o.get('evalue')}" for o in errors]
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    ours, theirs = _stderr_findings(stderr)
    hard += [f"warning from the course's code: {w}" for w in ours]
    soft += [f"third-party warning: {w}" for w in theirs]
    pngs = [o.data["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    code = "\n".join(line.split("#")[0] for line in cell.source.splitlines())
    if DRAWS.search(code) and not pngs:
        hard.append("draws (plt.show / plt.subplots / utils.plot_*) but shows no image")
    hard += [f"figure {t!r} created but never shown" for t in rec.get("lost", [])]
    hard += [p for p in map(_png_problem, pngs) if p]
    for fig in rec.get("shown", []):
        hard += [f"figure {fig['title']!r}: {p}" for p in fig["hard"]]
        soft += [f"figure {fig['title']!r}: {p}" for p in fig["soft"]]
    shown = Counter(f["id"] for f in rec.get("shown", []))
    if any(k > 1 for k in shown.values()):
        soft.append("the same figure is shown twice (a returned Figure and plt.show?)")
    return hard, soft


def _findings(
    nb: nbformat.NotebookNode, origin: list[int | None], records: dict
) -> tuple[list[str], list[str]]:
    """Hard failures and soft reports, each naming the committed notebook's cell index."""
    hard = [f"kernel-side check failed: {e}" for e in records["errors"]]
    soft: list[str] = []
    for cell, i in zip(nb.cells, origin, strict=True):
        if cell.cell_type != "code" or i is None:
            continue
        rec = records["cells"].get(str(cell.execution_count), {})
        h, s = _cell_findings(cell, rec)
        hard += [f"cell {i}: {p}" for p in h]
        soft += [f"cell {i}: {p}" for p in s]
    return hard, soft


def _execute(path: Path, dataset: str, out: Path) -> tuple[list[str], list[str]]:
    """Execute with the inline backend; save the copy to ``out`` and the findings beside it."""
    nb, origin = _prepared(path, dataset)
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    try:
        client.execute(env={**os.environ, "MPLBACKEND": INLINE})
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        _save(nb, out)
        pytest.fail(f"{path.name} [{dataset}] stopped (executed copy: {out}):\n{str(e)[-3000:]}")
    _save(nb, out)
    records = _records(nb)
    hard, soft = _findings(nb, origin, records)
    print(f"{path.name} [{dataset}]: figures rendered in {records['render_s']:.1f} s")
    findings = {"fail": hard, "report": soft, "render_s": round(records["render_s"], 2)}
    out.with_suffix(".checks.json").write_text(json.dumps(findings, indent=1))
    return hard, soft


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
    """Runs with the inline backend, as a learner does; checks errors, warnings and every figure."""
    EXECUTED.mkdir(parents=True, exist_ok=True)
    out = EXECUTED / f"{path.stem}-{dataset}.ipynb"
    t0 = time.perf_counter()
    hard, soft = _execute(path, dataset, out)
    print(f"{path.name} [{dataset}] executed and checked in {time.perf_counter() - t0:.1f} s")
    for note in soft:
        warnings.warn(NotebookReport(f"{path.name} [{dataset}] {note}"), stacklevel=1)
    assert not hard, f"{path.name} [{dataset}] (executed copy: {out}):\n" + "\n".join(hard)


TRAPS = {  # cell source -> what the checks must say about it ("" = nothing)
    "import warnings\n\nimport matplotlib.pyplot as plt": "",
    "fig, ax = plt.subplots()\nax.plot([0, 1])\nax.set(xlabel='time (s)', ylabel='level (dB)')\n"
    "plt.show()": "",
    "fig, ax = plt.subplots()\nax.plot([0, 1])\nplt.close(fig)": "shows no image",
    "plt.figure()\nplt.show()": "no data (no axes)",
    "fig, (a, b) = plt.subplots(1, 2)\na.imshow([[0, 1], [1, 0]])\nplt.show()": "empty axes",
    "fig, ax = plt.subplots()\nax.plot([0, 1], color='w')\nax.axis('off')\nplt.show()":
    "near-uniform",
    "fig, ax = plt.subplots()\nax.plot([float('nan')] * 3)\nax.set(xlabel='x', ylabel='y')\n"
    "plt.show()": "no finite values",
    "fig, ax = plt.subplots()\nfig.colorbar(ax.imshow([[1, 1], [1, 1]]), label='dB')\n"
    "ax.set(xlabel='x', ylabel='y')\nplt.show()": "one colour",
    "warnings.warn('from the notebook', stacklevel=1)": "warning from the course's code",
    "exec(compile('import warnings; warnings.warn(\"x\")', '/site-packages/other.py', 'exec'))":
    "third-party warning",
    "fig, ax = plt.subplots()\nax.plot([0, 1])\nax.set(xlabel='x', ylabel='y')\nfig": "twice",
    "import matplotlib\nmatplotlib.use('agg')\nfig, ax = plt.subplots()\nax.plot([0, 1])":
    "never shown",
}


def test_the_checks_catch_what_a_learner_would_miss(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("DATASET, FAST = 'demo', False")]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in TRAPS]
    nbformat.write(nb, tmp_path / "traps.ipynb")
    hard, soft = _execute(tmp_path / "traps.ipynb", "demo", tmp_path / "out.ipynb")
    said = {i: [m for m in hard + soft if m.startswith(f"cell {i}:")] for i in range(len(nb.cells))}
    for i, expected in enumerate(TRAPS.values(), start=1):
        assert bool(said[i]) == bool(expected), (i, said[i])
        assert any(expected in m for m in said[i]) or not expected, (i, said[i])
    cell = {expected: i for i, expected in enumerate(TRAPS.values(), start=1)}
    empty_axes, one_colour = cell["empty axes"], cell["one colour"]
    assert "axes 0: no x-axis label" in " ".join(said[empty_axes])
    assert "without a colour bar" in " ".join(said[empty_axes])
    assert not any(m.startswith(f"cell {one_colour}:") for m in soft)  # a labelled colour bar
