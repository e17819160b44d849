"""Audio I/O, the dataset index, task views and cached int16 arrays (notebooks 01-05).

Everything reads audio with ``soundfile`` (libsndfile): ``torchaudio.load`` needs torchcodec and
FFmpeg since torchaudio 2.9, the most reported breakage of audio tutorials.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from .download import DATASETS, download_dataset
from .env import data_dir, use_drive

__all__ = [
    "SAMPLE_RATE",
    "CLIP_SAMPLES",
    "WORDS_V2",
    "COMMANDS_10",
    "TASKS",
    "AudioError",
    "Clip",
    "SplitData",
    "load_audio",
    "resample",
    "fix_length",
    "speaker_of",
    "which_set",
    "build_index",
    "task_classes",
    "load_split",
    "load_task",
    "background_noise",
    "resolve_dataset",
]

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # from the Speech Commands README's split rule
COMMANDS_10 = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
WORDS_V2 = COMMANDS_10 + [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual",
]  # fmt: skip
UNKNOWN, SILENCE, NOISE_DIR = "_unknown_", "_silence_", "_background_noise_"
TASKS: dict[str, list[str]] = {
    "yesno": ["yes", "no"],
    "10": COMMANDS_10,
    "12": COMMANDS_10 + [UNKNOWN, SILENCE],
    "35": WORDS_V2,
}
SPLITS = ("train", "validation", "test")
_CACHE_VERSION = 1
_DECODE_CHUNK = 1000  # files per worker task; 4 chunks or more are decoded in parallel
_SPEAKER_RE = re.compile(r"(?:^|_)([0-9a-f]{8})_nohash_\d+", re.IGNORECASE)


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file (notebook 01)."""


# --------------------------------------------------------------------------- audio I/O (01)


def resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited (windowed-sinc) resampling along the last axis with torchaudio (notebook 01)."""
    if orig_sr == new_sr:
        return x
    import torch
    import torchaudio.functional as AF

    y = AF.resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), orig_sr, new_sr)
    return y.numpy()


def load_audio(
    path: str | Path, sample_rate: int | None = SAMPLE_RATE, mono: bool = True
) -> np.ndarray:
    """Read any file libsndfile understands as float32 in [-1, 1] (notebook 01).

    Stereo is downmixed (mean of channels) when ``mono``; another sample rate is resampled to
    ``sample_rate`` (``None`` keeps the file's rate). Corrupt, empty or non-audio files raise
    :class:`AudioError` naming the file. Returns shape ``(samples,)`` or ``(channels, samples)``.
    """
    path = Path(path)
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            x = f.read(dtype="float32", always_2d=True)  # (frames, channels)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        if not path.exists():
            raise AudioError(f"{path}: no such file") from e
        if path.stat().st_size == 0:
            raise AudioError(f"{path}: empty file (0 bytes)") from e
        raise AudioError(f"{path}: not readable as audio ({e})") from e
    if x.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    x = x.T  # (channels, frames)
    if mono:
        x = x.mean(axis=0)
    if sample_rate is not None and sr != sample_rate:
        x = resample(x, sr, sample_rate)
    return np.ascontiguousarray(x, dtype=np.float32)


def fix_length(x: np.ndarray, n: int = CLIP_SAMPLES) -> np.ndarray:
    """Zero-pad a short clip at the end; cut a long one to its loudest ``n`` samples (notebook 01).

    Keeping the loudest window (not the first second) keeps the word in a long recording.
    """
    if x.shape[-1] == n:
        return x
    if x.shape[-1] < n:
        pad = [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])]
        return np.pad(x, pad)
    energy = np.square(x.astype(np.float64)).reshape(-1, x.shape[-1]).sum(axis=0)
    csum = np.concatenate([[0.0], np.cumsum(energy)])
    start = int(np.argmax(csum[n:] - csum[:-n]))  # energy of every n-sample window, O(length)
    return x[..., start : start + n]


# ------------------------------------------------------------------- index and splits (01)


def speaker_of(path: str | Path) -> str:
    """Speaker id of a clip: the 8-hex hash in ``<spk>_nohash_<n>.wav`` (notebook 01).

    Test-set ``_unknown_`` files (``<word>_<spk>_nohash_<n>.wav.wav``) give the same id, so one
    speaker never lands in two splits. Files without a hash (``_silence_`` clips) are their own
    group.
    """
    name = Path(path).name
    m = _SPEAKER_RE.search(name)
    return m.group(1).lower() if m else name.split(".")[0]


def which_set(
    speaker: str, validation_pct: float = 10.0, testing_pct: float = 10.0, salt: str = ""
) -> str:
    """The dataset README's split rule: SHA-1 of the speaker id -> a split (notebook 01).

    Returns 'train', 'validation' or 'test'. Hashing the speaker (not the file) keeps all of a
    speaker's clips in one split, and a file keeps its split when the dataset grows. ``salt``
    re-draws the split (used for a folder that is itself one official split).
    """
    h = int(hashlib.sha1((salt + speaker).encode("utf-8")).hexdigest(), 16)
    pct = (h % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if pct < validation_pct:
        return "validation"
    if pct < validation_pct + testing_pct:
        return "test"
    return "train"


RESPLIT_SALT = "audio-course/"  # salt of the re-drawn speaker split, 65/15/20 %


@dataclass(frozen=True)
class Clip:
    """One indexed clip: absolute path, spoken word, speaker id and split (notebook 01)."""

    path: str
    word: str
    speaker: str
    split: str


def _read_list(path: Path) -> set[str]:
    return {ln.strip() for ln in path.read_text().splitlines() if ln.strip()}


def build_index(root: str | Path, assign: str = "auto") -> list[Clip]:
    """Index every clip under ``root`` (notebook 01).

    Works for the full dataset (official ``validation_list.txt`` / ``testing_list.txt``), the
    official test-set archive (``_unknown_`` / ``_silence_`` folders, ``.wav.wav`` names) and the
    demo set. ``assign``: 'auto' (the lists when present, else the speaker-hash rule), 'lists',
    'hash', or 'test' (every clip is a test clip: for evaluating on a held-out folder).
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    val_list, test_list = root / "validation_list.txt", root / "testing_list.txt"
    has_lists = val_list.exists() and test_list.exists()
    if assign == "lists" and not has_lists:
        raise FileNotFoundError(f"{root}: no validation_list.txt / testing_list.txt")
    use_lists = assign == "lists" or (assign == "auto" and has_lists)
    val, test = (_read_list(val_list), _read_list(test_list)) if use_lists else (set(), set())

    clips: list[Clip] = []
    for folder in sorted(os.scandir(root), key=lambda e: e.name):
        if not folder.is_dir() or folder.name.startswith(".") or folder.name == NOISE_DIR:
            continue
        for entry in sorted(os.scandir(folder.path), key=lambda e: e.name):
            if not entry.name.lower().endswith(".wav") or not entry.is_file():
                continue
            word = folder.name
            if word == UNKNOWN:  # '<word>_<speaker>_nohash_<n>.wav.wav'
                word = entry.name.split("_")[0]
            speaker = speaker_of(entry.name)
            if assign == "test":
                split = "test"
            elif use_lists:
                rel = f"{folder.name}/{entry.name}"
                split = "validation" if rel in val else "test" if rel in test else "train"
            else:
                split = which_set(speaker)
            clips.append(Clip(entry.path, word, speaker, split))
    if not clips:
        raise FileNotFoundError(f"{root}: no .wav clips found in word folders")
    if assign in ("auto", "hash") and not use_lists:
        # A folder cut from ONE official split (e.g. the official test-set archive) has almost
        # all speakers in one hash bucket. Re-draw a speaker-disjoint split (65/15/20 % of the
        # speakers) with a salted hash: still by speaker, deterministic, usable for training.
        top = max(sum(c.split == s for c in clips) for s in SPLITS)
        if top > 0.9 * len(clips):
            clips = [
                Clip(c.path, c.word, c.speaker, which_set(c.speaker, 15, 20, RESPLIT_SALT))
                for c in clips
            ]
    return clips


def task_classes(task: str, words_present: set[str] | None = None) -> list[str]:
    """Class names of a task: 'yesno', '10', '12' (10 + unknown + silence), '35' (notebook 03)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {sorted(TASKS)}")
    classes = TASKS[task]
    if task == "35" and words_present is not None:
        classes = [w for w in classes if w in words_present]  # v0.01 has only 30 of them
    return list(classes)


# ------------------------------------------------------------- decoding and caching (01-05)


@dataclass
class SplitData:
    """One split of a task as arrays: int16 audio ``(N, 16000)`` and int64 labels (notebook 03)."""

    audio: np.ndarray
    labels: np.ndarray
    classes: list[str]
    paths: list[str]
    speakers: list[str]
    split: str
    errors: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Clips per class."""
        n = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, n, strict=True)}


