"""Audio I/O, the dataset index, task views and cached int16 arrays (notebooks 01-05).

Audio is read with ``soundfile`` (libsndfile): ``torchaudio.load`` needs torchcodec and FFmpeg
since torchaudio 2.9, the most reported breakage of audio tutorials.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from .demo import (
    CLIP_SAMPLES,
    COMMANDS_10,
    SAMPLE_RATE,
    WORDS_V2,
    make_demo_dataset,
    which_set,
)
from .download import DATASETS, download_dataset
from .env import data_dir, use_drive

__all__ = [
    "SAMPLE_RATE", "CLIP_SAMPLES", "COMMANDS_10", "AudioError", "Clip", "SplitData",
    "load_audio", "resample", "fix_length", "which_set", "build_index", "load_split", "load_task",
    "background_noise", "resolve_dataset", "subset_split", "pool_splits", "leaky_split_data",
    "speaker_overlap",
]  # fmt: skip

_UNKNOWN, _SILENCE, _NOISE_DIR = "_unknown_", "_silence_", "_background_noise_"
TASKS: dict[str, list[str]] = {"yesno": ["yes", "no"], "10": COMMANDS_10,
                               "12": COMMANDS_10 + [_UNKNOWN, _SILENCE], "35": WORDS_V2}
"""Fixed class lists by name; ``load_split`` also takes "all": every word in the folder."""
_SPLITS = ("train", "validation", "test")
_RESPLIT_SALT = "audio-course/"  # salt of the re-drawn speaker split, 65/15/20 %
_CARVE_SALT = "audio-course/carve-out/"  # salt of the 10 % validation carve-out (assign="carve")
_CACHE_VERSION = 2
_DECODE_CHUNK = 1000  # files per worker task; 4 chunks or more are decoded in parallel
_SPEAKER_RE = re.compile(r"(?:^|_)([0-9a-f]{8})_nohash_\d+", re.IGNORECASE)


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file (notebook 01)."""


