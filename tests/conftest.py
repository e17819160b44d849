"""Shared fixtures: tiny datasets written on the fly, and the real clips when CI provides them."""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REAL_DATA = os.environ.get("AUDIO_COURSE_REAL_DATA")
# The course's notebooks in reading order: 01_..., 03_..., 03b_... (a second part), 04_...
NOTEBOOKS = sorted(
    p
    for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]*_*.ipynb")
    if re.match(r"\d\d[a-z]?_", p.name)
)
needs_real = pytest.mark.skipif(
    not REAL_DATA or not Path(REAL_DATA).is_dir(),
    reason="set AUDIO_COURSE_REAL_DATA to the real Speech Commands clips",
)


def tone(freq: float, n: int = 16000, sr: int = 16000, amp: float = 0.5) -> np.ndarray:
    t = np.arange(n) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_dataset(
    root: Path,
    words: list[str],
    speakers: list[str],
    *,
    layout: str = "full",
    noise: bool = True,
    lists: bool = True,
) -> Path:
    """A miniature Speech Commands tree: one tone per word, a clip per (word, speaker).

    layout 'full': <word>/<spk>_nohash_0.wav (+ lists); 'testset': the official test-set archive,
    where words outside the first 10 go to _unknown_/<word>_<spk>_nohash_0.wav.wav.
    """
    from audiocourse.data import COMMANDS_10, which_set

    root.mkdir(parents=True, exist_ok=True)
    val, test = [], []
    for wi, word in enumerate(words):
        for si, spk in enumerate(speakers):
            if layout == "testset" and word not in COMMANDS_10:
                rel = f"_unknown_/{word}_{spk}_nohash_0.wav.wav"
            else:
                rel = f"{word}/{spk}_nohash_0.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            x = tone(200 + 60 * wi, n=16000 - 37 * si)  # lengths vary: some clips are short
            sf.write(root / rel, x, 16000, subtype="PCM_16")
            split = which_set(spk)
            (val if split == "validation" else test if split == "test" else []).append(rel)
    if layout == "testset":
        (root / "_silence_").mkdir(exist_ok=True)
        for i in range(6):
            sf.write(root / "_silence_" / f"{i}.wav", tone(50, amp=0.01 * i), 16000)
    if noise and layout == "full":
        (root / "_background_noise_").mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        sf.write(root / "_background_noise_" / "white_noise.wav",
                 (0.1 * rng.standard_normal(16000 * 12)).astype(np.float32), 16000)
    if lists and layout == "full":
        (root / "validation_list.txt").write_text("\n".join(val) + "\n")
        (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root


def speakers(n: int) -> list[str]:
    """``n`` deterministic 8-hex speaker ids."""
    return [hashlib.sha1(str(i).encode()).hexdigest()[:8] for i in range(n)]


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "cat", "dog"]
    return write_dataset(tmp_path / "sc", words, speakers(30))


@pytest.fixture
def served_dataset(tmp_path: Path):
    """A Speech Commands-layout .tar.gz on a local HTTP server (127.0.0.1 only).

    Yields ``(url, sha256, size, requests)``; ``requests`` lists every path the server was asked
    for, so a test can assert that nothing was downloaded."""
    src = write_dataset(tmp_path / "src", ["yes", "no", "cat"], speakers(8))
    www = tmp_path / "www"
    www.mkdir()
    archive = www / "sc.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname=f"./{p.relative_to(src)}", recursive=False)
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            requests.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/sc.tar.gz"
    yield url, hashlib.sha256(archive.read_bytes()).hexdigest(), archive.stat().st_size, requests
    server.shutdown()
