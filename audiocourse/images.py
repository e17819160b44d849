"""Notebook 03's image route: spectrogram PNGs as an ImageFolder-like dataset (notebook 03).

Microsoft Learn trains its CNN from PNG files: ``torchvision.datasets.ImageFolder`` over one
folder per class, every grey image loaded as RGB and ``Resize((201, 81))``, then a
``random_split`` 80/20 without a seed. This module reproduces that route without torchvision
(Pillow reads the files) so the course can run it, measure it and fix it:

* :class:`SpectrogramImageFolder` reads the folders that ``features.export_spectrogram_pngs``
  (notebook 02) writes -- ``out_dir/<class>/<row>_<stem>.png`` plus ``manifest.csv`` -- in mode
  ``'original'`` (3 channels, resized, as published) or ``'fixed'`` (1 channel, no resize, low
  frequencies in row 0 like the in-memory tensors).
* :func:`image_loader` wraps it in a ``DataLoader`` (an iterable of ``(x, y)`` batches that
  ``train.fit`` accepts).
* :func:`pixels_from_audio` computes the very same pixels in memory -- the fast tensor route.
* :func:`leaky_random_split` is the original's split, kept to measure how much it over-states
  accuracy; :func:`speaker_overlap` counts the leak.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = [
    "IMAGE_MODES",
    "SpectrogramImageFolder",
    "load_spectrogram_png",
    "image_loader",
    "export_split_images",
    "pixels_from_audio",
    "leaky_random_split",
    "leaky_split_data",
    "random_split_indices",
    "speaker_overlap",
    "subset_split",
]

IMAGE_MODES = ("original", "fixed")
#: ``transforms.Resize((201, 81))`` of the original: (height, width) = (frequency bins, frames).
ORIGINAL_SIZE = (201, 81)


def load_spectrogram_png(
    path: str | Path, mode: str = "fixed", size: tuple[int, int] | None = ORIGINAL_SIZE
) -> Tensor:
    """One PNG as a float tensor in [0, 1] (notebook 03).

    ``mode='original'``: what ``ImageFolder`` + ``Resize(size)`` + ``ToTensor()`` gave Microsoft
    Learn's CNN -- the image converted to RGB (a grey image becomes three identical channels),
    resized with bilinear interpolation, ``(3, H, W)``. ``mode='fixed'``: the one grey channel,
    not resized, flipped so that row 0 is the lowest frequency (the exporter stores the highest
    frequency first, as a viewer expects), ``(1, F, T)`` -- the layout of the in-memory tensors.
    """
    from PIL import Image

    if mode not in IMAGE_MODES:
        raise ValueError(f"mode must be one of {IMAGE_MODES}, got {mode!r}")
    with Image.open(path) as im:
        if mode == "original":
            im = im.convert("RGB")
            if size is not None and im.size != (size[1], size[0]):  # PIL sizes are (W, H)
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)  # (3, H, W)
        else:
            arr = np.asarray(im.convert("L"), dtype=np.uint8)[::-1][None]  # (1, F, T)
    return torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)


def _read_manifest(root: Path) -> dict[str, str]:
    """``relative file -> source clip`` from the exporter's ``manifest.csv`` (if present)."""
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as f:
        return {row["file"]: row.get("source", "") for row in csv.DictReader(f)}