# --------------------------------------------------------------------------- audio I/O (01)
def resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited (windowed-sinc) resampling along the last axis with torchaudio (notebook 01)."""
    if orig_sr == new_sr:
        return x
    import torchaudio.functional as AF  # slow to import: only when a file needs it

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
            sr, x = f.samplerate, f.read(dtype="float32", always_2d=True)  # (frames, channels)
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
    x = x.T.mean(axis=0) if mono else x.T
    if sample_rate is not None and sr != sample_rate:
        x = resample(x, sr, sample_rate)
    return np.ascontiguousarray(x, dtype=np.float32)


def fix_length(x: np.ndarray, n: int = CLIP_SAMPLES) -> np.ndarray:
    """Zero-pad a short clip at the end; cut a long one to its loudest ``n`` samples (notebook 01).

    The loudest window (not the first second) keeps the word of a long recording."""
    if x.shape[-1] == n:
        return x
    if x.shape[-1] < n:
        return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])
    energy = np.square(x.astype(np.float64)).reshape(-1, x.shape[-1]).sum(axis=0)
    csum = np.concatenate([[0.0], np.cumsum(energy)])
    start = int(np.argmax(csum[n:] - csum[:-n]))  # energy of every n-sample window, O(length)
    return x[..., start : start + n]


# ------------------------------------------------------------------- index and splits (01)
def _speaker_of(path: str) -> str | None:
    """The 8-hex speaker id in ``[<word>_]<speaker>_nohash_<n>.wav``, or None."""
    m = _SPEAKER_RE.search(os.path.basename(path))
    return m.group(1).lower() if m else None


@dataclass(frozen=True)
class Clip:
    """One indexed clip: absolute path, spoken word, speaker id and split (notebook 01)."""

    path: str
    word: str
    speaker: str
    split: str


def build_index(root: str | Path, assign: str = "auto") -> list[Clip]:
    """Index every clip under ``root`` (notebook 01).

    Works for the full dataset (official ``validation_list.txt`` / ``testing_list.txt``), the
    official test-set archive (``_unknown_`` / ``_silence_`` folders, ``.wav.wav`` names), the
    demo set and any folder of ``<word>/<speaker>_nohash_<n>.wav``. Splits come from the lists
    when present, else from the speaker-hash rule; ``assign="test"`` makes every clip a test
    clip (a held-out folder); ``assign="carve"`` trains on every clip but a 10 % speaker-hash
    validation carve-out (the test set is elsewhere; clips the official list puts in test stay
    test, never trained on). A clip without a speaker id is its own speaker.
    """
    if assign not in ("auto", "test", "carve"):
        raise ValueError(f"assign must be 'auto', 'test' or 'carve', not {assign!r}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    lists = [root / "validation_list.txt", root / "testing_list.txt"]
    use_lists = assign != "test" and all(p.exists() for p in lists)
    val, test = (set(p.read_text().split()) if use_lists else set() for p in lists)
    clips: list[Clip] = []
    for folder in sorted(os.scandir(root), key=lambda e: e.name):
        if not folder.is_dir() or folder.name.startswith(".") or folder.name == _NOISE_DIR:
            continue
        for entry in sorted(os.scandir(folder.path), key=lambda e: e.name):
            if not entry.name.lower().endswith(".wav") or not entry.is_file():
                continue
            # '_unknown_/<word>_<speaker>_nohash_<n>.wav.wav' in the official test set
            word = entry.name.split("_")[0] if folder.name == _UNKNOWN else folder.name
            speaker = _speaker_of(entry.name) or entry.name.split(".")[0]
            rel = f"{folder.name}/{entry.name}"
            if assign == "test":
                split = "test"
            elif assign == "carve" and rel not in test:
                split = which_set(speaker, 10, 0, _CARVE_SALT)
            elif use_lists:
                split = "validation" if rel in val else "test" if rel in test else "train"
            else:
                split = which_set(speaker)
            clips.append(Clip(entry.path, word, speaker, split))
    if not clips:
        raise FileNotFoundError(f"{root}: no .wav clips found in word folders")
    return clips if use_lists or assign != "auto" else _redraw_one_split(clips)


def _redraw_one_split(clips: list[Clip]) -> list[Clip]:
    """A folder cut from ONE official split (the official test-set archive) has its speakers in
    one hash bucket: re-draw a speaker-disjoint 65/15/20 % split with a salted hash."""
    speakers = {(c.speaker, c.split) for c in clips if c.word != _SILENCE}
    top = max(Counter(split for _, split in speakers).values(), default=0)
    if top <= 0.9 * len(speakers):
        return clips
    return [Clip(c.path, c.word, c.speaker, which_set(c.speaker, 15, 20, _RESPLIT_SALT))
            for c in clips]  # fmt: skip


def _task_classes(task: str, clips: list[Clip], words: list[str] | None) -> list[str]:
    """Class names of a task; "all" (or its ``words``) takes them from the folder itself."""
    present = {c.word for c in clips}
    if task != "all":
        if task not in TASKS or words is not None:
            raise ValueError(f"unknown task {task!r} (choose from {[*TASKS, 'all']}); words= "
                             "goes with task 'all'")  # fmt: skip
        return [w for w in TASKS[task] if w in present or task != "35"]  # v0.01: 30 of the 35
    classes = sorted(present - {_SILENCE, _UNKNOWN}) if words is None else list(words)
    if len(classes) < 2 or not present.issuperset(classes):
        raise ValueError(f"task 'all' needs two or more words with clips: asked {classes}, "
                         f"found {sorted(present)}")  # fmt: skip
    nameless = [c.path for c in clips if c.word in classes and not _speaker_of(c.path)]
    if nameless:
        raise ValueError(f"{len(nameless)} clips have no speaker id in their name, e.g. "
                         f"{nameless[0]}: name them <8 hex digits>_nohash_<n>.wav")  # fmt: skip
    return classes


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
    unknown_per_epoch: int = 0  # > 0: fit draws this many _unknown_ rows afresh every epoch

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Clips per class."""
        n = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, n, strict=True)}


