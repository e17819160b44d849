"""The offline demo set: SYNTHETIC words from eSpeak NG in the Speech Commands layout (notebook 01).

A "speaker" is an eSpeak NG English accent + variant, rate, pitch, pitch range and "microphone"
tilt; each word is resampled to 16 kHz, placed in one second and mixed with noise. Same
arguments and eSpeak NG build -> byte-identical files. Also home of the dataset's format.
"""

from __future__ import annotations

import _ctypes
import atexit
import ctypes
import functools
import hashlib
import io
import itertools
import json
import math
import os
import shutil
import tempfile
import threading
import zlib
from collections import namedtuple
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter, resample_poly
from tqdm.auto import tqdm

from .env import data_dir

__all__ = ["make_demo_dataset"]

# ------------------------------------------- the Speech Commands format (data.py re-exports it)
SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
COMMANDS_10 = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
WORDS_V2 = COMMANDS_10 + """zero one two three four five six seven eight nine bed bird cat dog
happy house marvin sheila tree wow backward forward follow learn visual""".split()
_MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # from the Speech Commands README's split rule


def which_set(
    speaker: str, validation_pct: float = 10.0, testing_pct: float = 10.0, salt: str = ""
) -> str:
    """The dataset README's split rule: SHA-1 of the speaker id -> a split (notebook 01).

    Hashing the speaker (not the file) keeps a speaker's clips in one split, and a file keeps
    its split as the dataset grows. ``salt`` re-draws the split (for a folder that is one split).
    """
    h = int(hashlib.sha1((salt + speaker).encode("utf-8")).hexdigest(), 16)
    pct = (h % (_MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_NUM_WAVS_PER_CLASS)
    split = "validation" if pct < validation_pct else "test"
    return split if pct < validation_pct + testing_pct else "train"


_VERSION = 3  # bump when the audio or layout changes: older folders are rebuilt
_VOICES = "en en-us en-gb-scotland en-gb-x-rp en-gb-x-gbclan en-gb-x-gbcwmd en-029 en-us-nyc"
# Human-sounding variants (espeak-ng-data/voices/!v); robots and whispers are left out.
_VARIANTS = """m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 klatt klatt2 klatt3 klatt4 adam Andy Annie
aunty belinda benjamin david ed edward grandma grandpa john linda max paul quincy steph travis
victor""".split()
# Babble words are NOT in WORDS_V2, so the babble noise never says a label.
_BABBLE_WORDS = """the and water morning people because number little about coffee table window
yesterday maybe really thing then after never always computer garden music paper station summer
winter question answer kitchen brother sister doctor market picture""".split()
_RATE, _PITCH, _INTONATION = (120, 220), (25, 75), (20, 80)  # eSpeak's words/min and 0-100
# "microphone" FIR [1, tilt] (> 0 darker); share of speakers who said every word twice
_TILT, _TWO_TAKES = (-0.6, 0.6), 0.2
_SNR_DB, _PEAK_DBFS = (5.0, 40.0), (-24.0, -3.0)
_MAX_WORD, _NOISE_SECONDS, _NOISE_RMS_DBFS = int(0.95 * SAMPLE_RATE), 20, -20.0
_NOISE_KINDS = ("white_noise", "pink_noise", "brown_noise", "babble")  # 1/f**0, **1, **2
_MARKER, _GENERATOR = ".complete", "audiocourse.demo"  # only our own folders are ever replaced
_README = """# SYNTHETIC Speech Commands demo set -- NOT HUMAN RECORDINGS

All {} clips are SYNTHETIC speech from the eSpeak NG text-to-speech engine ({}), in the layout
of Speech Commands v0.02, so the course runs without a download; accuracy on them says little
about real speech. Splits follow the dataset's SHA-1 rule on the speaker id (`which_set`).
Made by `audiocourse.demo.make_demo_dataset` with {}.
"""

# ------------------------------------------------------------------------------- eSpeak NG
_SYNCHRONOUS, _POS_CHARACTER, _CHARS_UTF8 = 2, 1, 1  # speak_lib.h; espeak_PARAMETER below:
_RATE_P, _VOLUME_P, _PITCH_P, _RANGE_P = 1, 2, 3, 4
_LIBC = ctypes.CDLL(None) if os.name == "posix" else None
_COPIES = itertools.count()


@functools.lru_cache(maxsize=1)
def _copy_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="audiocourse-espeak-"))
    atexit.register(shutil.rmtree, path, True)
    return path


