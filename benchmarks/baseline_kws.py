"""A plain reference for the keyword-spotting benchmark (issue 12), deliberately NOT the course's.

A small residual CNN on 40 log-mel bands (30 ms window, 10 ms hop) with a plain modern recipe,
untuned: time shift +-100 ms, background noise, SpecAugment (2 frequency masks up to 7 bands, 2
time masks up to 20 frames), per-clip feature normalisation, AdamW with a one-cycle schedule,
label smoothing 0.1, 40 epochs, the last epoch kept. It shares only the log-mel frontend and the
augmentation functions with the course, so the course's own choices (BC-ResNet, its recipe,
per-band normalisation, best-epoch selection) stand next to something they did not shape.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audiocourse.features import LogMel, mix_noise, spec_augment, time_shift

RECIPE = {"epochs": 40, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-2,
          "label_smoothing": 0.1, "shift": 1600, "noise_prob": 0.8, "noise_gain": 0.1}


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


class ResNetKws(nn.Module):
    """Stem 3x3 conv (32) -> residual blocks 32, 64 (stride 2), 128 (stride 2) -> mean -> linear."""

    def __init__(self, n_classes: int = 12) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32),
                                  nn.ReLU())
        self.blocks = nn.Sequential(_Block(32, 32, 1), _Block(32, 64, 2), _Block(64, 128, 2))
        self.fc = nn.Linear(128, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x.unsqueeze(1)))
        return self.fc(x.mean(dim=(2, 3)))


def _features(frontend: nn.Module, x: Tensor) -> Tensor:
    f = frontend(x)
    mean = f.mean(dim=(1, 2), keepdim=True)
    return (f - mean) / f.std(dim=(1, 2), keepdim=True).clamp_min(1e-5)  # per clip


def train_baseline(train_audio: np.ndarray, train_labels: np.ndarray, noise: np.ndarray,
                   n_classes: int, seed: int = 0, epochs: int | None = None) -> nn.Module:
    """Train the reference model on int16 clips; returns it in eval mode (last epoch)."""
    r = {**RECIPE, **({"epochs": epochs} if epochs else {})}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    model, frontend = ResNetKws(n_classes), LogMel(n_mels=40)
    x_all = torch.from_numpy(np.ascontiguousarray(train_audio))
    y_all = torch.from_numpy(np.asarray(train_labels)).long()
    bank = torch.from_numpy(np.asarray(noise, np.float32))
    steps = r["epochs"] * math.ceil(len(y_all) / r["batch_size"])
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], total_steps=steps)
    for epoch in range(r["epochs"]):
        t0, model = time.perf_counter(), model.train()
        for idx in torch.randperm(len(y_all), generator=gen).split(r["batch_size"]):
            with torch.no_grad():
                x = time_shift(x_all[idx], r["shift"], generator=gen).float() / 32768
                if len(bank):
                    x = mix_noise(x, bank, r["noise_prob"], r["noise_gain"], generator=gen)
                f = spec_augment(_features(frontend, x), freq_masks=2, freq_width=7,
                                 time_masks=2, time_width=20, mask_value=0.0, generator=gen)
            loss = F.cross_entropy(model(f), y_all[idx], label_smoothing=r["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if epoch == 0:
            print(f"    baseline: {time.perf_counter() - t0:.0f} s per epoch", flush=True)
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, audio: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the reference model on int16 clips."""
    frontend, correct = LogMel(n_mels=40), 0
    x_all = torch.from_numpy(np.ascontiguousarray(audio))
    for i in range(0, len(labels), 512):
        f = _features(frontend, x_all[i : i + 512].float() / 32768)
        correct += int((model(f).argmax(1).numpy() == labels[i : i + 512]).sum())
    return correct / len(labels)