def _decode_one(path: str) -> tuple[np.ndarray | None, str | None]:
    """One clip as int16 ``(16000,)``, or ``(None, the error message)``."""
    try:
        with sf.SoundFile(path) as f:
            if f.samplerate == SAMPLE_RATE and f.channels == 1 and f.subtype == "PCM_16":
                x = f.read(dtype="int16")  # the dataset's own format: no float round trip
                if len(x):
                    return fix_length(x), None
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        pass  # load_audio below fails again, with a message that names the problem
    try:  # another rate, stereo or sample format: the general path
        x = fix_length(load_audio(path))
    except AudioError as e:
        return None, str(e)
    return (np.clip(x, -1.0, 32767 / 32768) * 32768).astype(np.int16), None


def _decode_chunk(npy: str, start: int, paths: list[str]) -> list[tuple[int, str]]:
    """Decode ``paths`` into rows ``start...`` of the ``.npy`` at ``npy``; returns the errors."""
    out, errors = np.load(npy, mmap_mode="r+"), []
    for i, p in enumerate(paths, start):
        x, err = _decode_one(p)
        out[i] = x if err is None else 0
        errors += [(i, err)] if err else []
    out.flush()
    return errors


def _decode_many(paths: list[str], npy: Path, progress: bool, desc: str) -> list[str]:
    """Decode ``paths`` into the rows of the int16 ``.npy``; returns one message per row. Python's
    per-file overhead is the bottleneck (threads do not help): large passes use a process per
    core, each writing its chunks straight into the memory-mapped file."""
    errors = [""] * len(paths)
    starts = list(range(0, len(paths), _DECODE_CHUNK))
    chunks = [paths[s : s + _DECODE_CHUNK] for s in starts]
    workers = min(os.cpu_count() or 1, 8)
    bar = tqdm(total=len(paths), desc=desc, unit="clip", disable=not progress)
    with ProcessPoolExecutor(workers) as pool, bar:  # no process starts unless it is used
        mapper = pool.map if workers > 1 and len(chunks) >= 4 else map
        for chunk, errs in zip(chunks, mapper(_decode_chunk, [str(npy)] * len(chunks), starts,
                                              chunks), strict=True):  # fmt: skip
            for i, e in errs:
                errors[i] = e
            bar.update(len(chunk))
    return errors


def _select(
    clips: list[Clip], task: str, split: str, seed: int, words: list[str] | None
) -> tuple[list[Clip], list[str], int, int]:
    """Clips of one split for a task, its classes, how many silence rows to generate, and how
    many of its ``_unknown_`` rows to draw per epoch (0: all, every epoch)."""
    classes = _task_classes(task, clips, words)
    in_split = [c for c in clips if c.split == split]
    if task != "12":
        return [c for c in in_split if c.word in classes], classes, 0, 0
    known = [c for c in in_split if c.word in COMMANDS_10]
    silence = [c for c in in_split if c.word == _SILENCE]
    others = [c for c in in_split if c.word not in COMMANDS_10 and c.word != _SILENCE]
    # Rebalance like the TensorFlow reference: unknown and silence are ~10 % of the known clips
    # each. A folder that already has an _unknown_ folder (official test-set layout) is balanced.
    n_extra = math.ceil(len(known) * 0.10)
    has_unknown_folder = any(f"/{_UNKNOWN}/" in c.path.replace(os.sep, "/") for c in others)
    per_epoch = 0
    if not has_unknown_folder and len(others) > n_extra and split == "train":
        per_epoch = n_extra  # keep the whole pool: training sees a fresh draw every epoch
    elif not has_unknown_folder and len(others) > n_extra:  # evaluation: one fixed draw
        rng = np.random.default_rng([seed, _SPLITS.index(split)])
        others = [others[i] for i in sorted(rng.choice(len(others), n_extra, replace=False))]
    relabelled = [Clip(c.path, _UNKNOWN, c.speaker, c.split) for c in others]
    n_silence = 0 if silence else n_extra  # else: made from background noise
    return known + relabelled + silence, classes, n_silence, per_epoch