class _ESpeak:
    """A freshly loaded private copy of libespeak-ng: eSpeak keeps state in C statics, so only a
    fresh copy makes a fixed sequence of calls byte-identical whatever ran before (~4 ms)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader as loader
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("The demo set needs eSpeak NG: pip install espeakng-loader") from e
        src, self.data_path = Path(loader.get_library_path()), Path(loader.get_data_path())
        self._file: Path | None = _copy_dir() / f"{next(_COPIES)}-{src.name}"
        shutil.copyfile(src, self._file)  # a new file: the loader treats it as a new library
        try:
            lib = ctypes.CDLL(str(self._file))
        except OSError:  # e.g. a noexec temp dir: share the installed file
            self._file.unlink(missing_ok=True)
            self._file, lib = None, ctypes.CDLL(str(src))
        c = ctypes  # the prototypes that differ from ctypes' int defaults (speak_lib.h, API 12)
        lib.espeak_Synth.argtypes = [c.c_char_p, c.c_size_t, c.c_uint, c.c_int, c.c_uint,
                                     c.c_uint, c.c_void_p, c.c_void_p]  # fmt: skip
        lib.espeak_Info.restype = c.c_char_p
        lib.espeak_ng_SetRandSeed.argtypes = [c.c_long]  # espeak-ng >= 1.51
        self.lib = lib
        self.sample_rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, str(self.data_path).encode(), 0)
        if self.sample_rate <= 0:
            self.close()
            raise RuntimeError(f"espeak_Initialize failed (data path {self.data_path})")
        self.version = (lib.espeak_Info(None) or b"?").decode()
        kind = c.CFUNCTYPE(c.c_int, c.POINTER(c.c_short), c.c_int, c.c_void_p)
        self._callback = kind(self._on_audio)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def close(self) -> None:
        if self.lib is not None:
            self.lib.espeak_Terminate()
            (getattr(_ctypes, "dlclose", None) or _ctypes.FreeLibrary)(self.lib._handle)
            self.lib = None
        if self._file is not None:
            self._file.unlink(missing_ok=True)

    def _on_audio(self, wav: ctypes.Array, n: int, _events: int) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # continue synthesis

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> np.ndarray:
        """int16 samples at ``self.sample_rate`` of ``text`` spoken with these settings."""
        self.lib.espeak_SetVoiceByName(voice.encode())
        for param, value in ((_RATE_P, rate), (_VOLUME_P, 100), (_PITCH_P, pitch),
                             (_RANGE_P, pitch_range)):  # fmt: skip
            self.lib.espeak_SetParameter(param, int(value), 0)  # after the voice: it resets them
        self.lib.espeak_ng_SetRandSeed(1)  # eSpeak's own noise generator
        if _LIBC is not None:
            _LIBC.srand(1)  # the C library's generator, back at its default seed
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with code {err} for {text!r}")
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def _trim(x: np.ndarray, rel_db: float = -40.0, margin: int = 160) -> np.ndarray:
    """Cut leading/trailing samples quieter than ``rel_db`` below the peak (10 ms margin kept)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0:
        return x[:0]
    loud = np.flatnonzero(np.abs(x) > peak * 10 ** (rel_db / 20))
    return x[max(0, loud[0] - margin) : min(x.size, loud[-1] + margin + 1)]


