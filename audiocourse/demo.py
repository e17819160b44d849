"""The offline demo dataset: SYNTHETIC spoken words from eSpeak NG in the Speech Commands layout.

The real Speech Commands set needs a download; this module makes a small stand-in on any machine,
with the same folder layout, file naming, split lists and ``_background_noise_`` folder, so one
loader serves both (notebook 01).

eSpeak NG (the ``espeakng-loader`` wheel ships the library and its data) is called through
``ctypes``. Every "speaker" is an English accent + voice variant + speaking rate + pitch + pitch
range + a fixed microphone-like spectral tilt; every clip is resampled to 16 kHz, trimmed, given a
random gain and offset inside one second, and mixed with synthetic background noise at a random SNR.
The output is deterministic: the same arguments give byte-identical files (for one eSpeak NG build).
"""

from __future__ import annotations

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
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import firwin, lfilter, resample_poly

from audiocourse.data import CLIP_SAMPLES, SAMPLE_RATE, WORDS_V2, which_set

# WORDS_V2 (the 35 words of Speech Commands v0.02) lives in data.py; re-exported here as the
# default vocabulary of the demo set.
__all__ = ["WORDS_V2", "make_demo_dataset", "synthesize_word"]

#: Bump when the generator changes in a way that changes the audio: old folders are rebuilt.
DEMO_VERSION = 2

# English voices (accents) of eSpeak NG. en-shaw (Shavian script) is left out on purpose.
_VOICES = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# Human-sounding voice variants (files in espeak-ng-data/voices/!v); robots, croaks and
# whispers are left out. Only the ones present in the installed data are used.
_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4",
    "adam", "Andy", "Annie", "aunty", "belinda", "benjamin", "david", "ed", "edward",
    "grandma", "grandpa", "john", "linda", "max", "paul", "quincy", "steph", "travis", "victor",
)  # fmt: skip
# Words for the babble noise: deliberately NOT in WORDS_V2, so babble never says a label.
_BABBLE_WORDS = (
    "the", "and", "water", "morning", "people", "because", "number", "little", "about",
    "coffee", "table", "window", "yesterday", "maybe", "really", "thing", "then", "after",
    "never", "always", "computer", "garden", "music", "paper", "station", "summer", "winter",
    "question", "answer", "kitchen", "brother", "sister", "doctor", "market", "picture",
)  # fmt: skip

_RATE_RANGE = (120, 220)  # words per minute
_PITCH_RANGE = (25, 75)  # eSpeak pitch parameter, 0-100 (50 = the variant's own pitch)
_INTONATION_RANGE = (20, 80)  # eSpeak pitch-range parameter, 0-100
_TILT_RANGE = (-0.6, 0.6)  # first-order FIR [1, tilt]: > 0 darker, < 0 brighter "microphone"
_TWO_TAKES_FRACTION = 0.2  # share of speakers who said every word twice (_nohash_0 and _1)
_SNR_DB = (5.0, 40.0)  # word-to-noise power ratio of each clip
_PEAK_DBFS = (-24.0, -3.0)  # peak level of the word before the noise is added
_MAX_WORD_SAMPLES = int(0.95 * SAMPLE_RATE)  # a word must fit in 0.95 s of the 1-s clip
_NOISE_SECONDS = 20  # length of each _background_noise_ file
_NOISE_RMS_DBFS = -20.0  # level of the _background_noise_ files
_NOISE_KINDS = ("white_noise", "pink_noise", "brown_noise", "hum_and_fan", "babble")
_MARKER = ".complete"
_GENERATOR = "audiocourse.demo"  # recorded in the marker: only such folders are ever replaced

# espeak-ng's speak_lib.h (API revision 12)
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: PLAYBACK=0, RETRIEVAL=1, SYNCHRONOUS=2
_POS_CHARACTER = 1  # espeak_POSITION_TYPE
_ESPEAK_CHARS_UTF8 = 1  # espeakCHARS_AUTO=0, UTF8=1
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4  # espeak_PARAMETER
_EE_OK = 0