def _noise_files(root: Path, noise_dir: str | Path | None) -> list[Path]:
    """The noise recordings: ``noise_dir`` (or its ``_background_noise_``), else the dataset's,
    else ``$AUDIO_COURSE_NOISE`` (CI points it at the official noise beside the real clips)."""
    if not noise_dir and not (Path(root) / _NOISE_DIR).is_dir():
        noise_dir = os.environ.get("AUDIO_COURSE_NOISE") or None
    folder = Path(noise_dir).expanduser() if noise_dir else Path(root) / _NOISE_DIR
    if (folder / _NOISE_DIR).is_dir():
        folder = folder / _NOISE_DIR
    files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if noise_dir and not files:
        raise FileNotFoundError(f"noise_dir {noise_dir}: no .wav files (nor in {_NOISE_DIR}/)")
    return files


def background_noise(
    root: str | Path, split: str = "train", clips_per_file: int | None = None, *,
    noise_dir: str | Path | None = None,
) -> np.ndarray:
    """1-s float32 noise slices ``(K, 16000)`` for augmentation and silence (notebooks 02, 05).

    From ``root/_background_noise_``, or ``noise_dir`` (a folder of noise files, or its parent):
    each file's first 80 % serves 'train', the next 10 % 'validation', the last 10 % 'test', so
    no noise leaks across splits. Without noise files: the split's ``_silence_`` clips.
    """
    lo, hi = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}[split]
    slices = []
    for f in _noise_files(Path(root), noise_dir):
        try:
            x = load_audio(f)
        except AudioError as e:
            warnings.warn(f"skipping background noise file: {e}", stacklevel=2)
            continue
        seg = x[int(lo * len(x)) : int(hi * len(x))]
        n = len(seg) // CLIP_SAMPLES
        if n > 0:  # half-overlapping slices
            starts = np.linspace(0, len(seg) - CLIP_SAMPLES, clips_per_file or 2 * n).astype(int)
            slices += [seg[s : s + CLIP_SAMPLES] for s in starts]
    if not slices:
        sil = [c.path for c in build_index(root) if c.word == _SILENCE and c.split == split]
        slices = [fix_length(load_audio(p)) for p in sil]
    return np.array(slices, np.float32).reshape(-1, CLIP_SAMPLES)


def _make_silence(noise: np.ndarray | None, split: str, n: int, seed: int) -> tuple:
    """``n`` silence rows: background-noise slices at random gain, one in ten pure zeros."""
    rng = np.random.default_rng([seed, 7, _SPLITS.index(split)])
    out, desc = np.zeros((n, CLIP_SAMPLES), np.int16), []
    for i in range(n):
        if not len(noise) or rng.random() < 0.1:
            desc.append("<silence: zeros>")
            continue
        k, gain = int(rng.integers(len(noise))), float(rng.uniform(0.0, 1.0))
        out[i] = np.clip(noise[k] * gain * 32768, -32768, 32767).astype(np.int16)
        desc.append(f"<silence: {_NOISE_DIR} slice {k} x {gain:.2f}>")
    return out, desc


def _write_cache(npy: Path, chosen: list[Clip], classes: list[str], rows: np.ndarray,
                 progress: bool) -> None:  # fmt: skip
    """Decode ``chosen`` (its last ``len(rows)`` clips are ready-made ``rows``) into ``npy``; the
    ``.json`` of labels and paths appears last: its presence means the cache is complete."""
    n_files, tmp = len(chosen) - len(rows), npy.with_suffix(f".tmp{os.getpid()}.npy")
    audio = np.lib.format.open_memmap(tmp, "w+", np.int16, (len(chosen), CLIP_SAMPLES))
    audio[n_files:] = rows
    audio.flush()  # header and size on disk before the workers open the file
    del audio
    try:
        errors = _decode_many([c.path for c in chosen[:n_files]], tmp, progress, npy.stem)
        errors += [""] * len(rows)
        keep, bad = [i for i, e in enumerate(errors) if not e], [e for e in errors if e]
        if bad:
            warnings.warn(f"{len(bad)} of {n_files} files could not be decoded and were "
                          "skipped:\n  " + "\n  ".join(bad[:5]), stacklevel=3)  # fmt: skip
            np.save(tmp, np.load(tmp, mmap_mode="r")[keep])  # rewrite without the bad rows
        os.replace(tmp, npy)
        kept = [chosen[i] for i in keep]
        meta = {"labels": [classes.index(c.word) for c in kept], "classes": classes, "errors": bad,
                "paths": [c.path for c in kept], "speakers": [c.speaker for c in kept]}  # fmt: skip
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, npy.with_suffix(".json"))
    finally:
        tmp.unlink(missing_ok=True)