def _decode_one(path: str) -> tuple[np.ndarray | None, str | None]:
    """Decode one clip to int16 (16000,), or return the error message."""
    try:
        with sf.SoundFile(path) as f:
            if f.samplerate == SAMPLE_RATE and f.channels == 1 and f.subtype == "PCM_16":
                x = f.read(
                    dtype="int16"
                )  # fast path: the dataset's own format, no float round trip
                if x.shape[0] == 0:
                    raise AudioError(f"{path}: contains no audio samples")
                return fix_length(x), None
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        if not isinstance(e, AudioError):
            try:
                load_audio(path)  # reproduces the failure with the precise message
            except AudioError as err:
                return None, str(err)
        return None, str(e)
    try:  # another rate, stereo or sample format: the general path
        x = fix_length(load_audio(path))
    except AudioError as e:
        return None, str(e)
    return (np.clip(x, -1.0, 32767 / 32768) * 32768).astype(np.int16), None


def _decode_chunk(npy: str, start: int, paths: list[str]) -> list[tuple[int, str]]:
    """Decode ``paths`` into rows ``start...`` of the ``.npy`` at ``npy``; returns the errors."""
    out = np.load(npy, mmap_mode="r+")
    errors = []
    for i, p in enumerate(paths, start):
        x, err = _decode_one(p)
        if err is None:
            out[i] = x
        else:
            errors.append((i, err))
    out.flush()
    return errors


def _decode_many(paths: list[str], npy: Path, progress: bool, desc: str) -> list[str]:
    """Decode ``paths`` into the rows of the int16 ``.npy`` file; returns one message per row.

    Decoding is bound by Python's per-file overhead, so threads do not help; large passes use
    one process per core, each writing its chunks straight into the memory-mapped file.
    """
    from tqdm.auto import tqdm

    errors = [""] * len(paths)
    chunk = _DECODE_CHUNK
    starts = range(0, len(paths), chunk)
    workers = min(os.cpu_count() or 1, 8)
    bar = tqdm(total=len(paths), desc=desc, unit="clip", disable=not progress)
    if workers == 1 or len(paths) < 4 * chunk:
        results = (_decode_chunk(str(npy), s, paths[s : s + chunk]) for s in starts)
        for s, errs in zip(starts, results, strict=True):
            for i, e in errs:
                errors[i] = e
            bar.update(min(chunk, len(paths) - s))
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            jobs = [pool.submit(_decode_chunk, str(npy), s, paths[s : s + chunk]) for s in starts]
            for s, fut in zip(starts, jobs, strict=True):
                for i, e in fut.result():
                    errors[i] = e
                bar.update(min(chunk, len(paths) - s))
    bar.close()
    return errors


def _select(
    clips: list[Clip], task: str, split: str, seed: int
) -> tuple[list[Clip], list[str], int]:
    """Clips of one split for a task, and how many silence rows to generate."""
    in_split = [c for c in clips if c.split == split]
    words = {c.word for c in clips}
    classes = task_classes(task, words)
    if task != "12":
        return [c for c in in_split if c.word in classes], classes, 0
    known = [c for c in in_split if c.word in COMMANDS_10]
    silence = [c for c in in_split if c.word == SILENCE]
    others = [c for c in in_split if c.word not in COMMANDS_10 and c.word != SILENCE]
    # Rebalance like the TensorFlow reference: unknown and silence are ~10 % of the known clips
    # each. A folder that already has an _unknown_ folder (official test-set layout) is balanced.
    n_extra = math.ceil(len(known) * 0.10)
    has_unknown_folder = any(f"/{UNKNOWN}/" in c.path.replace(os.sep, "/") for c in others)
    if not has_unknown_folder and len(others) > n_extra:
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        others = [others[i] for i in sorted(rng.choice(len(others), n_extra, replace=False))]
    n_generated = 0 if silence else n_extra  # no _silence_ clips: make them from noise
    relabelled = [Clip(c.path, UNKNOWN, c.speaker, c.split) for c in others]
    return known + relabelled + silence, classes, n_generated