def _synth_16k(engine: _ESpeak, word: str, voice: str, rate: int, pitch: int, span: int):
    raw = engine.synth(word, voice, rate, pitch, span).astype(np.float64) / 32768.0
    g = math.gcd(SAMPLE_RATE, engine.sample_rate)  # eSpeak's 22050 Hz: up 320, down 441
    return resample_poly(raw, SAMPLE_RATE // g, engine.sample_rate // g)


_Speaker = namedtuple("_Speaker", "id voice rate pitch pitch_range tilt takes")


@functools.lru_cache(maxsize=1)
def _espeak_setup() -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(English accents, voice variants, eSpeak NG version) of this installation."""
    with closing(_ESpeak()) as engine:
        ok = engine.lib.espeak_SetVoiceByName
        accents = tuple(v for v in _VOICES.split() if ok(v.encode()) == 0)
        variants = tuple(v for v in _VARIANTS if (engine.data_path / "voices/!v" / v).is_file())
    return accents, variants, engine.version


def _random_voice(rng: np.random.Generator) -> str:
    accents, variants, _ = _espeak_setup()
    return f"{accents[rng.integers(len(accents))]}+{variants[rng.integers(len(variants))]}"


def _draw_speakers(n_speakers: int, seed: int) -> list[_Speaker]:
    """Candidates in a fixed order, each kept while its ``which_set`` split needs speakers:
    10 % validation, 10 % test (at least one each from 3 speakers), the rest train."""
    n_eval = max(1, round(0.1 * n_speakers)) if n_speakers >= 3 else 0
    quota = {"train": n_speakers - 2 * n_eval, "validation": n_eval, "test": n_eval}
    chosen: dict[str, _Speaker] = {}
    for k in range(100 * n_speakers + 1000):
        if len(chosen) == n_speakers:
            return list(chosen.values())
        rng = np.random.default_rng([seed, 4, k])
        voice = _random_voice(rng)
        rate, pitch, span = (int(rng.integers(a, b + 1)) for a, b in (_RATE, _PITCH, _INTONATION))
        tilt, takes = round(float(rng.uniform(*_TILT)), 2), 2 if rng.random() < _TWO_TAKES else 1
        combo = f"{voice}|rate={rate}|pitch={pitch}|range={span}|tilt={tilt:.2f}|takes={takes}"
        spk = _Speaker(hashlib.sha1(f"{combo}|seed={seed}".encode()).hexdigest()[:8],
                       voice, rate, pitch, span, tilt, takes)  # fmt: skip
        split = which_set(spk.id)
        if spk.id not in chosen and quota[split] > 0:
            quota[split] -= 1
            chosen[spk.id] = spk
    raise RuntimeError(f"could not draw {n_speakers} speakers")  # pragma: no cover


def _colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    shape = np.maximum(np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE), 20.0) ** (-exponent / 2.0)
    shape[0] = 0.0  # no DC
    x = np.fft.irfft(spec * shape, n)
    return x / np.sqrt(np.mean(x**2))


def _babble(rng: np.random.Generator, n: int) -> np.ndarray:
    """Eight synthetic talkers saying non-command words, overlapped."""
    out = np.zeros(n)
    with closing(_ESpeak()) as engine:
        for _ in range(8):
            voice = _random_voice(rng)
            rate, pitch = int(rng.integers(140, 221)), int(rng.integers(25, 76))
            pos = int(rng.integers(0, SAMPLE_RATE // 2))
            while pos < n:
                word = _BABBLE_WORDS[rng.integers(len(_BABBLE_WORDS))]
                w = _trim(_synth_16k(engine, word, voice, rate, pitch, 50))[: n - pos]
                out[pos : pos + w.size] += w * 10 ** (rng.uniform(-6.0, 0.0) / 20)
                pos += w.size + int(rng.integers(SAMPLE_RATE // 40, SAMPLE_RATE // 3))
    return out / np.sqrt(np.mean(out**2))


@functools.lru_cache(maxsize=2)
def _noises(seed: int, stream: int) -> dict[str, np.ndarray]:
    """Every noise kind, unit RMS. Stream 2 fills ``_background_noise_``, stream 1 is mixed into
    the clips, so noise augmentation never replays the noise already in a clip."""
    out = {}
    for i, kind in enumerate(_NOISE_KINDS):
        rng = np.random.default_rng([seed, stream, i])
        n = _NOISE_SECONDS * SAMPLE_RATE
        out[kind] = _babble(rng, n) if kind == "babble" else _colored_noise(rng, n, i)
        out[kind].flags.writeable = False
    return out


def _render_clip(
    engine: _ESpeak, word: str, spk: _Speaker, take: int, seed: int, bank: dict[str, np.ndarray]
) -> np.ndarray:
    """One 1-s int16 clip; its random stream depends only on (seed, speaker, word, take)."""
    word_key = zlib.crc32(word.encode("utf-8"))
    rng = np.random.default_rng([seed, 3, int(spk.id, 16), word_key, take])
    jitter = 0.08 if take else 0.03  # a second take varies a little more
    rate = int(round(spk.rate * (1.0 + rng.uniform(-jitter, jitter))))
    pitch = int(np.clip(spk.pitch + rng.integers(-3, 4) * (2 if take else 1), 0, 100))
    x = _trim(_synth_16k(engine, word, spk.voice, rate, pitch, spk.pitch_range))
    while x.size > _MAX_WORD and rate < 400:  # too slow to fit: speak faster
        rate = min(450, int(rate * 1.15) + 1)
        x = _trim(_synth_16k(engine, word, spk.voice, rate, pitch, spk.pitch_range))
    if x.size > _MAX_WORD:  # not expected with the default ranges: keep the word, fade out the tail
        x = x[:_MAX_WORD].copy()
        x[-320:] *= np.linspace(1.0, 0.0, 320)
    if x.size == 0 or not np.any(x):
        raise RuntimeError(f"eSpeak NG produced no sound for {word!r} with {spk.voice}")
    x = lfilter([1.0, spk.tilt], [1.0], x)  # the speaker's "microphone"
    x *= 10 ** (rng.uniform(*_PEAK_DBFS) / 20) / np.max(np.abs(x))
    clip = np.zeros(CLIP_SAMPLES)
    offset = int(rng.integers(0, CLIP_SAMPLES - x.size + 1))
    clip[offset : offset + x.size] = x
    noise = bank[_NOISE_KINDS[rng.integers(len(_NOISE_KINDS))]]
    start = int(rng.integers(0, noise.size - CLIP_SAMPLES + 1))
    gain = np.sqrt(float(np.mean(x**2)) / 10 ** (rng.uniform(*_SNR_DB) / 10))
    clip += noise[start : start + CLIP_SAMPLES] * gain
    return _to_int16(clip)


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def _write_wav(path: Path, x: np.ndarray) -> None:
    buf = io.BytesIO()  # in memory: writing to a path makes libsndfile fsync (~4 ms a file)
    sf.write(buf, x, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    path.write_bytes(buf.getvalue())


def _read_marker(root: Path) -> dict:
    try:
        return json.loads((root / _MARKER).read_text())
    except (OSError, ValueError):
        return {}


def _build(tmp: Path, params: dict, speakers: list[_Speaker], progress: bool) -> int:
    """Write every file of the demo set into ``tmp``; returns the number of clips."""
    seed, noise_dir = params["seed"], tmp / "_background_noise_"
    noise_dir.mkdir(parents=True)
    for kind, x in _noises(seed, 2).items():
        _write_wav(noise_dir / f"{kind}.wav", _to_int16(x * 10 ** (_NOISE_RMS_DBFS / 20)))
    bank = _noises(seed, 1)  # other samples than the files the course augments with
    total = len(params["words"]) * sum(s.takes for s in speakers)
    with tqdm(total=total, desc="demo clips", unit="clip", disable=not progress) as bar:
        for word in params["words"]:
            (tmp / word).mkdir()
            with closing(_ESpeak()) as engine:  # fresh per word: clips never depend on others
                for spk, take in ((s, t) for s in speakers for t in range(s.takes)):
                    audio = _render_clip(engine, word, spk, take, seed, bank)
                    _write_wav(tmp / word / f"{spk.id}_nohash_{take}.wav", audio)
                    bar.update()
    return total


def _swap_in(tmp: Path, root: Path, params: dict) -> None:
    """Rename ``tmp`` to ``root``, replacing an older demo set (never another folder)."""
    old = root.parent / f".{root.name}.old-{os.getpid()}-{threading.get_ident()}"
    if root.exists():
        if _read_marker(root).get("params") == params:
            return  # another process built the same set meanwhile: keep it
        os.replace(root, old)
    try:
        os.replace(tmp, root)
    except OSError:  # another process finished first: fine if it is what we were asked for
        if _read_marker(root).get("params") != params:
            raise
    shutil.rmtree(old, ignore_errors=True)


def make_demo_dataset(
    root: str | Path | None = None, *, n_speakers: int = 80, words: Sequence[str] = WORDS_V2,
    seed: int = 0, progress: bool = True,
) -> Path:
    """Build (or find) the SYNTHETIC eSpeak NG demo set in the Speech Commands layout (notebook 01).

    Writes ``<word>/<speaker>_nohash_<n>.wav`` (16 kHz int16, 1 s), ``_background_noise_/``,
    ``README.md`` and a ``.complete`` marker (no split lists: the loader splits by speaker hash)
    into ``root`` (default ``data_dir() / "speech_commands_demo"``). The same arguments return
    at once, others rebuild; a folder that is not a demo set raises ``FileExistsError``.
    """
    words = list(words)
    if n_speakers < 1 or not words or len(set(words)) != len(words):
        raise ValueError("need n_speakers >= 1 and a non-empty list of words without repeats")
    if not all(w.isascii() and w.isalpha() and w.islower() for w in words):
        raise ValueError(f"words must be lowercase a-z (they name folders): {words}")
    root = Path(root or data_dir() / "speech_commands_demo").expanduser()
    params = {"n_speakers": int(n_speakers), "words": words, "seed": int(seed), "version": _VERSION}
    marker = _read_marker(root)
    ours = marker.get("generator") == _GENERATOR
    if ours and marker.get("params") == params:
        return root
    if root.exists() and not ours and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} is not a demo set made by {_GENERATOR}: choose another root")
    speakers, version = _draw_speakers(n_speakers, seed), _espeak_setup()[2]
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        n_clips = _build(tmp, params, speakers, progress)
        (tmp / "README.md").write_text(_README.format(n_clips, version, params))
        info = {"generator": _GENERATOR, "synthetic": True, "params": params,
                "clips": n_clips, "espeak_ng": version}  # fmt: skip
        (tmp / _MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        _swap_in(tmp, root, params)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        print(f"demo dataset (SYNTHETIC, eSpeak NG): {n_clips} clips -> {root}")
    return root
