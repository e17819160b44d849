"""BC-ResNet: broadcasted residual learning for keyword spotting (notebook 05).

Kim, Chang, Lee and Sung, "Broadcasted Residual Learning for Efficient Keyword Spotting",
Interspeech 2021 (arXiv:2106.04140). Written from the paper's description.

The idea in one paragraph. A log-mel input is 2-D (frequency x time), but most of what tells
keywords apart happens along time. A BC-ResNet block therefore does only a cheap *frequency-wise*
depthwise convolution in 2-D (``f2``, normalised per frequency sub-band with SubSpectralNorm),
then averages over frequency and runs the expensive part -- a dilated *temporal* depthwise
convolution, batch norm, swish, a pointwise convolution and channel dropout (``f1``) -- on the
resulting 1-D sequence. The 1-D output is *broadcast* back over frequency and added to the 2-D
features (and to the block's input, in a normal block)::

    y = ReLU(x + f2(x) + BC(f1(avgpool_freq(f2(x)))))

so the network keeps 2-D feature maps (frequency equivariance) at close to 1-D cost.

Architecture (``width`` = the paper's tau; ``c = 8 * width``):

========================  ===========  ======================================  =====
stage                     channels     what                                    freq
========================  ===========  ======================================  =====
head                      2c           conv 5x5, stride (2, 1), BN, ReLU       F/2
stage 1 (2 blocks)        c            dilation 1                              F/2
stage 2 (2 blocks)        1.5c         first block: frequency stride 2, dil 2  F/4
stage 3 (4 blocks)        2c           first block: frequency stride 2, dil 4  F/8
stage 4 (4 blocks)        2.5c         dilation 8                              F/8
classifier                4c           depthwise conv (F/8 x 5), 1x1 conv,     1
                                       BN, ReLU, mean over time, 1x1 -> logits
========================  ===========  ======================================  =====

The first block of each stage is a *transition* block: a 1x1 convolution (BN, ReLU) changes the
channel count first and the identity shortcut is dropped. BC-ResNet-1/-3/-8 (width 1, 3, 8) have
about 9.2k, 54k and 321k parameters on 40 mel bands, 12 classes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "PointwiseConv2d",
    "SubSpectralNorm",
    "BCResBlock",
    "BCResNet",
    "bcresnet_frontend",
    "stage_channels",
]


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 convolution (an ``nn.Conv2d``: same weights, state dict and ONNX graph) (notebook 05).

    On the CPU it runs as one batched matrix product ``W @ x`` over all positions, which for the
    few channels of BC-ResNet is several times faster (forward and backward) than PyTorch's oneDNN
    convolution; on GPUs the regular (cuDNN) convolution is used.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
            return super().forward(x)
        b, c, f, t = x.shape
        w = self.weight.view(self.out_channels, c)
        y = torch.matmul(w, x.reshape(b, c, f * t)).view(b, self.out_channels, f, t)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


class SubSpectralNorm(nn.Module):
    """Batch norm with separate statistics and affine terms per frequency sub-band (notebook 05).

    The frequency axis of a ``(B, C, F, T)`` map is cut into ``sub_bands`` equal, contiguous
    bands; each (channel, band) pair is normalised on its own. Low and high frequencies have very
    different statistics, so one mean/variance per channel (plain BN) blurs them; SubSpectralNorm
    (Chang et al., 2021) keeps them apart at the cost of ``sub_bands`` times the BN parameters.
    Implemented as one ``BatchNorm2d`` over ``C * sub_bands`` channels after a free reshape.
    """

    def __init__(self, channels: int, sub_bands: int = 5, eps: float = 1e-5) -> None:
        super().__init__()
        self.sub_bands = sub_bands
        self.bn = nn.BatchNorm2d(channels * sub_bands, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        b, c, f, t = x.shape
        if f % self.sub_bands:
            raise ValueError(
                f"SubSpectralNorm: {f} frequency rows cannot be cut into {self.sub_bands} bands"
            )
        y = self.bn(x.reshape(b, c * self.sub_bands, f // self.sub_bands, t))
        return y.reshape(b, c, f, t)


class BCResBlock(nn.Module):
    """One broadcasted-residual block (notebook 05).

    ``f2``: [1x1 conv, BN, ReLU when the channel count changes] -> depthwise (3 x 1) convolution
    over frequency (stride ``freq_stride``) -> SubSpectralNorm. Then an average over frequency
    gives a ``(B, C, 1, T)`` sequence for ``f1``: depthwise (1 x 3) convolution over time with
    dilation ``dilation`` -> BN -> swish -> 1x1 convolution -> channel dropout. ``f1``'s output is
    broadcast over frequency, added to ``f2``'s output and -- in a normal (non-transition) block --
    to the input, then ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        freq_stride: int = 1,
        dilation: int = 1,
        sub_bands: int = 5,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.transition = in_channels != out_channels or freq_stride != 1
        f2: list[nn.Module] = []
        if in_channels != out_channels:
            f2 += [
                PointwiseConv2d(in_channels, out_channels),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
        f2 += [
            nn.Conv2d(
                out_channels,
                out_channels,
                kernel_size=(3, 1),
                stride=(freq_stride, 1),
                padding=(1, 0),
                groups=out_channels,
                bias=False,
            ),
            SubSpectralNorm(out_channels, sub_bands),
        ]
        self.f2 = nn.Sequential(*f2)
        self.f1 = nn.Sequential(
            nn.Conv2d(
                out_channels,
                out_channels,
                kernel_size=(1, 3),
                padding=(0, dilation),
                dilation=(1, dilation),
                groups=out_channels,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(inplace=True),
            PointwiseConv2d(out_channels, out_channels),
            nn.Dropout2d(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x2 = self.f2(x)  # (B, C, F', T): the 2-D, frequency-wise part
        x1 = self.f1(x2.mean(dim=2, keepdim=True))  # (B, C, 1, T): the 1-D, temporal part
        out = x2 + x1  # broadcast over frequency
        if not self.transition:
            out = out + x
        return torch.relu(out)


def stage_channels(width: float = 1.0) -> list[int]:
    """Channels of head, stages 1-4 and classifier for width tau (notebook 05).

    ``8 * tau`` times 2, 1, 1.5, 2, 2.5 and 4, as in the paper.
    """
    base = max(1, int(round(8 * width)))
    return [base * 2, base, int(base * 1.5), base * 2, int(base * 2.5), base * 4]


class BCResNet(nn.Module):
    """BC-ResNet-``width`` keyword-spotting model on log-mel features (notebook 05).

    Input: ``(B, n_mels, frames)`` or ``(B, 1, n_mels, frames)`` log-mel features (normalised or
    not: the first layer is followed by batch norm); output: raw logits ``(B, n_classes)``.
    ``width`` (the paper's tau, alias ``scale``) multiplies every channel count: 1 -> ~9.2k
    parameters, 3 -> ~54k, 8 -> ~321k (40 mel bands, 12 classes). The frequency axis is halved three
    times (head, stage 2, stage 3) and every SubSpectralNorm cuts it into ``sub_bands`` bands, so
    ``n_mels`` must be divisible by 8 and ``n_mels / 8`` by ``sub_bands`` (40 -> 20, 10, 5 rows).
    """

    def __init__(
        self,
        n_classes: int = 12,
        width: float = 1.0,
        n_mels: int = 40,
        sub_bands: int = 5,
        dropout: float = 0.1,
        blocks: tuple[int, int, int, int] = (2, 2, 4, 4),
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if scale is not None:
            width = scale
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        freq = [n_mels // 2, n_mels // 4, n_mels // 8]
        if n_mels % 8 or any(f % sub_bands for f in freq):
            raise ValueError(
                f"n_mels={n_mels} must be divisible by 8 and give {freq} rows that split into "
                f"{sub_bands} sub-bands (40 mel bands with 5 sub-bands works)"
            )
        self.width = width
        self.n_mels = n_mels
        self.n_classes = n_classes
        ch = stage_channels(width)
        self.head = nn.Sequential(
            nn.Conv2d(1, ch[0], kernel_size=5, stride=(2, 1), padding=2, bias=False),
            nn.BatchNorm2d(ch[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        for i, n in enumerate(blocks):
            layers = []
            for j in range(n):
                layers.append(
                    BCResBlock(
                        ch[i] if j == 0 else ch[i + 1],
                        ch[i + 1],
                        freq_stride=2 if (i in (1, 2) and j == 0) else 1,
                        dilation=2**i,
                        sub_bands=sub_bands,
                        dropout=dropout,
                    )
                )
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        f_last = n_mels // 8
        self.classifier = nn.Sequential(
            nn.Conv2d(ch[4], ch[4], (f_last, 5), padding=(0, 2), groups=ch[4], bias=False),
            PointwiseConv2d(ch[4], ch[5]),
            nn.BatchNorm2d(ch[5]),
            nn.ReLU(inplace=True),
        )
        self.fc = PointwiseConv2d(ch[5], n_classes, bias=True)  # linear layer on pooled features

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected (B, F, T) or (B, 1, F, T) log-mels, got {tuple(x.shape)}")
        if x.shape[2] != self.n_mels:
            raise ValueError(f"expected {self.n_mels} mel bands, got {x.shape[2]}")
        x = self.classifier(self.stages(self.head(x)))  # (B, 4c, 1, T)
        x = x.mean(dim=(2, 3), keepdim=True)  # global average over time
        return self.fc(x).flatten(1)


def bcresnet_frontend(n_mels: int = 40) -> dict[str, Any]:
    """BC-ResNet's feature config: 40 log-mel bands, 30 ms window, 10 ms hop (notebook 05)."""
    return {"kind": "logmel", "n_mels": n_mels, "n_fft": 480, "hop_length": 160}