def _noise_files(root: Path) -> list[Path]:
    return sorted((root / NOISE_DIR).glob("*.wav")) if (root / NOISE_DIR).is_dir() else []


def background_noise(
    root: str | Path, split: str = "train", clips_per_file: int | None = None
) -> np.ndarray:
    """1-s float32 noise slices ``(K, 16000)`` for augmentation and silence (notebooks 02, 05).

    From ``_background_noise_``: each file's first 80 % of time serves 'train', the next 10 %
    'validation', the last 10 % 'test', so no noise recording leaks across splits. A folder
    without it (the official test-set layout) uses that split's ``_silence_`` clips instead.
    """
    root = Path(root)
    lo, hi = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}[split]
    slices = []
    for f in _noise_files(root):
        try:
            x = load_audio(f)
        except AudioError as e:
            warnings.warn(f"skipping background noise file: {e}", stacklevel=2)
            continue
        seg = x[int(lo * len(x)) : int(hi * len(x))]
        n = len(seg) // CLIP_SAMPLES
        if n == 0:
            continue
        starts = np.linspace(0, len(seg) - CLIP_SAMPLES, clips_per_file or max(n, 1) * 2).astype(
            int
        )
        slices += [seg[s : s + CLIP_SAMPLES] for s in starts]  # half-overlapping slices
    if not slices:
        sil = [c.path for c in build_index(root) if c.word == SILENCE and c.split == split]
        slices = [fix_length(load_audio(p)) for p in sil]
    if not slices:
        return np.zeros((0, CLIP_SAMPLES), np.float32)
    return np.stack(slices).astype(np.float32)