def load_split(
    root: str | Path, task: str, split: str, *, cache_dir: str | Path | None = None,
    seed: int = 0, assign: str = "auto", progress: bool = True, words: list[str] | None = None,
    noise_dir: str | Path | None = None,
) -> SplitData:
    """One split of a task as int16 arrays, decoded once and cached on disk (notebook 03).

    ``task``: a name in ``TASKS``, or "all": every word folder (``words=[...]`` picks some). The
    first call decodes every WAV (a process per core) into a ``(N, 16000)`` int16 ``.npy``; later
    calls memory-map it. Bad files are skipped with one warning. Task "12" makes silence rows from
    background noise (``noise_dir``: see :func:`background_noise`).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, not {split!r}")
    root = Path(root).expanduser().resolve()
    chosen, classes, n_silence, per_epoch = _select(build_index(root, assign=assign), task, split,
                                                    seed, words)
    noise = [str(p) for p in _noise_files(root, noise_dir)]
    key = hashlib.sha1(json.dumps([_CACHE_VERSION, classes, seed, n_silence, noise]).encode())
    for c in chosen:  # a changed file list, size or modification time makes a new cache
        st = os.stat(c.path)
        key.update(f"{c.path}|{c.word}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    cache = Path(cache_dir) if cache_dir else data_dir() / "cache"
    npy = cache / f"{root.name}_{task}_{split}_{key.hexdigest()[:16]}.npy"
    if not (npy.exists() and npy.with_suffix(".json").exists()):
        cache.mkdir(parents=True, exist_ok=True)
        noise = background_noise(root, split, noise_dir=noise_dir) if n_silence else None
        rows, desc = _make_silence(noise, split, n_silence, seed)
        chosen += [Clip(d, _SILENCE, _SILENCE, split) for d in desc]
        _write_cache(npy, chosen, classes, rows, progress)
    meta = json.loads(npy.with_suffix(".json").read_text())
    audio, labels = np.load(npy, mmap_mode="r"), np.asarray(meta["labels"], np.int64)
    return SplitData(audio, labels, meta["classes"], meta["paths"], meta["speakers"], split,
                     meta["errors"], per_epoch)


def load_task(
    root: str | Path, task: str, *, test_data: str | Path | None = None, carve_out: bool = False,
    **kwargs: Any,
) -> dict[str, SplitData]:
    """All three splits of a task: ``{'train', 'validation', 'test'}`` (notebook 03).

    ``test_data``: the test split is every clip of that other folder (say the official test-set
    archive, or your own recordings); with ``carve_out`` every clip of ``root`` then trains but a
    10 % speaker validation carve-out. Other keywords go to :func:`load_split`, e.g.
    ``words=["yes", "no"]`` (task "all"), ``noise_dir=``."""
    if carve_out and test_data is None:
        raise ValueError("carve_out trains on the test split too: give test_data, the folder "
                         "to test on")  # fmt: skip
    assign = "carve" if carve_out else kwargs.pop("assign", "auto")
    out = {s: load_split(root, task, s, assign=assign, **kwargs) for s in _SPLITS[:2]}
    if test_data is None:
        return {**out, "test": load_split(root, task, "test", assign=assign, **kwargs)}
    out["test"] = load_split(test_data, task, "test", assign="test", **kwargs)
    if out["test"].classes != out["train"].classes:
        raise ValueError(f"{test_data} has classes {out['test'].classes}, the training folder "
                         f"{out['train'].classes}")  # fmt: skip
    voices = [[v for v in out[s].speakers if v != _SILENCE] for s in ("train", "test")]
    heard = speaker_overlap(*voices)["test_speakers_seen"]
    if heard:
        warnings.warn(f"{heard} test speakers of {test_data} are also training speakers: the "
                      "test accuracy will flatter the model on new voices", stacklevel=2)
    return out


# --------------------------------------------------------- subsets and the leaky split (03, 03b)
def speaker_overlap(train_speakers: Sequence[str], test_speakers: Sequence[str]) -> dict[str, Any]:
    """How much a test set leaks: its speakers and clips also heard in training (notebook 03b)."""
    train, test = set(train_speakers), set(test_speakers)
    seen_clips, n = sum(s in train for s in test_speakers), len(test_speakers)
    return {"test_clips": n, "test_clips_seen_speaker": int(seen_clips),
            "fraction_clips": seen_clips / n if n else 0.0, "test_speakers": len(test),
            "test_speakers_seen": len(test & train),
            "fraction_speakers": len(test & train) / len(test) if test else 0.0}


def subset_split(split: SplitData, indices: Sequence[int] | np.ndarray) -> SplitData:
    """The rows ``indices`` of a ``SplitData`` as a new in-memory ``SplitData`` (notebook 03)."""
    idx = np.asarray(indices, dtype=np.int64)
    per_epoch = round(split.unknown_per_epoch * len(idx) / max(len(split), 1))  # same share
    return SplitData(np.ascontiguousarray(split.audio[idx]), np.asarray(split.labels)[idx],
                     list(split.classes), [split.paths[i] for i in idx],
                     [split.speakers[i] for i in idx], split.split, [], per_epoch)


def _random_split_indices(n: int, fractions=(0.8, 0.2), seed: int | None = None):
    """Indices of ``torch.utils.data.random_split(range(n), fractions)``: the original's split."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    parts = torch.utils.data.random_split(range(n), list(fractions), generator=gen)
    return [np.asarray(p.indices, dtype=np.int64) for p in parts]