class SpectrogramImageFolder(Dataset):
    """``root/<class>/*.png`` as ``(image, label)`` pairs, like ``ImageFolder`` (notebook 03).

    ``classes``: the class order (label ``i`` is ``classes[i]``); default, like ``ImageFolder``,
    the sorted sub-folder names -- pass the task's classes (``SplitData.classes``) so that image
    and tensor labels agree. ``mode``: 'original' or 'fixed' (see :func:`load_spectrogram_png`).
    ``preload=True`` decodes every file once into memory (then only the first pass pays for
    decoding); by default every access reads the file again, as ImageFolder does.

    Attributes: ``classes``, ``class_to_idx``, ``files`` (PNG paths), ``targets`` (labels),
    ``sources`` (the source clip of each image from ``manifest.csv``, '' when unknown).
    """

    def __init__(
        self,
        root: str | Path,
        mode: str = "fixed",
        classes: Sequence[str] | None = None,
        size: tuple[int, int] | None = ORIGINAL_SIZE,
        preload: bool = False,
    ) -> None:
        if mode not in IMAGE_MODES:
            raise ValueError(f"mode must be one of {IMAGE_MODES}, got {mode!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        found = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        if classes is None:
            classes = found
        missing = [c for c in classes if not (self.root / c).is_dir()]
        if missing:
            raise FileNotFoundError(f"{self.root}: no folder for class(es) {missing}")
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.mode = mode
        self.size = size
        sources = _read_manifest(self.root)
        self.files: list[Path] = []
        self.targets: list[int] = []
        for c in self.classes:
            for f in sorted((self.root / c).glob("*.png")):
                self.files.append(f)
                self.targets.append(self.class_to_idx[c])
        if not self.files:
            raise FileNotFoundError(f"{self.root}: no .png files in {self.classes}")
        self.sources = [sources.get(f.relative_to(self.root).as_posix(), "") for f in self.files]
        self._cache: list[Tensor] | None = None
        if preload:
            self._cache = [self._load(i) for i in range(len(self.files))]

    def _load(self, i: int) -> Tensor:
        return load_spectrogram_png(self.files[i], self.mode, self.size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = self._cache[i] if self._cache is not None else self._load(i)
        return x, self.targets[i]

    def source_rows(self) -> list[int]:
        """Row of each image in the exported split (the exporter's ``<row>_`` file-name prefix).

        ``-1`` for files named otherwise. Lets notebook 03 line images up with the int16 array.
        """
        rows = []
        for f in self.files:
            head = f.name.split("_", 1)[0]
            rows.append(int(head) if head.isdigit() else -1)
        return rows

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All images and labels as two tensors ``(N, C, H, W)``, ``(N,)``."""
        xs = [self[i][0] for i in range(len(self))]
        return torch.stack(xs), torch.as_tensor(self.targets, dtype=torch.long)

    def __repr__(self) -> str:
        return (
            f"SpectrogramImageFolder({str(self.root)!r}, mode={self.mode!r}, "
            f"{len(self)} images, classes={self.classes})"
        )


def image_loader(
    data: str | Path | Dataset,
    batch_size: int = 15,
    shuffle: bool = True,
    mode: str = "fixed",
    classes: Sequence[str] | None = None,
    num_workers: int = 0,
    seed: int | None = 0,
) -> DataLoader:
    """A ``DataLoader`` of ``(images, labels)`` batches for ``train.fit`` (notebook 03).

    ``data``: a folder (opened with :class:`SpectrogramImageFolder` in ``mode``) or any dataset,
    e.g. a :func:`leaky_random_split` subset. Batch 15 is the original's. Shuffle the training
    loader only: a shuffled *test* loader (as in the original) loses the link between a
    prediction and its file. ``seed`` fixes the shuffling order (``None``: the global RNG).
    Pinned memory is used when CUDA is available, so ``.to(device, non_blocking=True)`` overlaps.
    """
    ds = data if isinstance(data, Dataset) else SpectrogramImageFolder(data, mode, classes)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        generator=gen,
        persistent_workers=num_workers > 0,
    )


def export_split_images(
    splits: dict[str, Any], out_dir: str | Path, **kwargs: Any
) -> dict[str, Any]:
    """Export every split of a task as PNG folders ``out_dir/<split>/<class>/`` (notebook 03).

    ``splits``: ``{'train': SplitData, 'validation': ..., 'test': ...}`` from ``data.load_task``.
    The grey-level range is taken from the TRAINING split and reused for the others, so one grey
    level means the same power in every image. ``kwargs`` go to
    ``features.export_spectrogram_pngs``. Returns ``{'folders': {split: Path}, 'db_range',
    'n', 'seconds', 'clips_per_s'}``.
    """
    from .features import export_spectrogram_pngs

    out_dir = Path(out_dir)
    folders: dict[str, Path] = {}
    db_range = kwargs.pop("db_range", None)
    n, seconds = 0, 0.0
    for name in ("train", *[k for k in splits if k != "train"]):
        sd = splits[name]
        info = export_spectrogram_pngs(
            sd.audio, sd.labels, list(sd.classes), out_dir / name, paths=list(sd.paths),
            db_range=db_range, **kwargs,
        )  # fmt: skip
        db_range = info["db_range"]
        folders[name] = out_dir / name
        n += info["n"]
        seconds += info["seconds"]
    return {
        "folders": folders,
        "db_range": db_range,
        "n": n,
        "seconds": seconds,
        "clips_per_s": n / seconds if seconds > 0 else float("inf"),
    }


@torch.no_grad()
def pixels_from_audio(
    audio: np.ndarray | Tensor,
    db_range: tuple[float, float],
    n_fft: int = 400,
    hop_length: int = 200,
    quantize: bool = True,
    highest_first: bool = False,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
) -> Tensor:
    """The exported PNGs' pixels computed in memory: ``(N, F, T)`` in [0, 1] (notebook 03).

    The same dB power spectrogram as ``features.export_spectrogram_pngs(kind='spectrogram')``
    mapped from ``db_range`` (the exporter's returned ``db_range``) to [0, 1]; with ``quantize``
    rounded to the 256 grey levels a PNG holds, so the result equals ``'fixed'``-mode images up to
    floating-point rounding. Row 0 is the lowest frequency; ``highest_first=True`` flips it like
    the stored files (what ``'original'`` mode reads). This is the tensor route of notebook 03:
    no files, no decoding, one batched transform.
    """
    from .frontends import DbSpectrogram

    lo, hi = float(db_range[0]), float(db_range[1])
    if not hi > lo:
        raise ValueError(f"db_range must be (low, high) with high > low, got {db_range}")
    device = torch.device(device)
    spec = DbSpectrogram(n_fft=n_fft, hop_length=hop_length).to(device)
    out = []
    for s in range(0, len(audio), batch_size):
        part = audio[s : s + batch_size]
        xb = part if isinstance(part, Tensor) else torch.from_numpy(np.array(part))  # copy: memmap
        px = (spec(xb.to(device)) - lo) * (255.0 / (hi - lo))
        px = px.round_() if quantize else px
        px = px.clamp_(0, 255).div_(255.0)
        out.append((px.flip(-2) if highest_first else px).cpu())
    return torch.cat(out)


def random_split_indices(
    n: int, fractions: Sequence[float] = (0.8, 0.2), seed: int | None = None
) -> list[np.ndarray]:
    """Indices of ``torch.utils.data.random_split(range(n), fractions)`` (notebook 03).

    The original's split: clips are shuffled one by one, ignoring who is speaking. ``seed=None``
    draws from the global RNG as the original did (its result then depends on everything run
    before it); pass a seed to make it repeatable.
    """
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    parts = torch.utils.data.random_split(range(n), list(fractions), generator=gen)
    return [np.asarray(p.indices, dtype=np.int64) for p in parts]


def leaky_random_split(
    dataset: Dataset, fractions: Sequence[float] = (0.8, 0.2), seed: int | None = None
) -> list[Subset]:
    """The original's ``random_split(dataset, [0.8, 0.2])``: speakers leak across (notebook 03).

    Kept as a reference for the comparison in notebook 03 (see :func:`speaker_overlap`); use the
    speaker-disjoint splits of ``data.load_task`` for real evaluation.
    """
    idx = random_split_indices(len(dataset), fractions, seed)  # type: ignore[arg-type]
    return [Subset(dataset, i.tolist()) for i in idx]


def speaker_overlap(train_speakers: Sequence[str], test_speakers: Sequence[str]) -> dict[str, Any]:
    """How much a test set leaks: its speakers and clips also heard in training (notebook 03).

    Returns ``{'test_clips', 'test_clips_seen_speaker', 'fraction_clips', 'test_speakers',
    'test_speakers_seen', 'fraction_speakers'}``.
    """
    train = set(train_speakers)
    seen_clips = sum(s in train for s in test_speakers)
    test_set = set(test_speakers)
    seen_spk = len(test_set & train)
    n = len(test_speakers)
    return {
        "test_clips": n,
        "test_clips_seen_speaker": int(seen_clips),
        "fraction_clips": seen_clips / n if n else 0.0,
        "test_speakers": len(test_set),
        "test_speakers_seen": seen_spk,
        "fraction_speakers": seen_spk / len(test_set) if test_set else 0.0,
    }


def subset_split(split: Any, indices: Sequence[int] | np.ndarray) -> Any:
    """The rows ``indices`` of a ``data.SplitData`` as a new in-memory ``SplitData`` (notebook 03).

    Used to subsample (``FAST`` runs) and to re-split pooled clips.
    """
    from .data import SplitData

    idx = np.asarray(indices, dtype=np.int64)
    return SplitData(
        np.ascontiguousarray(split.audio[idx]),
        np.asarray(split.labels)[idx],
        list(split.classes),
        [split.paths[i] for i in idx],
        [split.speakers[i] for i in idx],
        split.split,
    )


def leaky_split_data(
    splits: dict[str, Any], fractions: Sequence[float] = (0.8, 0.2), seed: int | None = None
) -> tuple[Any, Any]:
    """Pool all clips of a task and split them the original's way, clip by clip (notebook 03).

    Returns ``(train, test)`` ``SplitData`` drawn with :func:`random_split_indices` from the
    concatenation of ``splits`` (e.g. ``data.load_task``'s dict): the same speaker's clips land on
    both sides. Only for measuring the leak; never for real evaluation.
    """
    from .data import SplitData

    parts = list(splits.values())
    classes = list(parts[0].classes)
    if any(list(p.classes) != classes for p in parts):
        raise ValueError("all splits must have the same classes")
    pool = SplitData(
        np.concatenate([np.asarray(p.audio) for p in parts]),
        np.concatenate([np.asarray(p.labels) for p in parts]),
        classes,
        [x for p in parts for x in p.paths],
        [x for p in parts for x in p.speakers],
        "pool",
    )
    train_idx, test_idx = random_split_indices(len(pool), fractions, seed)
    train, test = subset_split(pool, train_idx), subset_split(pool, test_idx)
    train.split, test.split = "train (leaky)", "test (leaky)"
    return train, test
