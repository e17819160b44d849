"""The course's classifiers and their registry (notebooks 03, 04 and 05).

Every model here takes FEATURES, not waveforms: a frontend (``features.LogMel``/``Mfcc`` or the
dB spectrogram of notebook 03) turns a ``(B, 16000)`` waveform batch into a feature batch first.

* 2-D models (:class:`CNNetOriginal`, :class:`CNNet`, BC-ResNet) accept ``(B, F, T)`` or
  ``(B, 1, F, T)`` (``CNNetOriginal`` also the ``(B, 3, F, T)`` RGB images of the original).
* 1-D models (:class:`MfccCnn1d`, :class:`MfccCnn1dPlus`) accept ``(B, C, T)`` with the MFCC
  coefficients as channels (``(B, 1, C, T)`` is squeezed).

All models return raw logits ``(B, n_classes)`` for ``nn.CrossEntropyLoss`` -- except the
documented reference :class:`CNNetOriginal`, which returns log-probabilities like the original.

The registry ties a model name to its constructor and to the feature config it expects::

    model = build_model("cnnet", n_classes=2)
    feature = default_frontend("cnnet")   # {'kind': 'spectrogram', 'n_fft': 400, ...}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CNNetOriginal",
    "CNNet",
    "MfccCnn1d",
    "MfccCnn1dPlus",
    "MODELS",
    "build_model",
    "default_frontend",
]

#: Microsoft Learn's spectrogram images: torchaudio ``Spectrogram()`` defaults on 1 s at 16 kHz.
ORIGINAL_INPUT_SIZE = (201, 81)


def _as_image_batch(x: Tensor) -> Tensor:
    """``(B, F, T)`` -> ``(B, 1, F, T)``; 4-D input is returned unchanged."""
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"expected (B, F, T) or (B, C, F, T) features, got {tuple(x.shape)}")
    return x


class CNNetOriginal(nn.Module):
    """Microsoft Learn's spectrogram CNN, kept exactly as published -- bugs included (notebook 03).

    A documented reference, not a model to use. Layers (input: a ``3 x 201 x 81`` image, i.e. the
    grey spectrogram PNG loaded as RGB and ``Resize((201, 81))``)::

        Conv2d(3, 32, 5) -> max_pool2d(2) -> ReLU -> Conv2d(32, 64, 5) -> Dropout2d -> max_pool2d(2)
        -> ReLU -> flatten -> Linear(51136, 50) -> ReLU -> dropout -> Linear(50, 2) -> ReLU
        -> log_softmax

    Its flaws, each fixed in :class:`CNNet` and measured in notebook 03:

    1. **ReLU on the logits.** The last layer's outputs go through ``ReLU`` before ``log_softmax``,
       so every "logit" is >= 0. When both are clamped to 0 the prediction is exactly 50/50, the
       loss is ``ln 2 = 0.693`` and no gradient flows back through the ReLU: training stalls on
       that plateau (the original run sat at loss ln 2 for its first three epochs).
    2. **log_softmax fed to CrossEntropyLoss.** ``CrossEntropyLoss`` applies ``log_softmax``
       itself. Because ``log_softmax`` is idempotent the numbers happen to come out the same, but
       it is the wrong contract (use ``NLLLoss`` on log-probabilities, or return raw logits).
    3. **One grey channel copied into three.** The PNGs are grey; loading them as RGB triples the
       first layer's weights and the input memory without adding any information.
    4. **A fixed flatten size.** ``Linear(51136, 50)`` hard-codes a ``201 x 81`` input (hence the
       ``Resize``) and holds 2.56 M of the model's 2.6 M parameters: a huge, over-fitting layer.
    5. **No normalisation anywhere** (no batch norm, inputs left in [0, 1] pixel units).

    ``n_classes`` (2 in the original) and ``input_size`` are exposed only so the same reference can
    be trained on other tasks (notebook 05's comparison); the defaults reproduce the original.
    Input may be ``(B, 3, F, T)`` images or ``(B, F, T)`` / ``(B, 1, F, T)`` spectrogram tensors,
    which are copied into three channels exactly as the image loader does.
    """

    def __init__(
        self, n_classes: int = 2, input_size: tuple[int, int] = ORIGINAL_INPUT_SIZE
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=5)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        h, w = input_size
        h, w = (h - 4) // 2, (w - 4) // 2  # conv1 (k5, no padding) + pool 2
        h, w = (h - 4) // 2, (w - 4) // 2  # conv2 + pool 2
        self.fc1 = nn.Linear(64 * h * w, 50)  # 64 * 47 * 17 = 51136 for 201 x 81
        self.fc2 = nn.Linear(50, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = _as_image_batch(x)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # flaw 3: the grey channel copied into RGB
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        x = F.relu(self.fc2(x))  # flaw 1: ReLU on the logits
        return F.log_softmax(x, dim=1)  # flaw 2: CrossEntropyLoss will log_softmax again


class CNNet(nn.Module):
    """The fixed spectrogram CNN: the original's 5x5 conv blocks, every flaw removed (notebook 03).

    ``Conv2d(in, 32, 5) -> BN -> ReLU -> MaxPool 2 -> Conv2d(32, 64, 5) -> BN -> ReLU ->
    Dropout2d -> MaxPool 2`` (the original's blocks) ``-> extra_blocks x [Conv2d 3x3 (channels
    doubling) -> BN -> ReLU -> MaxPool 2] -> AdaptiveAvgPool(pool) -> Linear(c*ph*pw, hidden) ->
    ReLU -> Dropout -> Linear(hidden, n_classes)``, returning raw logits for ``CrossEntropyLoss``.

    Compared with :class:`CNNetOriginal`: one input channel; batch norm after each convolution;
    an adaptive average pool, so any input size works (201 x 81 spectrograms, 40 x 101 log-mels)
    and the classifier shrinks from 2.56 M to ``c*ph*pw*hidden`` weights; no ReLU on the logits;
    ``n_classes`` is a parameter. Input ``(B, F, T)`` or ``(B, in_channels, F, T)``.

    Two choices were measured on real clips (``benchmarks/bench_models.py``): one extra ``3 x 3``
    block (``extra_blocks=1``, the default) -- the original's two blocks see only ~16 x 16 input
    pixels each, too little of a word -- and light dropout (0.1): with 0.3 and two blocks the
    model under-fits. ``pool`` keeps a coarse ``(frequency, time)`` grid: *where* in frequency the
    energy lies matters for speech, so pooling everything to ``(1, 1)`` hurts.
    """

    def __init__(
        self,
        n_classes: int = 2,
        in_channels: int = 1,
        channels: tuple[int, int] = (32, 64),
        pool: tuple[int, int] = (4, 4),
        hidden: int = 64,
        dropout: float = 0.1,
        extra_blocks: int = 1,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, c1, kernel_size=5, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=5, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.MaxPool2d(2),
        ]
        c = c2
        for _ in range(extra_blocks):
            layers += [
                nn.Conv2d(c, 2 * c, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(2 * c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            c *= 2
        layers.append(nn.AdaptiveAvgPool2d(pool))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * pool[0] * pool[1], hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(_as_image_batch(x)))


def _as_sequence_batch(x: Tensor) -> Tensor:
    """``(B, 1, C, T)`` -> ``(B, C, T)``; ``(B, C, T)`` unchanged."""
    if x.dim() == 4 and x.shape[1] == 1:
        return x.squeeze(1)
    if x.dim() != 3:
        raise ValueError(f"expected (B, C, T) coefficient sequences, got {tuple(x.shape)}")
    return x


def _mfcc_channels(in_channels: int | None, n_mfcc: int, deltas: int) -> int:
    """Input channels of a 1-D MFCC CNN: explicit, or ``n_mfcc * (1 + deltas)``."""
    return int(in_channels) if in_channels is not None else n_mfcc * (1 + deltas)


class MfccCnn1d(nn.Module):
    """The plain 1-D CNN over MFCC frames, as in the course's second source (notebook 04).

    The MFCC matrix ``(n_coefficients, frames)`` is read as a sequence over time whose channels are
    the coefficients::

        Conv1d(C, 64, 3) -> ReLU -> MaxPool1d(2) -> Flatten -> Linear(64 * T', 128) -> ReLU
        -> Dropout(0.5) -> Linear(128, n_classes)

    ``Flatten`` ties the model to ``n_frames`` input frames (101 for 1 s with a 10 ms hop).
    ``in_channels`` defaults to ``n_mfcc * (1 + deltas)`` so that it matches ``features.Mfcc``.
    """

    def __init__(
        self,
        n_classes: int = 10,
        n_mfcc: int = 13,
        deltas: int = 0,
        n_frames: int = 101,
        in_channels: int | None = None,
        channels: int = 64,
        kernel_size: int = 3,
        hidden: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        c_in = _mfcc_channels(in_channels, n_mfcc, deltas)
        t_out = (n_frames - kernel_size + 1) // 2
        if t_out < 1:
            raise ValueError(f"n_frames={n_frames} is too short for kernel_size={kernel_size}")
        self.net = nn.Sequential(
            nn.Conv1d(c_in, channels, kernel_size),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2),
            nn.Flatten(),
            nn.Linear(channels * t_out, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(_as_sequence_batch(x))


class MfccCnn1dPlus(nn.Module):
    """The 1-D MFCC CNN with each improvement switchable, measured step by step (notebook 04).

    Starting from :class:`MfccCnn1d`:

    * ``deltas`` (0/1/2): velocity/acceleration rows appended by the frontend
      (``features.Mfcc(deltas=...)``); only the input channel count changes here.
    * ``batch_norm``: ``BatchNorm1d`` after every convolution (bias-free convs then).
    * ``gap``: global average pooling over time instead of ``Flatten`` -- the classifier no longer
      depends on where in the clip the word is, and any clip length works.
    * ``blocks=2``: a second ``Conv1d -> [BN] -> ReLU -> MaxPool1d(2)`` block with twice the
      channels, seeing a longer stretch of time (receptive field 3 -> 10 frames with kernel 3).
    * ``kernel_size=5`` (the default; the plain model has 3): each filter spans 50 ms.

    All off (``deltas=0, batch_norm=False, gap=False, blocks=1, kernel_size=3``) it is exactly the
    plain model.
    """

    def __init__(
        self,
        n_classes: int = 10,
        n_mfcc: int = 13,
        deltas: int = 2,
        n_frames: int = 101,
        in_channels: int | None = None,
        channels: int = 64,
        kernel_size: int = 5,
        hidden: int = 128,
        dropout: float = 0.5,
        batch_norm: bool = True,
        gap: bool = True,
        blocks: int = 2,
    ) -> None:
        super().__init__()
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        c_in = _mfcc_channels(in_channels, n_mfcc, deltas)
        layers: list[nn.Module] = []
        t = n_frames
        c = c_in
        for i in range(blocks):
            c_out = channels * 2**i
            layers.append(nn.Conv1d(c, c_out, kernel_size, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(c_out))
            layers += [nn.ReLU(inplace=True), nn.MaxPool1d(2)]
            t = (t - kernel_size + 1) // 2
            c = c_out
        if gap:
            layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten()]
            flat = c
        else:
            if t < 1:
                raise ValueError(f"n_frames={n_frames} is too short for {blocks} blocks")
            layers.append(nn.Flatten())
            flat = c * t
        layers += [
            nn.Linear(flat, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(_as_sequence_batch(x))


def _build_bcresnet(n_classes: int, **kwargs: Any) -> nn.Module:
    """BC-ResNet from ``bcresnet.py``, imported only when asked for (notebook 05)."""
    from .bcresnet import BCResNet

    return BCResNet(n_classes=n_classes, **kwargs)


#: name -> constructor ``f(n_classes, **kwargs)``.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnnet_original": CNNetOriginal,
    "cnnet": CNNet,
    "mfcc1d": MfccCnn1d,
    "mfcc1d_plus": MfccCnn1dPlus,
    "bcresnet": _build_bcresnet,
}

#: the feature config each model expects (``frontends.make_frontend`` builds it).
_SPECTROGRAM = {"kind": "spectrogram", "n_fft": 400, "hop_length": 200}
_FRONTENDS: dict[str, dict[str, Any]] = {
    "cnnet_original": _SPECTROGRAM,
    "cnnet": _SPECTROGRAM,
    "mfcc1d": {"kind": "mfcc", "n_mfcc": 13, "deltas": 0},
    "mfcc1d_plus": {"kind": "mfcc", "n_mfcc": 13, "deltas": 2},
    "bcresnet": {"kind": "logmel", "n_mels": 40},
}


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")


def build_model(name: str, n_classes: int, **kwargs: Any) -> nn.Module:
    """Build a registered model by name, e.g. ``build_model('cnnet', 2)`` (notebooks 03-05).

    ``kwargs`` go to the model's constructor (for ``mfcc1d*``: ``n_mfcc``, ``deltas``,
    ``batch_norm``, ``gap``, ``blocks``, ...). Unknown names raise ``ValueError``.
    """
    _check_name(name)
    return MODELS[name](n_classes=n_classes, **kwargs)


def default_frontend(name: str, **model_kwargs: Any) -> dict[str, Any]:
    """The feature config ``{'kind': ..., ...}`` that model ``name`` expects (notebooks 03-05).

    ``'cnnet_original'``/``'cnnet'``: Microsoft Learn's dB power spectrogram (n_fft 400, hop 200:
    201 x 81 for 1 s); ``'mfcc1d'``: 13 MFCCs; ``'mfcc1d_plus'``: 13 MFCCs + deltas + delta-deltas;
    ``'bcresnet'``: 40 log-mel bands. For the MFCC models, ``n_mfcc``/``deltas`` given as model
    kwargs are copied into the config so that the frontend and the model always agree.
    """
    _check_name(name)
    spec = dict(_FRONTENDS[name])
    if spec["kind"] == "mfcc":
        for key in ("n_mfcc", "deltas"):
            if key in model_kwargs:
                spec[key] = model_kwargs[key]
    return spec


def _self_check() -> None:  # pragma: no cover - a quick manual smoke test
    for name in ("cnnet_original", "cnnet"):
        out = build_model(name, 2)(torch.zeros(2, *ORIGINAL_INPUT_SIZE))
        assert out.shape == (2, 2)
    for name in ("mfcc1d", "mfcc1d_plus"):
        spec = default_frontend(name)
        c = spec["n_mfcc"] * (1 + spec["deltas"])
        assert build_model(name, 10)(torch.zeros(2, c, 101)).shape == (2, 10)


if __name__ == "__main__":  # pragma: no cover
    _self_check()
    print("ok")