def _cache_key(clips: list[Clip], extra: dict) -> str:
    h = hashlib.sha1(json.dumps(extra, sort_keys=True).encode())
    for c in clips:
        st = os.stat(c.path)
        h.update(f"{c.path}|{c.word}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _default_cache_dir() -> Path:
    from .env import data_dir

    return data_dir() / "cache"


def load_split(
    root: str | Path,
    task: str,
    split: str,
    *,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    assign: str = "auto",
    progress: bool = True,
) -> SplitData:
    """One split of a task as int16 arrays, decoded once and cached on disk (notebook 03).

    The first call decodes every WAV (one process per core for large splits) into one contiguous
    ``(N, 16000)`` int16 array saved as ``.npy``; later calls memory-map it in under a second.
    The cache key covers file list, sizes and modification times: a changed dataset is re-read.
    Bad files are skipped with a warning naming each one; they never abort the pass.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    root = Path(root).expanduser().resolve()
    clips = build_index(root, assign=assign)
    chosen, classes, n_silence = _select(clips, task, split, seed)
    cache = Path(cache_dir) if cache_dir else _default_cache_dir()
    key = _cache_key(
        chosen,
        {
            "v": _CACHE_VERSION,
            "task": task,
            "split": split,
            "seed": seed,
            "n_silence": n_silence,
            "noise": [str(p) for p in _noise_files(root)],
        },
    )
    stem = f"{root.name}_{task}_{split}_{key}"
    npy, meta_file = cache / f"{stem}.npy", cache / f"{stem}.json"
    if npy.exists() and meta_file.exists():
        meta = json.loads(meta_file.read_text())
        audio = np.load(npy, mmap_mode="r")
        return SplitData(
            audio,
            np.asarray(meta["labels"], np.int64),
            meta["classes"],
            meta["paths"],
            meta["speakers"],
            split,
            meta["errors"],
        )

    cache.mkdir(parents=True, exist_ok=True)
    n = len(chosen) + n_silence
    tmp = cache / f"{stem}.tmp{os.getpid()}.npy"
    audio = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=(n, CLIP_SAMPLES))
    audio.flush()  # header and size on disk before the workers open the file
    try:
        errors = _decode_many([c.path for c in chosen], tmp, progress, f"decoding {task}/{split}")
        paths = [c.path for c in chosen]
        speakers = [c.speaker for c in chosen]
        labels = [classes.index(c.word) for c in chosen]
        if n_silence:
            sil, desc = _make_silence(root, split, n_silence, seed)
            audio[len(chosen) :] = sil
            paths += desc
            speakers += [SILENCE] * n_silence
            labels += [classes.index(SILENCE)] * n_silence
        audio.flush()
        bad = [i for i, e in enumerate(errors) if e]
        del audio
        keep = np.setdiff1d(np.arange(n), bad)
        if bad:
            warnings.warn(
                f"{len(bad)} of {len(chosen)} files could not be decoded and were skipped:\n  "
                + "\n  ".join(errors[i] for i in bad[:5]),
                stacklevel=2,
            )
            full = np.load(tmp, mmap_mode="r")
            np.save(tmp, np.ascontiguousarray(full[keep]))  # rewrite without the bad rows
            del full
        meta = {
            "labels": [labels[i] for i in keep],
            "classes": classes,
            "paths": [paths[i] for i in keep],
            "speakers": [speakers[i] for i in keep],
            "errors": [errors[i] for i in bad],
        }
        os.replace(tmp, npy)
        tmp_meta = cache / f"{stem}.tmp{os.getpid()}.json"
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, meta_file)  # the .json appears last: its presence means complete
    finally:
        tmp.unlink(missing_ok=True)
    return load_split(root, task, split, cache_dir=cache, seed=seed, assign=assign, progress=False)


def _make_silence(root: Path, split: str, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """``n`` silence rows: background-noise slices at random gain, one in ten pure zeros."""
    rng = np.random.default_rng([seed, 7, SPLITS.index(split)])
    noise = background_noise(root, split)
    out = np.zeros((n, CLIP_SAMPLES), np.int16)
    desc = []
    for i in range(n):
        if len(noise) == 0 or rng.random() < 0.1:
            desc.append("<silence: zeros>")
            continue
        k, gain = int(rng.integers(len(noise))), float(rng.uniform(0.0, 1.0))
        out[i] = np.clip(noise[k] * gain * 32768, -32768, 32767).astype(np.int16)
        desc.append(f"<silence: {NOISE_DIR} slice {k} x {gain:.2f}>")
    return out, desc


def load_task(root: str | Path, task: str, **kwargs) -> dict[str, SplitData]:
    """All three splits of a task: ``{'train', 'validation', 'test'}`` (notebook 03)."""
    return {s: load_split(root, task, s, **kwargs) for s in SPLITS}


# ---------------------------------------------------------------------- dataset names (01)


def resolve_dataset(name: str | Path, download: bool = True, *, drive: bool = False) -> Path:
    """Turn a dataset name into a folder (notebook 01).

    'demo' builds (once) the synthetic eSpeak NG demo set; 'real' is the folder in
    ``$AUDIO_COURSE_REAL_DATA`` (real clips used by CI); a registry name such as
    'speech_commands_v0.02' is downloaded into ``data_dir()`` when missing; anything else is a
    path. ``drive=True`` (Colab) first mounts Google Drive (``use_drive``), so the archive, the
    extracted folder, the int16 cache and the runs survive a runtime reset (notebook 05).
    """
    if drive:
        use_drive()
    name = str(name)
    if name == "demo":
        from .demo import make_demo_dataset  # to the top once demo no longer imports data

        return make_demo_dataset(progress=False)
    if name == "real":
        env = os.environ.get("AUDIO_COURSE_REAL_DATA")
        if not env:
            raise FileNotFoundError(
                "DATASET='real' needs $AUDIO_COURSE_REAL_DATA set to a folder of clips"
            )
        return Path(env).expanduser().resolve()
    if name in DATASETS:
        folder = data_dir() / name
        if (folder / ".complete").exists() or not download:
            return folder  # already there: no network at all
        return download_dataset(name, data_dir())
    path = Path(name).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{name!r} is neither a known dataset ({sorted(DATASETS)}, 'demo', "
            "'real') nor an existing folder"
        )
    return path.resolve()
