"""The course's classifiers and their one registry, name -> (model, frontend) (notebooks 03-05).

Models take features, not waveforms: ``model_frontend(name)`` is the feature config each one
expects. 2-D models take ``(B, F, T)``, 1-D models ``(B, C, T)`` with the MFCC coefficients as
channels; all return logits, except :class:`CNNetOriginal` (log-probabilities, as published).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from .bcresnet import BCResNet

__all__ = ["CNNetOriginal", "CNNet", "MfccCnn1d", "build_model", "model_frontend"]


def _as_image_batch(x: Tensor) -> Tensor:
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"expected (B, F, T) or (B, C, F, T) features, got {tuple(x.shape)}")
    return x


def _as_sequence_batch(x: Tensor) -> Tensor:
    if x.dim() == 4 and x.shape[1] == 1:
        return x.squeeze(1)
    if x.dim() != 3:
        raise ValueError(f"expected (B, C, T) coefficient sequences, got {tuple(x.shape)}")
    return x


class CNNetOriginal(nn.Module):
    """Microsoft Learn's spectrogram CNN as published, flaws included (notebook 03 writes it)."""

    def __init__(self, n_classes: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=5)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(51136, 50)  # 64 channels x 47 x 17 positions: only 201 x 81 fits
        self.fc2 = nn.Linear(50, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:  # (B, F, T) from the tensor route: add the channel axis
            x = x.unsqueeze(1)
        x = x.expand(-1, 3, -1, -1)  # one grey channel copied into RGB, as ImageFolder does
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(self.flatten(x)))
        x = F.dropout(x, training=self.training)
        x = F.relu(self.fc2(x))  # flaw: a ReLU on the logits
        return F.log_softmax(x, dim=1)  # flaw: CrossEntropyLoss applies log_softmax again


def _conv_bn(c_in: int, c_out: int, k: int, padding: int = 0) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, padding=padding, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]  # fmt: skip


class CNNet(nn.Module):
    """The fixed spectrogram CNN: the original's 5x5 blocks, every flaw removed (notebook 03b).

    One input channel, batch norm after each convolution, ``extra_blocks`` 3x3 blocks (the
    original's two blocks see only ~16 x 16 input cells), an adaptive average pool to a coarse
    ``pool`` grid (any input size; where in frequency the energy lies still matters), a small
    classifier and raw logits. Settings measured in ``benchmarks/bench_models.py``.
    """

    def __init__(
        self,
        n_classes: int = 2,
        channels: tuple[int, int] = (32, 64),
        pool: tuple[int, int] = (4, 4),
        hidden: int = 64,
        dropout: float = 0.1,
        extra_blocks: int = 1,
    ) -> None:
        super().__init__()
        c1, c = channels
        layers = [*_conv_bn(1, c1, 5), nn.MaxPool2d(2), *_conv_bn(c1, c, 5), nn.Dropout2d(dropout),
                  nn.MaxPool2d(2)]  # fmt: skip
        for _ in range(extra_blocks):
            layers += [*_conv_bn(c, 2 * c, 3, padding=1), nn.MaxPool2d(2, ceil_mode=True)]
            c *= 2
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(pool))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * pool[0] * pool[1], hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(_as_image_batch(x)))


class MfccCnn1d(nn.Module):
    """The source article's 1-D CNN over MFCC frames (notebook 04 writes it)."""

    def __init__(self, n_classes: int = 10, n_mfcc: int = 13, n_frames: int = 101) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(n_mfcc, 64, kernel_size=3),  # the coefficients are the input channels
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Flatten(),  # ties the model to n_frames
            nn.Linear(64 * ((n_frames - 2) // 2), 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, n_classes),  # the article's softmax is folded into the loss
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.squeeze(1) if x.dim() == 4 else x)  # (B, 1, C, T) -> (B, C, T)


class MfccCnn1dPlus(nn.Module):
    """The 1-D MFCC CNN with each improvement switchable, measured step by step (notebook 04).

    ``deltas`` (input channels only), ``batch_norm`` after every convolution, ``gap`` (global
    average pooling over time instead of Flatten), ``blocks`` (each one doubles the channels and
    halves time) and ``kernel_size``. All off (0, False, False, 1, 3) it is :class:`MfccCnn1d`.
    """

    def __init__(
        self,
        n_classes: int = 10,
        n_mfcc: int = 13,
        deltas: int = 2,
        n_frames: int = 101,
        kernel_size: int = 5,
        batch_norm: bool = True,
        gap: bool = True,
        blocks: int = 2,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, t = n_mfcc * (1 + deltas), n_frames
        for i in range(blocks):
            layers.append(nn.Conv1d(c, 64 * 2**i, kernel_size, bias=not batch_norm))
            c, t = 64 * 2**i, (t - kernel_size + 1) // 2
            layers += [nn.BatchNorm1d(c)] if batch_norm else []
            layers += [nn.ReLU(inplace=True), nn.MaxPool1d(2)]
        if t < 1 and not gap:
            raise ValueError(f"n_frames={n_frames} is too short for {blocks} blocks")
        layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten()] if gap else [nn.Flatten()]
        flat = c if gap else c * t
        layers += [nn.Linear(flat, 128), nn.ReLU(inplace=True), nn.Dropout(0.5),
                   nn.Linear(128, n_classes)]  # fmt: skip
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(_as_sequence_batch(x))


_SPECTROGRAM = {"kind": "spectrogram", "n_fft": 400, "hop_length": 200}  # Microsoft Learn's 201x81
#: The one registry: name -> (constructor taking ``n_classes``, the feature config it expects).
MODELS: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    "cnnet_original": (CNNetOriginal, _SPECTROGRAM),
    "cnnet": (CNNet, _SPECTROGRAM),
    "mfcc1d": (MfccCnn1d, {"kind": "mfcc", "n_mfcc": 13, "deltas": 0}),
    "mfcc1d_plus": (MfccCnn1dPlus, {"kind": "mfcc", "n_mfcc": 13, "deltas": 2}),
    "bcresnet": (BCResNet, {"kind": "logmel", "n_mels": 40}),
}


def _entry(name: str) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, n_classes: int, **kwargs: Any) -> nn.Module:
    """A registered model by name, e.g. ``build_model('cnnet', 2)`` (notebooks 03-05)."""
    try:
        return _entry(name)[0](n_classes=n_classes, **kwargs)
    except TypeError as e:
        raise ValueError(f"model {name!r} does not take {sorted(kwargs)}: {e}") from e


def model_frontend(name: str, **model_kwargs: Any) -> dict[str, Any]:
    """The feature config ``{'kind': ..., ...}`` that model ``name`` expects (notebooks 03-05).

    For the MFCC models, ``n_mfcc``/``deltas`` given as model kwargs are copied into the config,
    and BC-ResNet's ``n_mels`` likewise, so that frontend and model always agree.
    """
    spec = dict(_entry(name)[1])
    for key in ("n_mfcc", "deltas", "n_mels"):
        if key in model_kwargs and key in spec:
            spec[key] = model_kwargs[key]
    return spec
