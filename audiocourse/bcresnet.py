"""BC-ResNet: broadcasted residual learning for keyword spotting (notebook 05).

Kim, Chang, Lee and Sung, "Broadcasted Residual Learning for Efficient Keyword Spotting",
Interspeech 2021 (arXiv:2106.04140), written from the paper. A block does a cheap frequency-wise
depthwise convolution in 2-D (``f2``, normalised per sub-band), averages over frequency, runs the
temporal part in 1-D (``f1``) and broadcasts it back over frequency::

    y = ReLU(x + f2(x) + BC(f1(avgpool_freq(f2(x)))))

Channels for width tau (``c = 8 * tau``): head 2c, stages 1-4 c, 1.5c, 2c, 2.5c (2, 2, 4, 4
blocks; dilations 1, 2, 4, 8; frequency stride 2 in the first block of stages 2 and 3),
classifier 4c. BC-ResNet-1/-3/-8 have about 9.2k, 54k and 321k parameters (40 mels, 12 classes).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SubSpectralNorm", "BCResNet"]


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 convolution; on the CPU one batched matmul, several times faster than oneDNN's."""

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
    """Batch norm with its own statistics per frequency sub-band (notebook 05).

    Low and high frequencies have very different statistics; one mean/variance per channel blurs
    them. Cutting the frequency axis into ``sub_bands`` bands and normalising each (channel, band)
    pair on its own is one ``BatchNorm2d`` over ``C * sub_bands`` channels after a free reshape.
    """

    def __init__(self, channels: int, sub_bands: int = 5) -> None:
        super().__init__()
        self.sub_bands = sub_bands
        self.bn = nn.BatchNorm2d(channels * sub_bands)

    def forward(self, x: Tensor) -> Tensor:
        b, c, f, t = x.shape
        if f % self.sub_bands:
            raise ValueError(f"{f} frequency rows cannot be cut into {self.sub_bands} sub-bands")
        return self.bn(x.reshape(b, c * self.sub_bands, f // self.sub_bands, t)).reshape(b, c, f, t)


class BCResBlock(nn.Module):
    """One block: ``f2`` (frequency, 2-D) + broadcast ``f1`` (time, 1-D) + identity if normal."""

    def __init__(
        self, c_in: int, c_out: int, freq_stride: int, dilation: int, sub_bands: int, dropout: float
    ) -> None:
        super().__init__()
        self.transition = c_in != c_out or freq_stride != 1  # no identity shortcut then
        f2: list[nn.Module] = []
        if c_in != c_out:
            f2 += [PointwiseConv2d(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        f2 += [
            nn.Conv2d(c_out, c_out, (3, 1), (freq_stride, 1), (1, 0), groups=c_out, bias=False),
            SubSpectralNorm(c_out, sub_bands),
        ]
        self.f2 = nn.Sequential(*f2)
        self.f1 = nn.Sequential(
            nn.Conv2d(
                c_out, c_out, (1, 3), padding=(0, dilation), dilation=(1, dilation),
                groups=c_out, bias=False,
            ),  # fmt: skip
            nn.BatchNorm2d(c_out),
            nn.SiLU(inplace=True),
            PointwiseConv2d(c_out, c_out),
            nn.Dropout2d(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x2 = self.f2(x)  # (B, C, F', T): the 2-D, frequency-wise part
        out = x2 + self.f1(x2.mean(dim=2, keepdim=True))  # (B, C, 1, T) broadcast over frequency
        return torch.relu(out if self.transition else out + x)


class BCResNet(nn.Module):
    """BC-ResNet-``width`` on ``(B, n_mels, frames)`` log-mel features -> logits (notebook 05).

    ``width`` is the paper's tau (1 -> ~9.2k parameters, 3 -> ~54k, 8 -> ~321k). The frequency
    axis is halved three times and each SubSpectralNorm cuts it into ``sub_bands`` bands, so
    ``n_mels`` must be divisible by 8 and ``n_mels / 8`` by ``sub_bands`` (40 -> 20, 10, 5 rows).
    """

    def __init__(
        self, n_classes: int = 12, width: float = 1.0, n_mels: int = 40, sub_bands: int = 5,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if n_mels % 8 or (n_mels // 8) % sub_bands:
            raise ValueError(f"n_mels={n_mels} must be divisible by 8 * sub_bands={sub_bands}")
        self.n_mels = n_mels
        base = max(1, round(8 * width))
        ch = [2 * base, base, int(1.5 * base), 2 * base, int(2.5 * base), 4 * base]
        self.head = nn.Sequential(
            nn.Conv2d(1, ch[0], 5, stride=(2, 1), padding=2, bias=False),
            nn.BatchNorm2d(ch[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        for i, n in enumerate((2, 2, 4, 4)):
            stride = 2 if i in (1, 2) else 1
            stages += [
                BCResBlock(ch[i] if j == 0 else ch[i + 1], ch[i + 1], stride if j == 0 else 1,
                           2**i, sub_bands, dropout)  # fmt: skip
                for j in range(n)
            ]
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Sequential(
            nn.Conv2d(ch[4], ch[4], (n_mels // 8, 5), padding=(0, 2), groups=ch[4], bias=False),
            PointwiseConv2d(ch[4], ch[5]),
            nn.BatchNorm2d(ch[5]),
            nn.ReLU(inplace=True),
        )
        self.fc = PointwiseConv2d(ch[5], n_classes, bias=True)  # linear layer on pooled features

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.n_mels:
            raise ValueError(f"expected (B, {self.n_mels}, T) log-mels, got {tuple(x.shape)}")
        x = self.classifier(self.stages(self.head(x)))  # (B, 4c, 1, T)
        return self.fc(x.mean(dim=(2, 3), keepdim=True)).flatten(1)  # average over time
