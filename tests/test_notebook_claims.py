"""Notebooks 01-02 quote no measured figure in their prose: the code prints those (issue 13).

A number with a unit of measurement (dB, %, clips/s, x faster) typed into a markdown cell can
disagree with what the code prints on another machine or dataset. Definitions and constants
(6.02 dB per bit, 0 dBFS, top_db=80, ...) are allowed by an explicit list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_audio_data.ipynb", "02_transforms_and_visualisations.ipynb"]
MEASURE = re.compile(
    r"(?<![\w.])[−-]?\d[\d,.]*\s*(?:dBFS|dB|%|clips/s|×|x faster|times faster)", re.I
)
CONSTANTS = {  # definitions and constants, not measurements
    "01_audio_data.ipynb": {
        "6 dB", "6.02 dB", "1.76 dB", "−6 dB", "−20 dB", "−3.01 dB", "3.01 dB", "0 dB",
        "0 dBFS", "10 %", "40 dB",
    },
    "02_transforms_and_visualisations.ipynb": {
        "0 dB", "−20 dB", "−100 dB", "80 dB", "80 %", "10 dB", "−5 dB",
    },
}  # fmt: skip


def _markdown(name: str) -> list[tuple[int, str]]:
    cells = json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "markdown"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_markdown_quotes_no_measured_figures(name: str) -> None:
    found = [
        (i, m.group(0))
        for i, text in _markdown(name)
        for m in MEASURE.finditer(re.sub(r"```.*?```", "", text, flags=re.S))  # code: printed
    ]
    typed = [(i, q) for i, q in found if re.sub(r"\s+", " ", q) not in CONSTANTS[name]]
    assert not typed, (
        f"{name}: markdown quotes figures the code should print (cell, text): {typed}; "
        "print them from code, or add a true constant to CONSTANTS"
    )


def test_the_pattern_catches_a_measured_figure() -> None:
    assert MEASURE.findall("batching was 2.3× faster, 57 clips/s, 8 % blank, SNR 49.3 dB") == [
        "2.3×", "57 clips/s", "8 %", "49.3 dB",
    ]  # fmt: skip
