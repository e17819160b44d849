"""Tests for the synthetic eSpeak NG demo dataset (audiocourse/demo.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocourse import demo
from audiocourse.data import build_index
from audiocourse.demo import WORDS_V2, _draw_speakers, make_demo_dataset, which_set

WORDS = ["yes", "no", "up", "down", "left", "seven"]
N_SPEAKERS = 12
CLIP_RE = re.compile(r"^([0-9a-f]{8})_nohash_(\d+)\.wav$")
NOISE_DIR = "_background_noise_"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("a") / "speech_commands_demo"
    out = make_demo_dataset(root, n_speakers=N_SPEAKERS, words=WORDS, seed=0, progress=False)
    assert out == root
    return root


def _clips(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*.wav") if p.parent.name != NOISE_DIR)


def synthesize_word(word: str, voice: str = "en-us", rate: int = 175, pitch: int = 50):
    with closing(demo._ESpeak()) as engine:
        return demo._trim(demo._synth_16k(engine, word, voice, rate, pitch, 50))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_words_v2_is_the_35_word_list() -> None:
    assert len(WORDS_V2) == len(set(WORDS_V2)) == 35
    assert {"marvin", "sheila", "backward", "forward", "follow", "learn", "visual"} <= set(WORDS_V2)


def test_layout_and_naming(demo_root: Path) -> None:
    dirs = {p.name for p in demo_root.iterdir() if p.is_dir()}
    assert dirs == set(WORDS) | {NOISE_DIR}
    for name in ("README.md", ".complete"):
        assert (demo_root / name).is_file(), name
    assert not list(demo_root.glob("*_list.txt"))  # no split lists: the loader hashes speakers
    per_word = {}
    for word in WORDS:
        names = sorted(p.name for p in (demo_root / word).iterdir())
        assert names and all(CLIP_RE.match(n) for n in names), names[:3]
        per_word[word] = names
    # every speaker said every word (same file names in every word folder)
    assert all(names == per_word[WORDS[0]] for names in per_word.values())
    speakers = {CLIP_RE.match(n).group(1) for n in per_word[WORDS[0]]}
    assert len(speakers) == N_SPEAKERS
    assert {c.speaker for c in build_index(demo_root)} == speakers  # the loader sees the same ids
    readme = (demo_root / "README.md").read_text()
    assert "SYNTHETIC" in readme and "eSpeak NG" in readme and "NOT HUMAN" in readme
    marker = json.loads((demo_root / ".complete").read_text())
    assert marker["synthetic"] is True
    assert marker["params"]["words"] == WORDS and marker["params"]["n_speakers"] == N_SPEAKERS
    assert marker["clips"] == len(_clips(demo_root))


def test_clip_format(demo_root: Path) -> None:
    clips = _clips(demo_root)
    assert len(clips) >= len(WORDS) * N_SPEAKERS
    for clip in clips:
        info = sf.info(str(clip))
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, 16000), clip
        assert info.format == "WAV" and info.subtype == "PCM_16", clip


def test_background_noise(demo_root: Path) -> None:
    noises = sorted((demo_root / NOISE_DIR).glob("*.wav"))
    names = {p.stem for p in noises}
    assert names == {"white_noise", "pink_noise", "brown_noise", "babble"}
    for path in noises:
        x, sr = sf.read(str(path), dtype="int16")
        info = sf.info(str(path))
        assert sr == 16000 and x.ndim == 1 and info.subtype == "PCM_16", path
        assert 10 <= x.size / sr <= 30, path
        rms = np.sqrt(np.mean(x.astype(np.float64) ** 2))
        assert rms > 300, path  # not silent
    # white is flat, brown falls steeply with frequency
    spectra = {}
    for kind in ("white_noise", "brown_noise"):
        x, _ = sf.read(str(demo_root / NOISE_DIR / f"{kind}.wav"))
        p = np.abs(np.fft.rfft(x[:160000])) ** 2
        f = np.fft.rfftfreq(160000, 1 / 16000)
        spectra[kind] = np.mean(p[(f > 100) & (f < 300)]) / np.mean(p[(f > 4000) & (f < 6000)])
    assert spectra["white_noise"] < 2 and spectra["brown_noise"] > 100


def test_audio_is_a_word_above_the_noise(demo_root: Path) -> None:
    for clip in _clips(demo_root):
        x, _ = sf.read(str(clip), dtype="int16")
        x = x.astype(np.float64)
        assert np.abs(x).max() > 1000, clip  # words peak at -24 dBFS or louder
        frame_rms = np.sqrt(np.mean(x.reshape(-1, 320) ** 2, axis=1)) + 1e-9  # 20-ms frames
        ratio_db = 20 * np.log10(np.percentile(frame_rms, 95) / np.percentile(frame_rms, 10))
        assert ratio_db > 6, (clip, ratio_db)  # SNR >= 5 dB over the word: loud frames stand out
    # different speakers saying the same word are different recordings
    a, b = sorted((demo_root / "yes").iterdir())[:2]
    assert a.read_bytes()[44:] != b.read_bytes()[44:]


def test_loader_splits_the_demo_set_by_speaker_hash(demo_root: Path) -> None:
    # No split lists: build_index uses the README's SHA-1 rule, the same rule the demo drew with.
    clips = build_index(demo_root)
    assert len(clips) == len(_clips(demo_root))
    speakers_in: dict[str, set[str]] = {"train": set(), "validation": set(), "test": set()}
    words_in: dict[str, set[str]] = {"train": set(), "validation": set(), "test": set()}
    for c in clips:
        assert c.split == which_set(c.speaker) and c.speaker == Path(c.path).name[:8], c
        speakers_in[c.split].add(c.speaker)
        words_in[c.split].add(c.word)
    assert not speakers_in["train"] & speakers_in["validation"]
    assert not speakers_in["train"] & speakers_in["test"]
    assert not speakers_in["validation"] & speakers_in["test"]
    assert [len(speakers_in[s]) for s in ("train", "validation", "test")] == [10, 1, 1]
    for split in speakers_in:  # even 12 speakers give every split every word
        assert words_in[split] == set(WORDS), split


def test_demo_does_not_import_the_data_layer() -> None:
    code = "import sys, audiocourse.demo; print('audiocourse.data' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_default_speakers_fill_every_split() -> None:
    speakers = _draw_speakers(80, seed=0)
    ids = [s.id for s in speakers]
    assert len(set(ids)) == 80 and all(re.fullmatch(r"[0-9a-f]{8}", i) for i in ids)
    counts = Counter(which_set(i) for i in ids)
    assert counts["validation"] >= 5 and counts["test"] >= 5 and counts["train"] >= 50
    assert len({s.voice for s in speakers}) >= 20  # many accent+variant combinations
    assert [s.id for s in _draw_speakers(80, seed=1)] != ids


def test_deterministic_and_independent_of_word_order(demo_root: Path, tmp_path: Path) -> None:
    demo._noises.cache_clear()  # regenerate the noises too
    synthesize_word("backward", voice="en+f2")  # eSpeak state left behind must not matter
    again = make_demo_dataset(tmp_path / "b", n_speakers=N_SPEAKERS, words=WORDS, progress=False)
    assert _tree_bytes(again) == _tree_bytes(demo_root)
    # a clip depends on (seed, speaker, word, take) only, not on which words come before it
    other = make_demo_dataset(
        tmp_path / "c", n_speakers=N_SPEAKERS, words=["seven", "yes"], progress=False
    )
    for word in ("yes", "seven"):
        for clip in (other / word).iterdir():
            assert clip.read_bytes() == (demo_root / word / clip.name).read_bytes(), clip


def test_second_call_uses_the_marker(demo_root: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in demo_root.rglob("*")}
    t0 = time.perf_counter()
    out = make_demo_dataset(demo_root, n_speakers=N_SPEAKERS, words=WORDS, progress=False)
    assert out == demo_root and time.perf_counter() - t0 < 0.5
    assert {p: p.stat().st_mtime_ns for p in demo_root.rglob("*")} == before


def test_other_parameters_rebuild_in_place(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    make_demo_dataset(root, n_speakers=3, words=["go"], seed=0, progress=False)
    first = {p.name for p in (root / "go").iterdir()}
    make_demo_dataset(root, n_speakers=4, words=["go", "no"], seed=0, progress=False)
    assert len({p.name[:8] for p in (root / "go").iterdir()}) == 4 and (root / "no").is_dir()
    assert json.loads((root / ".complete").read_text())["params"]["n_speakers"] == 4
    make_demo_dataset(root, n_speakers=4, words=["go"], seed=1, progress=False)
    assert {p.name for p in (root / "go").iterdir()}.isdisjoint(first)  # other speakers
    assert not (root / "no").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temporary leftovers


def test_refuses_to_replace_a_folder_that_is_not_a_demo_set(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        make_demo_dataset(root, n_speakers=3, words=["go"], progress=False)
    # a completion marker written by something else (e.g. a download) does not make it ours
    (root / ".complete").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(FileExistsError):
        make_demo_dataset(root, n_speakers=3, words=["go"], progress=False)
    assert (root / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "kwargs", [{"n_speakers": 0}, {"words": []}, {"words": ["Yes"]}, {"words": ["go", "go"]}]
)
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        make_demo_dataset(tmp_path / "x", progress=False, **kwargs)


def test_espeak_settings_matter_and_calls_repeat() -> None:
    x = synthesize_word("marvin")
    assert x.ndim == 1 and 0.2 <= x.size / 16000 <= 1.0
    assert np.all(np.isfinite(x)) and 0.05 < np.abs(x).max() <= 1.0
    # the settings matter: slower speech is longer, another voice sounds different
    assert synthesize_word("marvin", rate=100).size > 1.2 * synthesize_word("marvin", rate=250).size
    other = synthesize_word("marvin", voice="en-gb-scotland+f2", pitch=70)
    assert other.shape != x.shape or not np.allclose(other, x)
    # eSpeak NG keeps state inside one loaded library; every fresh engine must start clean
    first = synthesize_word("seven", voice="en-us+m3")
    synthesize_word("backward", voice="en+f2", rate=120)
    assert np.array_equal(synthesize_word("seven", voice="en-us+m3"), first)
