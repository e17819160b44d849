"""Notebook 03's image route: spectrogram PNGs read like ``ImageFolder`` (notebook 03).

Microsoft Learn trains its CNN from PNGs: ``ImageFolder`` over one folder per class, each grey
image loaded as RGB and resized to 201 x 81, then an unseeded ``random_split`` 80/20. This
module reproduces that route with Pillow (no torchvision) so the course can run, time and fix
it: :class:`SpectrogramImageFolder` reads what ``features.export_spectrogram_pngs`` writes,
:func:`pixels_from_audio` computes the same pixels in memory.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .features import DbSpectrogram, export_spectrogram_pngs

__all__ = ["SpectrogramImageFolder", "image_loader", "export_split_images", "pixels_from_audio"]

_MODES = ("original", "fixed")
_ORIGINAL_SIZE = (201, 81)  # the original's Resize((201, 81)): (frequency bins, frames)


def _load_png(path: str | Path, mode: str = "fixed", size=_ORIGINAL_SIZE) -> Tensor:
    """One PNG as floats in [0, 1]: 'original' = RGB resized ``(3, H, W)`` as ImageFolder gave
    Microsoft Learn's CNN; 'fixed' = the grey channel, unresized, lowest frequency in row 0."""
    from PIL import Image

    with Image.open(path) as im:
        if mode == "original":
            im = im.convert("RGB")
            if size is not None and im.size != (size[1], size[0]):  # PIL sizes are (W, H)
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)  # (3, H, W)
        else:  # the exporter stores the highest frequency first, as a viewer expects
            arr = np.asarray(im.convert("L"), dtype=np.uint8)[::-1][None]  # (1, F, T)
    return torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)


class SpectrogramImageFolder(Dataset):
    """``root/<class>/*.png`` as ``(image, label)`` pairs, like ``ImageFolder`` (notebook 03).

    ``classes``: label order (default: the sorted folder names, as ImageFolder; pass the task's
    classes so image and tensor labels agree). ``mode``: 'original' (3 channels resized to 201 x
    81, as published) or 'fixed' (1 channel, as stored). Every access decodes the file again, as
    ImageFolder does. ``sources``: each image's source clip from ``manifest.csv`` ('' unknown).
    """

    def __init__(
        self, root: str | Path, mode: str = "fixed", classes: Sequence[str] | None = None
    ) -> None:
        self.root, self.mode = Path(root), mode
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        self.classes = list(classes or sorted(d.name for d in self.root.iterdir() if d.is_dir()))
        missing = [c for c in self.classes if not (self.root / c).is_dir()]
        if missing:
            raise FileNotFoundError(f"{self.root}: no folder for class(es) {missing}")
        found = [(f, i) for i, c in enumerate(self.classes)
                 for f in sorted((self.root / c).glob("*.png"))]
        if not found:
            raise FileNotFoundError(f"{self.root}: no .png files in {self.classes}")
        self.files, self.targets = [f for f, _ in found], [i for _, i in found]
        sources = {}
        if (self.root / "manifest.csv").is_file():
            with open(self.root / "manifest.csv", newline="") as f:
                sources = {row["file"]: row["source"] for row in csv.DictReader(f)}
        self.sources = [sources.get(f.relative_to(self.root).as_posix(), "") for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return _load_png(self.files[i], self.mode), self.targets[i]

    def source_rows(self) -> list[int]:
        """Each image's row in the exported split (the ``<row>_`` file-name prefix; -1 if none)."""
        heads = [f.name.split("_", 1)[0] for f in self.files]
        return [int(h) if h.isdigit() else -1 for h in heads]

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All images and labels as two tensors ``(N, C, H, W)``, ``(N,)``."""
        xs = [self[i][0] for i in range(len(self))]
        return torch.stack(xs), torch.as_tensor(self.targets, dtype=torch.long)


def image_loader(
    data: str | Path | Dataset, batch_size: int = 15, shuffle: bool = True, mode: str = "fixed",
    classes: Sequence[str] | None = None, seed: int | None = 0,
) -> DataLoader:
    """A ``DataLoader`` of ``(images, labels)`` batches for ``train.fit`` (notebook 03).

    ``data``: a folder (read with :class:`SpectrogramImageFolder`) or a dataset. Batch 15 is the
    original's. Shuffle only the training loader: a shuffled test loader (as in the original)
    loses the link between prediction and file. ``seed`` fixes the order (``None``: global RNG).
    """
    ds = data if isinstance(data, Dataset) else SpectrogramImageFolder(data, mode, classes)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    pin = torch.cuda.is_available()
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, pin_memory=pin, generator=gen)


def export_split_images(splits: dict[str, Any], out_dir: str | Path, **kwargs: Any) -> dict:
    """Every split of a task as PNG folders ``out_dir/<split>/<class>/`` (notebook 03).

    ``splits``: ``data.load_task``'s dict. The grey-level range comes from the TRAINING split and
    is reused for the others (one grey level = one power everywhere). ``kwargs`` go to
    ``export_spectrogram_pngs``. Returns ``folders``, ``db_range``, ``n``, ``seconds``,
    ``clips_per_s``.
    """
    out_dir, db_range = Path(out_dir), kwargs.pop("db_range", None)
    folders, n, seconds = {}, 0, 0.0
    for name in ("train", *[k for k in splits if k != "train"]):
        sd = splits[name]
        opts = dict(paths=list(sd.paths), db_range=db_range, **kwargs)
        info = export_spectrogram_pngs(sd.audio, sd.labels, sd.classes, out_dir / name, **opts)
        db_range, folders[name] = info["db_range"], out_dir / name
        n, seconds = n + info["n"], seconds + info["seconds"]
    rate = n / seconds if seconds > 0 else float("inf")
    return dict(folders=folders, db_range=db_range, n=n, seconds=seconds, clips_per_s=rate)


@torch.no_grad()
def pixels_from_audio(
    audio: np.ndarray | Tensor, db_range: tuple[float, float], n_fft: int = 400,
    hop_length: int = 200, quantize: bool = True, highest_first: bool = False,
    device: str | torch.device = "cpu", batch_size: int = 512,
) -> Tensor:
    """The exported PNGs' pixels computed in memory: ``(N, F, T)`` in [0, 1] (notebook 03).

    The exporter's dB spectrogram mapped from its ``db_range`` to [0, 1], rounded to 256 grey
    levels when ``quantize`` (then equal to 'fixed'-mode images); row 0 is the lowest frequency
    (``highest_first=True``: as stored, what 'original' mode reads). No files, one transform.
    """
    lo, hi = float(db_range[0]), float(db_range[1])
    if not hi > lo:
        raise ValueError(f"db_range must be (low, high) with high > low, got {db_range}")
    spec = DbSpectrogram(n_fft=n_fft, hop_length=hop_length).to(device)
    out = []
    for s in range(0, len(audio), batch_size):
        part = audio[s : s + batch_size]
        xb = part if isinstance(part, Tensor) else torch.from_numpy(np.array(part))  # copy: memmap
        px = (spec(xb.to(device)) - lo) * (255.0 / (hi - lo))
        px = (px.round_() if quantize else px).clamp_(0, 255).div_(255.0)
        out.append((px.flip(-2) if highest_first else px).cpu())
    return torch.cat(out)