class _ESpeak:
    """A private, freshly loaded instance of libespeak-ng (use it as a context manager).

    eSpeak NG keeps synthesis state in C statics (pitch-flutter phase, gain control, ...), so the
    same call gives slightly different samples depending on what the library said before. Each
    ``_ESpeak`` loads its own copy of the library file, which gives pristine statics: a fixed
    sequence of calls on a fresh instance is byte-identical whatever the process did before.
    Loading costs about 4 ms, so the builder uses one instance per word, not per clip.
    """

    def __init__(self) -> None:
        src, self.data_path = _espeak_paths()
        self._file: Path | None = _private_copy(src)
        try:
            lib = ctypes.CDLL(str(self._file))
        except OSError:  # e.g. a noexec temp dir: share the installed file (still unloaded after)
            self._file.unlink(missing_ok=True)
            self._file = None
            lib = ctypes.CDLL(str(src))
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,  # text
            ctypes.c_size_t,  # size
            ctypes.c_uint,  # position
            ctypes.c_int,  # position_type
            ctypes.c_uint,  # end_position
            ctypes.c_uint,  # flags
            ctypes.c_void_p,  # unique_identifier
            ctypes.c_void_p,  # user_data
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)  # espeak-ng >= 1.51
        if self._set_seed is not None:
            self._set_seed.argtypes = [ctypes.c_long]
        self.lib = lib
        self.sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), 0
        )
        if self.sample_rate <= 0:
            self.close()
            raise RuntimeError(f"espeak_Initialize failed (data path {self.data_path})")
        self.version = (lib.espeak_Info(None) or b"?").decode()
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
        )
        self._callback = callback_type(self._on_audio)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def __enter__(self) -> _ESpeak:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free eSpeak's memory, unload this instance and delete its private file."""
        lib, self.lib = self.lib, None
        if lib is None:
            return
        lib.espeak_Terminate()
        import _ctypes

        unload = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
        if unload is not None:
            unload(lib._handle)
        if self._file is not None:
            try:
                self._file.unlink()
            except OSError:  # pragma: no cover - Windows keeps a file that is still mapped
                pass

    def _on_audio(self, wav: ctypes.Array, n: int, _events: int) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = continue synthesis

    def voice_exists(self, voice: str) -> bool:
        """True when eSpeak knows the accent and the ``+variant`` file exists."""
        if voice not in _VOICE_OK:
            base, _, variant = voice.partition("+")
            ok = not variant or (self.data_path / "voices" / "!v" / variant).is_file()
            _VOICE_OK[voice] = ok and self.lib.espeak_SetVoiceByName(base.encode()) == _EE_OK
        return _VOICE_OK[voice]

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> np.ndarray:
        """int16 samples at ``self.sample_rate`` of ``text`` spoken with these settings."""
        if not self.voice_exists(voice):  # eSpeak itself silently ignores unknown variants
            raise ValueError(f"eSpeak NG has no voice {voice!r} (accent+variant)")
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise ValueError(f"eSpeak NG could not load voice {voice!r}")
        # parameters after the voice: selecting a voice resets them
        self.lib.espeak_SetParameter(_ESPEAK_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(_ESPEAK_VOLUME, 100, 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
        self.lib.espeak_SetParameter(_ESPEAK_RANGE, int(pitch_range), 0)
        if self._set_seed is not None:
            self._set_seed(1)  # eSpeak's own noise generator
        if _LIBC is not None:
            _LIBC.srand(1)  # the C library's generator, back at its default seed
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(
            data, len(data), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        self.lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        if err != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with code {err} for {text!r}")
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None) if os.name == "posix" else None
    except OSError:  # pragma: no cover
        return None


_LIBC = _load_libc()
_VOICE_OK: dict[str, bool] = {}  # voice -> usable, filled on first use
_COPY_LOCK = threading.Lock()
_COPY_COUNTER = itertools.count()
_COPY_DIR: Path | None = None


def _espeak_paths() -> tuple[Path, Path]:
    """(library file, espeak-ng-data folder) of the ``espeakng-loader`` wheel."""
    try:
        import espeakng_loader
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("The demo dataset needs eSpeak NG: pip install espeakng-loader") from exc
    return Path(espeakng_loader.get_library_path()), Path(espeakng_loader.get_data_path())


def _private_copy(src: Path) -> Path:
    """A new file holding the library: the dynamic loader treats it as a separate library."""
    global _COPY_DIR
    with _COPY_LOCK:
        if _COPY_DIR is None or not _COPY_DIR.is_dir():
            _COPY_DIR = Path(tempfile.mkdtemp(prefix="audiocourse-espeak-"))
            atexit.register(shutil.rmtree, _COPY_DIR, True)
        dst = _COPY_DIR / f"{next(_COPY_COUNTER)}-{src.name}"
    shutil.copyfile(src, dst)
    return dst


def _trim(x: np.ndarray, rel_db: float = -40.0, margin: int = 160) -> np.ndarray:
    """Cut leading/trailing samples quieter than ``rel_db`` below the peak (10 ms margin kept)."""
    if x.size == 0:
        return x
    peak = float(np.max(np.abs(x)))
    if peak == 0.0:
        return x[:0]
    loud = np.flatnonzero(np.abs(x) > peak * 10 ** (rel_db / 20))
    return x[max(0, loud[0] - margin) : min(x.size, loud[-1] + margin + 1)]


def _synth_16k(
    engine: _ESpeak, word: str, voice: str, rate: int, pitch: int, pitch_range: int
) -> np.ndarray:
    raw = engine.synth(word, voice, rate, pitch, pitch_range).astype(np.float64) / 32768.0
    if engine.sample_rate != 22050:  # pragma: no cover - every espeak-ng build says 22050
        g = math.gcd(SAMPLE_RATE, engine.sample_rate)
        return resample_poly(raw, SAMPLE_RATE // g, engine.sample_rate // g)
    # 22050 Hz -> 16000 Hz: resample_poly(raw, 320, 441) with its default filter, designed once
    return resample_poly(raw, 320, 441, window=_resample_filter())


@functools.lru_cache(maxsize=1)
def _resample_filter() -> np.ndarray:
    """The FIR low-pass ``resample_poly(x, 320, 441)`` designs on every call (same numbers)."""
    return firwin(2 * 10 * 441 + 1, 1.0 / 441, window=("kaiser", 5.0))


def synthesize_word(
    word: str,
    voice: str = "en-us",
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    trim: bool = True,
) -> np.ndarray:
    """Speak ``word`` with eSpeak NG: float32 mono at 16 kHz in [-1, 1] (notebook 01).

    ``voice`` is an English accent (``"en"``, ``"en-us"``, ``"en-gb-scotland"``, ...) optionally
    with a variant (``"en-us+f2"``, ``"en+klatt"``); ``rate`` is in words per minute (80-450),
    ``pitch`` and ``pitch_range`` are eSpeak's 0-100 settings. ``trim`` cuts the silence around
    the word. The same arguments always give the same samples. This is synthetic speech, not a
    human recording.
    """
    with _ESpeak() as engine:
        x = _synth_16k(engine, word, voice, rate, pitch, pitch_range)
    return (_trim(x) if trim else x).astype(np.float32)


# ----------------------------------------------------------------------------------- speakers


@dataclass(frozen=True)
class _Speaker:
    id: str
    voice: str  # "accent+variant"
    rate: int
    pitch: int
    pitch_range: int
    tilt: float
    takes: int


@functools.lru_cache(maxsize=1)
def _espeak_setup() -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(English accents, voice variants, eSpeak NG version) of this installation."""
    with _ESpeak() as engine:
        accents = tuple(v for v in _VOICES if engine.voice_exists(v))
        variants = tuple(v for v in _VARIANTS if engine.voice_exists(f"en+{v}"))
        version = engine.version
    if not accents or not variants:
        raise RuntimeError(f"no usable English voices in {engine.data_path}")
    return accents, variants, version


def _candidate(seed: int, k: int, accents: Sequence[str], variants: Sequence[str]) -> _Speaker:
    rng = np.random.default_rng([seed, 4, k])
    voice = f"{accents[rng.integers(len(accents))]}+{variants[rng.integers(len(variants))]}"
    rate = int(rng.integers(_RATE_RANGE[0], _RATE_RANGE[1] + 1))
    pitch = int(rng.integers(_PITCH_RANGE[0], _PITCH_RANGE[1] + 1))
    pitch_range = int(rng.integers(_INTONATION_RANGE[0], _INTONATION_RANGE[1] + 1))
    tilt = round(float(rng.uniform(*_TILT_RANGE)), 2)
    takes = 2 if rng.random() < _TWO_TAKES_FRACTION else 1
    combo = (
        f"{voice}|rate={rate}|pitch={pitch}|range={pitch_range}|tilt={tilt:.2f}"
        f"|takes={takes}|seed={seed}"
    )
    spk = hashlib.sha1(combo.encode()).hexdigest()[:8]
    return _Speaker(spk, voice, rate, pitch, pitch_range, tilt, takes)


def _split_quotas(n_speakers: int) -> dict[str, int]:
    """Speakers per split: 10 % validation and 10 % test (at least one each from 3 speakers)."""
    n_eval = max(1, round(0.1 * n_speakers)) if n_speakers >= 3 else 0
    return {"train": n_speakers - 2 * n_eval, "validation": n_eval, "test": n_eval}


def _draw_speakers(n_speakers: int, seed: int) -> list[_Speaker]:
    """Draw speaker candidates in a fixed order, keeping each only while its split (by
    ``which_set``) still needs speakers, so the splits have exact, reasonable sizes."""
    accents, variants, _ = _espeak_setup()
    quota = _split_quotas(n_speakers)
    chosen: list[_Speaker] = []
    seen: set[str] = set()
    for k in range(100 * n_speakers + 1000):
        if len(chosen) == n_speakers:
            break
        spk = _candidate(seed, k, accents, variants)
        split = which_set(spk.id)
        if spk.id in seen or quota[split] == 0:
            continue
        seen.add(spk.id)
        quota[split] -= 1
        chosen.append(spk)
    if len(chosen) != n_speakers:  # pragma: no cover - needs astronomically bad luck
        raise RuntimeError(f"could not draw {n_speakers} speakers")
    return chosen


# ------------------------------------------------------------------------------------ noises


def _colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    shape = np.maximum(f, 20.0) ** (-exponent / 2.0)
    shape[0] = 0.0  # no DC
    x = np.fft.irfft(spec * shape, n)
    return x / np.sqrt(np.mean(x**2))


def _hum_and_fan(rng: np.random.Generator, n: int) -> np.ndarray:
    """50 Hz mains hum with harmonics over a low, slowly throbbing fan rumble."""
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(
        rng.uniform(0.3, 1.0)
        / k**1.2
        * np.sin(2 * np.pi * 50.0 * k * t + rng.uniform(0, 2 * np.pi))
        for k in range(1, 9)
    )
    blade_hz = rng.uniform(5.0, 12.0)
    fan = _colored_noise(rng, n, 1.5) * (1.0 + 0.3 * np.sin(2 * np.pi * blade_hz * t))
    hum = hum / np.sqrt(np.mean(hum**2))
    x = 0.6 * hum + fan
    return x / np.sqrt(np.mean(x**2))


def _babble(rng: np.random.Generator, n: int) -> np.ndarray:
    """Eight synthetic talkers saying non-command words, overlapped."""
    accents, variants, _ = _espeak_setup()
    out = np.zeros(n)
    with _ESpeak() as engine:
        for _ in range(8):
            voice = f"{accents[rng.integers(len(accents))]}+{variants[rng.integers(len(variants))]}"
            rate, pitch = int(rng.integers(140, 221)), int(rng.integers(25, 76))
            pos = int(rng.integers(0, SAMPLE_RATE // 2))
            while pos < n:
                word = _BABBLE_WORDS[rng.integers(len(_BABBLE_WORDS))]
                w = _trim(_synth_16k(engine, word, voice, rate, pitch, 50))[: n - pos]
                out[pos : pos + w.size] += w * 10 ** (rng.uniform(-6.0, 0.0) / 20)
                pos += w.size + int(rng.integers(SAMPLE_RATE // 40, SAMPLE_RATE // 3))
    return out / np.sqrt(np.mean(out**2))


def _make_noise(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` samples of unit-RMS noise of one of ``_NOISE_KINDS``."""
    if kind == "white_noise":
        return _colored_noise(rng, n, 0.0)
    if kind == "pink_noise":
        return _colored_noise(rng, n, 1.0)
    if kind == "brown_noise":
        return _colored_noise(rng, n, 2.0)
    if kind == "hum_and_fan":
        return _hum_and_fan(rng, n)
    if kind == "babble":
        return _babble(rng, n)
    raise ValueError(f"unknown noise kind {kind!r}")


@functools.lru_cache(maxsize=2)
def _noises(seed: int, stream: int) -> dict[str, np.ndarray]:
    """All noise kinds, ``_NOISE_SECONDS`` long, unit RMS (cached: babble takes ~0.5 s).

    Stream 2 goes into ``_background_noise_``; stream 1 is mixed into the clips, so the course's
    noise augmentation never replays the exact noise that is already in a clip.
    """
    out = {}
    for i, kind in enumerate(_NOISE_KINDS):
        x = _make_noise(
            kind, np.random.default_rng([seed, stream, i]), _NOISE_SECONDS * SAMPLE_RATE
        )
        x.flags.writeable = False
        out[kind] = x
    return out


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


# -------------------------------------------------------------------------------------- clips


def _word_key(word: str) -> int:
    return zlib.crc32(word.encode("utf-8"))


def _render_clip(
    engine: _ESpeak,
    word: str,
    spk: _Speaker,
    take: int,
    seed: int,
    noise_bank: dict[str, np.ndarray],
) -> tuple[np.ndarray, bool]:
    """One 1-s int16 clip; its random stream depends only on (seed, speaker, word, take)."""
    rng = np.random.default_rng([seed, 3, int(spk.id, 16), _word_key(word), take])
    jitter = 0.08 if take else 0.03  # a second take varies a little more
    rate = int(round(spk.rate * (1.0 + rng.uniform(-jitter, jitter))))
    pitch = int(np.clip(spk.pitch + rng.integers(-3, 4) * (2 if take else 1), 0, 100))
    x = _trim(_synth_16k(engine, word, spk.voice, rate, pitch, spk.pitch_range))
    while x.size > _MAX_WORD_SAMPLES and rate < 400:  # too slow to fit: speak faster
        rate = min(450, int(rate * 1.15) + 1)
        x = _trim(_synth_16k(engine, word, spk.voice, rate, pitch, spk.pitch_range))
    cropped = x.size > _MAX_WORD_SAMPLES
    if cropped:  # never expected with the default ranges; keep the word, fade out the tail
        x = x[:_MAX_WORD_SAMPLES].copy()
        x[-320:] *= np.linspace(1.0, 0.0, 320)
    if x.size == 0 or not np.any(x):
        raise RuntimeError(f"eSpeak NG produced no sound for {word!r} with {spk.voice}")
    x = lfilter([1.0, spk.tilt], [1.0], x)  # the speaker's "microphone"
    x *= 10 ** (rng.uniform(*_PEAK_DBFS) / 20) / np.max(np.abs(x))
    clip = np.zeros(CLIP_SAMPLES)
    offset = int(rng.integers(0, CLIP_SAMPLES - x.size + 1))
    clip[offset : offset + x.size] = x
    kind = _NOISE_KINDS[rng.integers(len(_NOISE_KINDS))]
    bank = noise_bank[kind]
    start = int(rng.integers(0, bank.size - CLIP_SAMPLES + 1))
    word_power = float(np.mean(x**2))
    snr_db = rng.uniform(*_SNR_DB)
    clip += bank[start : start + CLIP_SAMPLES] * np.sqrt(word_power / 10 ** (snr_db / 10))
    return _to_int16(clip), cropped


# ------------------------------------------------------------------------------------ builder


def _write_wav(path: Path, x: np.ndarray) -> None:
    # encode in memory: writing to a path makes libsndfile fsync every file (~4 ms each)
    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    path.write_bytes(buf.getvalue())


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / _MARKER).read_text())
    except (OSError, ValueError):
        return None


def _readme(params: dict, counts: dict, speakers: list[_Speaker], version: str) -> str:
    n_words = len(params["words"])
    rows = "\n".join(
        f"| {s.id} | {which_set(s.id)} | {s.voice} | {s.rate} | {s.pitch} | {s.pitch_range} "
        f"| {s.tilt:+.2f} | {s.takes} |"
        for s in sorted(speakers, key=lambda s: s.id)
    )
    split_lines = "\n".join(
        f"  - {split}: {counts['speakers'][split]} speaker(s), {counts['clips'][split]} clips"
        for split in ("train", "validation", "test")
    )
    call = 'make_demo_dataset("<this folder>"'
    call += f", n_speakers={params['n_speakers']}, seed={params['seed']}"
    if list(params["words"]) != list(WORDS_V2):
        call += f", words={params['words']!r}"
    call += ")"
    return f"""# SYNTHETIC Speech Commands demo set -- NOT HUMAN RECORDINGS

**Every clip in this folder is SYNTHETIC speech generated by the eSpeak NG text-to-speech engine
({version}).** No person recorded any of it. It imitates the layout of Google's Speech Commands
dataset (v0.02) so that the course code runs without a download, but models trained on it learn
robotic, formant-synthesised voices: accuracy here says little about real speech. Use the real
dataset (`speech_commands_v0.02`) for any claim about real-world performance.

## What is in it

- {counts["total_clips"]} clips: {n_words} words x {params["n_speakers"]} synthetic "speakers"
  ({counts["two_take_speakers"]} of the speakers said every word twice: `_nohash_0` and
  `_nohash_1`).
- Words: {", ".join(params["words"])}
- Layout: `<word>/<speaker>_nohash_<n>.wav`, 16 kHz, mono, 16-bit PCM, exactly 1 s each.
- `validation_list.txt`, `testing_list.txt`: the split lists, assigned with the dataset's own
  SHA-1 rule on the speaker id (`audiocourse.data.which_set`), so no speaker is in two splits.
  Speakers were drawn until each split had its share (10 % validation, 10 % test):
{split_lines}
- `_background_noise_/`: synthetic noises, {_NOISE_SECONDS} s each at {_NOISE_RMS_DBFS:.0f} dBFS
  RMS: {", ".join(k + ".wav" for k in _NOISE_KINDS)}.
  The babble uses words that are not commands. The noise mixed into the clips comes from the
  same generators with another seed.

## How it was made

A speaker is an English eSpeak NG accent + voice variant (`accent+variant`), a speaking rate
({_RATE_RANGE[0]}-{_RATE_RANGE[1]} words/min), pitch ({_PITCH_RANGE[0]}-{_PITCH_RANGE[1]}) and pitch
range ({_INTONATION_RANGE[0]}-{_INTONATION_RANGE[1]}) on eSpeak's 0-100 scales, and a fixed
first-order "microphone" tilt filter `[1, tilt]`. Its id is the first 8 hex digits of the SHA-1
of these settings and the seed. For each clip the word is synthesised at 22,050 Hz (rate and
pitch jittered a little per clip), resampled to 16 kHz (`scipy.signal.resample_poly(x, 320, 441)`),
trimmed, filtered, scaled to a peak of {_PEAK_DBFS[0]:.0f} to {_PEAK_DBFS[1]:.0f} dBFS, placed at a
random offset in a 1-s clip and mixed with one of the noises at a random SNR of
{_SNR_DB[0]:.0f}-{_SNR_DB[1]:.0f} dB. Words longer than 0.95 s are re-spoken faster
({counts["cropped"]} clips still had to be cropped).

Parameters: seed={params["seed"]}, n_speakers={params["n_speakers"]}, words as listed above,
generator version {params["version"]}. The same parameters give byte-identical files with the
same eSpeak NG build.

## Regenerate

```python
from audiocourse.demo import make_demo_dataset
{call}
```

## Speakers

| speaker | split | voice | rate | pitch | range | tilt | takes |
|---|---|---|---|---|---|---|---|
{rows}
"""


def make_demo_dataset(
    root: str | Path | None = None,
    *,
    n_speakers: int = 80,
    words: Sequence[str] = WORDS_V2,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Build (or find) the SYNTHETIC eSpeak NG demo set in the Speech Commands layout (notebook 01).

    Writes ``<root>/<word>/<speaker>_nohash_<n>.wav`` (16 kHz mono int16, 1 s),
    ``validation_list.txt``, ``testing_list.txt``, ``_background_noise_/*.wav``, a ``README.md``
    and a ``.complete`` marker. ``root`` defaults to ``data_dir() / "speech_commands_demo"``.
    A folder whose marker matches the arguments is returned at once; one built with other
    arguments is replaced (the new set is built beside it and renamed into place). A folder
    that is not a demo set is never touched: that raises ``FileExistsError``.
    Same arguments, same eSpeak NG build -> byte-identical files.
    """
    from tqdm import tqdm

    words = list(words)
    if n_speakers < 1:
        raise ValueError(f"n_speakers must be >= 1, got {n_speakers}")
    if not words or len(set(words)) != len(words):
        raise ValueError("words must be a non-empty list without repeats")
    for w in words:
        if not (w.isascii() and w.isalpha() and w.islower()):
            raise ValueError(f"word {w!r} is not a lowercase a-z word (it names a folder)")
    if root is None:
        from audiocourse.env import data_dir  # imports torch: only when the default is needed

        root = data_dir() / "speech_commands_demo"
    root = Path(root).expanduser()
    params = {"n_speakers": int(n_speakers), "words": words, "seed": int(seed)}
    params["version"] = DEMO_VERSION

    marker = _read_marker(root)
    ours = marker is not None and marker.get("generator") == _GENERATOR
    if ours and marker.get("params") == params:
        if progress:
            print(f"demo dataset up to date: {root}")
        return root
    if root.exists() and not ours and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"{root} exists and is not a demo dataset made by {_GENERATOR}; "
            "remove it or choose another root"
        )

    t0 = time.perf_counter()
    espeak_version = _espeak_setup()[2]
    speakers = _draw_speakers(n_speakers, seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{threading.get_ident()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        noise_dir = tmp / "_background_noise_"
        noise_dir.mkdir()
        for kind, x in _noises(seed, 2).items():
            _write_wav(noise_dir / f"{kind}.wav", _to_int16(x * 10 ** (_NOISE_RMS_DBFS / 20)))
        noise_bank = _noises(seed, 1)  # other samples than the files the course augments with
        (noise_dir / "README.md").write_text(
            "SYNTHETIC background noises for the eSpeak NG demo set (see ../README.md): "
            "white, pink (1/f), brown (1/f^2), 50 Hz mains hum over fan rumble, and babble of "
            "eight synthetic talkers saying non-command words. 16 kHz mono 16-bit PCM.\n"
        )

        split_of = {s.id: which_set(s.id) for s in speakers}
        lists: dict[str, list[str]] = {"validation": [], "test": []}
        clips = {"train": 0, "validation": 0, "test": 0}
        n_cropped = 0
        total = len(words) * sum(s.takes for s in speakers)
        with tqdm(total=total, desc="demo clips", unit="clip", disable=not progress) as bar:
            for word in words:
                (tmp / word).mkdir()
                # a fresh eSpeak instance per word: a word's clips do not depend on other words
                with _ESpeak() as engine:
                    for spk in speakers:
                        for take in range(spk.takes):
                            audio, cropped = _render_clip(engine, word, spk, take, seed, noise_bank)
                            name = f"{spk.id}_nohash_{take}.wav"
                            _write_wav(tmp / word / name, audio)
                            n_cropped += cropped
                            split = split_of[spk.id]
                            clips[split] += 1
                            if split in lists:
                                lists[split].append(f"{word}/{name}")
                            bar.update()
        for split, fname in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
            (tmp / fname).write_text("".join(line + "\n" for line in sorted(lists[split])))

        counts = {
            "total_clips": total,
            "clips": clips,
            "speakers": {k: sum(v == k for v in split_of.values()) for k in clips},
            "two_take_speakers": sum(s.takes == 2 for s in speakers),
            "cropped": n_cropped,
        }
        (tmp / "README.md").write_text(_readme(params, counts, speakers, espeak_version))
        info = {
            "generator": _GENERATOR,
            "synthetic": True,
            "params": params,
            "counts": counts,
            "espeak_ng": espeak_version,
        }
        (tmp / _MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")

        theirs = _read_marker(root) or {}
        if theirs.get("generator") == _GENERATOR and theirs.get("params") == params:
            return root  # another process built the same set meanwhile: keep it (ours is dropped)
        old = None
        if root.exists():  # a demo set with other parameters (checked above): swap it out
            old = root.parent / f".{root.name}.old-{os.getpid()}-{threading.get_ident()}"
            os.replace(root, old)
        try:
            os.replace(tmp, root)
        except OSError:
            # another process finished first: keep its set if it is what we were asked for
            theirs = _read_marker(root) or {}
            if theirs.get("generator") != _GENERATOR or theirs.get("params") != params:
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

    if progress:
        seconds = time.perf_counter() - t0
        print(
            f"demo dataset (SYNTHETIC, eSpeak NG): {total} clips, {len(words)} words, "
            f"{n_speakers} speakers ({counts['speakers']['train']} train / "
            f"{counts['speakers']['validation']} validation / {counts['speakers']['test']} test) "
            f"in {seconds:.1f} s -> {root}"
        )
    return root