def pool_splits(*parts: SplitData) -> SplitData:
    """Several splits of one task as one in-memory pool, every row every epoch (notebook 03b)."""
    if any(list(p.classes) != list(parts[0].classes) for p in parts):
        raise ValueError("all splits must have the same classes")
    return SplitData(np.concatenate([np.asarray(p.audio) for p in parts]),
                     np.concatenate([np.asarray(p.labels) for p in parts]), list(parts[0].classes),
                     [x for p in parts for x in p.paths], [x for p in parts for x in p.speakers],
                     "pool")


def leaky_split_data(
    splits: dict[str, SplitData], fractions: Sequence[float] = (0.8, 0.2), seed: int | None = None
) -> tuple[SplitData, SplitData]:
    """All clips pooled and split clip by clip, as the original did (notebook 03b).

    The same speaker's clips land on both sides: only for measuring the leak, never for real
    evaluation (``seed=None`` draws from the global RNG, as the original).
    """
    pool = pool_splits(*splits.values())
    train_idx, test_idx = _random_split_indices(len(pool), fractions, seed)
    train, test = subset_split(pool, train_idx), subset_split(pool, test_idx)
    train.split, test.split = "train (leaky)", "test (leaky)"
    return train, test


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
        return make_demo_dataset(progress=False)
    if name == "real":
        if not (env := os.environ.get("AUDIO_COURSE_REAL_DATA")):
            raise FileNotFoundError("'real' needs $AUDIO_COURSE_REAL_DATA: a folder of clips")
        return Path(env).expanduser().resolve()
    if name in DATASETS:
        folder = data_dir() / name
        if (folder / ".complete").exists() or not download:
            return folder  # already there: no network at all
        return download_dataset(name, data_dir())
    path = Path(name).expanduser()
    if not path.is_dir():
        known = ", ".join([*DATASETS, "demo", "real"])
        raise FileNotFoundError(f"{name!r} is neither a known dataset ({known}) nor a folder")
    return path.resolve()
