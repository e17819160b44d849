"""Feature front-ends by name: a config dict -> an ``nn.Module`` (notebooks 03-05).

A checkpoint stores the feature config (``{'kind': 'logmel', 'n_mels': 40, ...}``), never the
module itself; :func:`make_frontend` rebuilds the module from it, so training, evaluation and
inference always compute the same features::

    frontend = make_frontend({"kind": "logmel", "n_mels": 40})   # (B, 16000) -> (B, 40, 101)
    frontend = make_frontend({"kind": "spectrogram"})            # (B, 16000) -> (B, 201, 81)
"""

from __future__ import annotations

from typing import Any

import torch
import torchaudio
from torch import Tensor, nn

from .features import build_frontend, frontend_spec

__all__ = ["DbSpectrogram", "FRONTEND_KINDS", "make_frontend", "frontend_config"]

FRONTEND_KINDS = ("logmel", "mfcc", "spectrogram")


class DbSpectrogram(nn.Module):
    """Power spectrogram in decibels, Microsoft Learn's input for notebook 03 (notebook 03).

    ``torchaudio.transforms.Spectrogram(n_fft=400, hop_length=200)`` on a 1-s clip at 16 kHz gives
    ``201 x 81`` (frequency bins x frames), as in the original exercise. The power is converted to
    ``10 * log10(max(power, floor))``: the floor (``1e-10`` = -100 dB) keeps digital silence finite,
    where the original ``log(0)`` produced ``-inf`` and NaN images. With ``top_db`` the values are
    also clipped to ``top_db`` below each clip's maximum (``None``: no clipping).

    Input: float waveforms in [-1, 1] or int16 PCM, ``(T,)``, ``(B, T)`` or ``(B, 1, T)``; output
    ``(..., n_fft // 2 + 1, frames)`` in float32 (also under CUDA autocast).
    """

    kind = "spectrogram"

    def __init__(
        self,
        n_fft: int = 400,
        hop_length: int = 200,
        win_length: int | None = None,
        floor: float = 1e-10,
        top_db: float | None = None,
        center: bool = True,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__()
        if floor <= 0:
            raise ValueError(f"floor must be > 0 so that silence stays finite, got {floor}")
        self.config: dict[str, Any] = dict(
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=win_length,
            floor=floor,
            top_db=top_db,
            center=center,
            sample_rate=sample_rate,
        )
        self.spec = torchaudio.transforms.Spectrogram(
            n_fft=n_fft, hop_length=hop_length, win_length=win_length, power=2.0, center=center
        )

    @property
    def n_features(self) -> int:
        """Feature rows per frame (``n_fft // 2 + 1``)."""
        return int(self.config["n_fft"]) // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a clip of ``num_samples`` samples (81 for 1 s at the defaults)."""
        n_fft, hop = self.config["n_fft"], self.config["hop_length"]
        if self.config["center"]:
            return num_samples // hop + 1
        return (num_samples - n_fft) // hop + 1

    def forward(self, x: Tensor) -> Tensor:
        if not x.is_floating_point():
            x = x.float() / 32768.0
        with torch.autocast(device_type=x.device.type, enabled=False):
            power = self.spec(x.float())
        db = 10.0 * torch.log10(power.clamp_min(self.config["floor"]))
        top_db = self.config["top_db"]
        if top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - top_db)
        return db

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def make_frontend(config: dict[str, Any] | None = None) -> nn.Module:
    """Build the feature module described by ``config`` (notebooks 03-05).

    ``config['kind']`` is 'logmel' (:class:`features.LogMel`), 'mfcc' (:class:`features.Mfcc`) or
    'spectrogram' (:class:`DbSpectrogram`); the other keys are the module's arguments. ``None``
    means the default 40-band log-mel. Unknown kinds raise ``ValueError`` naming the known ones.
    """
    config = dict(config or {"kind": "logmel"})
    kind = config.pop("kind", "logmel")
    if kind == "spectrogram":
        return DbSpectrogram(**config)
    if kind in ("logmel", "mfcc"):
        return build_frontend(kind, **config)
    raise ValueError(f"unknown feature kind {kind!r}; known: {list(FRONTEND_KINDS)}")


def frontend_config(frontend: nn.Module) -> dict[str, Any]:
    """The full ``{'kind': ..., **arguments}`` dict that rebuilds ``frontend`` (notebook 05)."""
    if isinstance(frontend, DbSpectrogram):
        return {"kind": frontend.kind, **dict(frontend.config)}
    return frontend_spec(frontend)
