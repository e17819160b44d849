"""Feature frontends, batch augmentation and spectrogram export (notebooks 02-05).

Everything here works on *batches* of tensors on any device (CPU, CUDA, MPS): no Python loop
over clips. The frontends are ``nn.Module``s so they move with ``.to(device)``, sit in front of a
model in an ``nn.Sequential`` and are saved in checkpoints through their ``config`` dict::

    frontend = LogMel()                       # (B, 16000) float waveform -> (B, 40, 101)
    spec = {"kind": frontend.kind, **frontend.config}
    same = build_frontend(**spec)             # what a checkpoint loader does
"""

from __future__ import annotations

import csv
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import torch
import torchaudio
from torch import Tensor, nn

__all__ = [
    "LogMel",
    "Mfcc",
    "FRONTENDS",
    "build_frontend",
    "compute_deltas",
    "frontend_spec",
    "time_shift",
    "mix_noise",
    "speed_perturb",
    "spec_augment",
    "spec_augment_preview",
    "tone",
    "chirp",
    "quantize",
    "rms_dbfs",
    "measured_snr_db",
    "to_db",
    "natural_log_to_db",
    "power_spectrogram",
    "batch_logmel",
    "loop_logmel",
    "compare_with_librosa",
    "spectrogram_db_range",
    "export_spectrogram_pngs",
    "export_spectrogram_pngs_matplotlib",
]

INT16_SCALE = 32768.0


_CHUNK = 2**19  # frame samples per CPU chunk of LogMel (measured: 2**19-2**20 best, 2 cores)


def _onnx_exporting() -> bool:
    onnx = getattr(torch, "onnx", None)
    return bool(onnx is not None and onnx.is_in_onnx_export())


def _as_float_audio(x: Tensor) -> Tensor:
    """int16 PCM -> float32 in [-1, 1); float input is cast to float32 unchanged in value."""
    if not x.is_floating_point():
        return torch.mul(x, 1.0 / INT16_SCALE)  # one pass: the product is float32 already
    return x.float()


def _dft_kernels(n_fft: int, win_length: int) -> Tensor:
    """conv1d weights ``(2 * (n_fft // 2 + 1), 1, n_fft)``: Hann-windowed cos and -sin rows."""
    window = torch.zeros(n_fft, dtype=torch.float64)
    left = (n_fft - win_length) // 2  # torch.stft centres a shorter window inside n_fft
    window[left : left + win_length] = torch.hann_window(win_length, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64).unsqueeze(1)
    n = torch.arange(n_fft, dtype=torch.float64).unsqueeze(0)
    ang = 2 * math.pi * k * n / n_fft
    kernels = torch.cat([torch.cos(ang) * window, -torch.sin(ang) * window], dim=0)
    return kernels.unsqueeze(1).float()


class LogMel(nn.Module):
    """Log-mel frontend: waveform ``(..., T)`` -> ``(..., n_mels, frames)`` (notebook 02).

    Power spectrogram (Hann window of ``n_fft`` samples, hop ``hop_length``, centre padding) ->
    ``n_mels`` triangular mel filters between ``f_min`` and ``f_max`` -> ``log(mel + eps)``. The
    ``eps`` keeps silent frames finite: ``log(0)`` is ``-inf`` (the bug behind Microsoft Learn's
    NaN spectrogram images). Defaults: 16 kHz, 30 ms window (480), 10 ms hop (160), 40 mel bands,
    20-8000 Hz, so one 1-s clip gives ``(40, 101)``.

    Input may be float in [-1, 1] or int16 PCM (scaled by 1/32768 on the fly), shaped ``(T,)``,
    ``(B, T)`` or ``(B, 1, T)``; leading dimensions are kept, so ``(B, 1, T)`` gives the
    image-like ``(B, 1, n_mels, frames)`` a 2-D CNN wants. The transform always runs in float32,
    also under CUDA autocast (half-precision STFTs are inaccurate and partly unsupported).

    ``stft="conv"`` computes the same spectrogram with a strided ``conv1d`` (a windowed DFT
    matrix) instead of ``torch.stft``: slower, but exportable to ONNX with the classic exporter.
    """

    kind = "logmel"

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 480,
        hop_length: int = 160,
        n_mels: int = 40,
        f_min: float = 20.0,
        f_max: float = 8000.0,
        eps: float = 1e-6,
        win_length: int | None = None,
        center: bool = True,
        mel_scale: str = "htk",
        norm: str | None = None,
        stft: str = "torch",
    ) -> None:
        super().__init__()
        if stft not in ("torch", "conv"):
            raise ValueError(f"stft must be 'torch' or 'conv', got {stft!r}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0 so that silence stays finite, got {eps}")
        self.config: dict[str, Any] = dict(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            eps=eps,
            win_length=win_length,
            center=center,
            mel_scale=mel_scale,
            norm=norm,
            stft=stft,
        )
        self.eps = eps
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            power=2.0,
            center=center,
            mel_scale=mel_scale,
            norm=norm,
        )
        if stft == "conv":
            # Windowed DFT as a strided conv1d: same numbers as torch.stft up to float32 rounding,
            # but exportable to ONNX (torch.stft's complex output is not). Non-persistent, so the
            # state_dict is identical in both modes.
            self.register_buffer("dft", _dft_kernels(n_fft, win_length or n_fft), persistent=False)

    @property
    def n_features(self) -> int:
        """Feature rows per frame (``n_mels``)."""
        return int(self.config["n_mels"])

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a clip of ``num_samples`` samples (101 for 1 s at the defaults)."""
        n_fft, hop = self.config["n_fft"], self.config["hop_length"]
        if self.config["center"]:
            return num_samples // hop + 1
        return (num_samples - n_fft) // hop + 1

    def power_mel(self, x: Tensor) -> Tensor:
        """Mel-filtered power spectrogram before the log, float32 ``(..., n_mels, frames)``."""
        x = _as_float_audio(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.config["stft"] != "torch":
                return self._conv_power_mel(x)
            if not isinstance(self.mel.spectrogram, torchaudio.transforms.Spectrogram):
                return self.mel(x)  # export swapped in an exportable spectrogram (notebook 06)
            return self._fft_power_mel(x)

    def _fft_power_mel(self, x: Tensor) -> Tensor:
        # What torchaudio's MelSpectrogram computes (reflect-padded torch.stft -> |.|^2 -> mel
        # filters), written as frames + rfft. On CPU this is ~5x faster than torch.stft +
        # complex.abs(); batches are cut into chunks of ~0.5M frame samples so the intermediate
        # tensors stay in cache (a 128-clip batch at once is 2.4x slower).
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        per_clip = self.num_frames(shape[-1]) * self.config["n_fft"]
        exporting = torch.jit.is_tracing() or torch.jit.is_scripting() or _onnx_exporting()
        if x.device.type == "cpu" and len(x) > 1 and not exporting:  # a trace fixes the chunks
            chunk = max(1, _CHUNK // max(1, per_clip))
            mel = torch.cat([self._fft_chunk(part) for part in x.split(chunk)])
        else:
            mel = self._fft_chunk(x)
        return mel.reshape(shape[:-1] + mel.shape[-2:])

    def _fft_chunk(self, x: Tensor) -> Tensor:
        n_fft, hop = self.config["n_fft"], self.config["hop_length"]
        if self.config["center"]:
            pad = n_fft // 2
            if x.shape[-1] > pad:  # reflect padding as two flipped slices: 6x faster on CPU
                left, right = x[:, 1 : pad + 1].flip(-1), x[:, -pad - 1 : -1].flip(-1)
                x = torch.cat([left, x, right], dim=-1)
            else:  # too short to reflect: let pad() raise its clear error
                x = nn.functional.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        window = self.mel.spectrogram.window.to(x.dtype)
        win = window.shape[0]
        if win < n_fft:  # torch.stft centres a shorter window inside n_fft
            left_pad = (n_fft - win) // 2
            window = nn.functional.pad(window, (left_pad, n_fft - win - left_pad))
        spec = torch.fft.rfft(x.unfold(-1, n_fft, hop) * window, n=n_fft)  # (N, frames, bins)
        sq = torch.view_as_real(spec).square()  # re^2 + im^2, without complex abs() and sqrt
        power = sq[..., 0] + sq[..., 1]
        return torch.matmul(power, self.mel.mel_scale.fb).transpose(1, 2)  # (N, n_mels, frames)

    def _conv_power_mel(self, x: Tensor) -> Tensor:
        shape = x.shape
        x = x.reshape(-1, 1, shape[-1])
        n_fft, hop = self.config["n_fft"], self.config["hop_length"]
        if self.config["center"]:
            x = nn.functional.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
        spec = nn.functional.conv1d(x, self.dft, stride=hop)  # (N, 2 * n_freqs, frames)
        re, im = spec.chunk(2, dim=1)
        power = re * re + im * im  # (N, n_freqs, frames)
        mel = torch.matmul(power.transpose(1, 2), self.mel.mel_scale.fb).transpose(1, 2)
        return mel.reshape(shape[:-1] + mel.shape[-2:])

    def forward(self, x: Tensor) -> Tensor:
        return torch.log(self.power_mel(x) + self.eps)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


class Mfcc(nn.Module):
    """MFCC frontend: ``(..., T)`` -> ``(..., n_mfcc * (1 + deltas), frames)`` (notebook 02).

    The textbook recipe, step by step: power spectrum -> mel filterbank -> natural ``log(mel +
    eps)`` (exactly :class:`LogMel`) -> DCT-II with orthonormal scaling along the mel axis, keeping
    the first ``n_mfcc`` coefficients. The DCT decorrelates the mel bands and packs the smooth
    spectral envelope into the low coefficients.

    ``n_mfcc=13`` is the classic speech-recognition choice (the envelope, without pitch detail);
    with ``deltas=2`` the velocity and acceleration (:func:`compute_deltas`) are
    appended along the coefficient axis, giving the classic 39 rows; they act as channels for a
    1-D CNN over time. ``n_mfcc=n_mels`` keeps everything (an invertible rotation of the log-mel).

    Note: ``torchaudio.transforms.MFCC`` by default uses ``10*log10`` with an 80 dB floor instead
    of the natural log, so its values are ~4.34x these (and differ where the floor clips).
    """

    kind = "mfcc"

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mfcc: int = 13,
        n_fft: int = 480,
        hop_length: int = 160,
        n_mels: int = 40,
        f_min: float = 20.0,
        f_max: float = 8000.0,
        eps: float = 1e-6,
        deltas: int = 0,
        delta_win: int = 5,
        win_length: int | None = None,
        center: bool = True,
        mel_scale: str = "htk",
        norm: str | None = None,
        stft: str = "torch",
    ) -> None:
        super().__init__()
        if not 1 <= n_mfcc <= n_mels:
            raise ValueError(f"n_mfcc must be in 1..n_mels={n_mels}, got {n_mfcc}")
        if deltas not in (0, 1, 2):
            raise ValueError(f"deltas must be 0, 1 or 2, got {deltas}")
        self.config: dict[str, Any] = dict(
            sample_rate=sample_rate,
            n_mfcc=n_mfcc,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            eps=eps,
            deltas=deltas,
            delta_win=delta_win,
            win_length=win_length,
            center=center,
            mel_scale=mel_scale,
            norm=norm,
            stft=stft,
        )
        self.logmel = LogMel(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            eps=eps,
            win_length=win_length,
            center=center,
            mel_scale=mel_scale,
            norm=norm,
            stft=stft,
        )
        # (n_mels, n_mfcc) orthonormal DCT-II matrix: mfcc = dct.T @ logmel
        dct = torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho")
        self.register_buffer("dct", dct, persistent=False)
        self.deltas = deltas
        self.delta_win = delta_win

    @property
    def n_features(self) -> int:
        """Feature rows per frame: ``n_mfcc * (1 + deltas)``."""
        return int(self.config["n_mfcc"]) * (1 + self.deltas)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a clip of ``num_samples`` samples."""
        return self.logmel.num_frames(num_samples)

    def forward(self, x: Tensor) -> Tensor:
        logmel = self.logmel(x)  # (..., n_mels, frames), float32
        mfcc = torch.matmul(logmel.transpose(-1, -2), self.dct).transpose(-1, -2)
        if self.deltas == 0:
            return mfcc
        feats = [mfcc]
        d = mfcc
        for _ in range(self.deltas):
            d = compute_deltas(d, win_length=self.delta_win)
            feats.append(d)
        return torch.cat(feats, dim=-2)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def compute_deltas(feats: Tensor, win_length: int = 5) -> Tensor:
    """Regression deltas along time, ``(..., F, frames)`` -> same shape (notebook 02).

    ``d[t] = sum_n n * (c[t+n] - c[t-n]) / (2 * sum_n n^2)`` for ``n = 1..(win_length-1)//2``
    with edge frames repeated: numerically ``torchaudio.functional.compute_deltas``, written with
    slices so that it exports to ONNX.
    """
    if win_length < 3:
        raise ValueError(f"win_length must be >= 3, got {win_length}")
    n = (win_length - 1) // 2
    t = feats.shape[-1]
    shape = feats.shape
    padded = nn.functional.pad(feats.reshape(-1, 1, t), (n, n), mode="replicate").reshape(
        shape[:-1] + (t + 2 * n,)
    )
    out = torch.zeros_like(feats)
    for i in range(1, n + 1):
        out = out + i * (padded[..., n + i : n + i + t] - padded[..., n - i : n - i + t])
    return out / (2 * sum(i * i for i in range(1, n + 1)))


FRONTENDS: dict[str, type[nn.Module]] = {"logmel": LogMel, "mfcc": Mfcc}


def build_frontend(kind: str = "logmel", **kwargs: Any) -> nn.Module:
    """Recreate a frontend from its spec, e.g. a checkpoint's ``feature`` dict (notebook 04).

    ``build_frontend(**{"kind": "mfcc", "n_mfcc": 40})``; unknown kinds raise ``ValueError``
    listing the known ones.
    """
    if kind not in FRONTENDS:
        raise ValueError(f"unknown feature kind {kind!r}; known: {sorted(FRONTENDS)}")
    return FRONTENDS[kind](**kwargs)


def frontend_spec(frontend: nn.Module) -> dict[str, Any]:
    """The ``{'kind': ..., **config}`` dict that :func:`build_frontend` accepts (notebook 04)."""
    return {"kind": frontend.kind, **dict(frontend.config)}


# ---------------------------------------------------------------------------------------------
# Batch augmentation (notebook 02 previews them, notebook 05 trains with them)
# ---------------------------------------------------------------------------------------------


def _uniform(
    shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> Tensor:
    """U[0, 1) on ``device``; drawn on the generator's device so a CPU generator also seeds CUDA."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _randint(
    low: Tensor | int,
    high: Tensor | int,
    shape: tuple[int, ...],
    device: torch.device,
    generator: torch.Generator | None,
) -> Tensor:
    """Integers uniform in ``[low, high]`` (inclusive, per element when tensors)."""
    u = _uniform(shape, device, generator)
    low_t = torch.as_tensor(low, device=device)
    high_t = torch.as_tensor(high, device=device)
    return (low_t + torch.floor(u * (high_t - low_t + 1))).long().clamp_max(high_t)


def time_shift(x: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Shift each example by its own random offset in ``[-max_shift, max_shift]`` (notebook 02).

    Samples shifted in from outside the clip are zeros.

    ``x`` is ``(B, ..., T)``; all channels of one example move together. A positive offset
    delays the sound (zeros enter at the start). ±100 ms at 16 kHz is ``max_shift=1600``.
    Vectorised: one indexing copy for the whole batch, in ``x``'s dtype (int16 works). Pass a
    seeded ``torch.Generator`` (on any device) for repeatable shifts.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0 or x.numel() == 0:
        return x.clone()
    b, t = x.shape[0], x.shape[-1]
    shifts = _randint(-max_shift, max_shift, (b,), x.device, generator)
    # Zero-pad both ends, then read each row's window out of a sliding view: row copies, which
    # are ~4x faster on CPU than an element-wise gather with a (B, T) index.
    flat = x.reshape(b, -1, t)
    windows = nn.functional.pad(flat, (max_shift, max_shift)).unfold(-1, t, 1)  # (B, C, 2s+1, T)
    rows = torch.arange(b, device=x.device).unsqueeze(1)
    chans = torch.arange(flat.shape[1], device=x.device).unsqueeze(0)
    out = windows[rows, chans, (max_shift - shifts).unsqueeze(1)]  # (B, C, T)
    return out.reshape(x.shape)


def speed_perturb(
    x: Tensor, max_change: float, generator: torch.Generator | None = None, step: float = 0.01
) -> Tensor:
    """Resample each clip by its own random factor in ``1 +- max_change`` (notebook 05).

    Like playing a tape slightly fast or slow: a factor 1.1 makes the word 10 % shorter *and* 10 %
    higher (Kaldi's speed perturbation, Ko et al. 2015, which uses the three factors 0.9, 1.0,
    1.1) -- a cheap stand-in for the many voices and speaking rates of unseen speakers. Factors
    are drawn uniformly on a grid of ``step`` (0.90, 0.91, ..., 1.10), so the batch splits into at
    most 21 groups, each resampled by one linear ``interpolate`` call (7x faster on CPU than a
    per-sample ``grid_sample``) and cropped or zero-padded about its centre back to ``T``.
    ``x`` is a ``(B, T)`` float batch on any device. (Linear interpolation does not low-pass
    first: speeding up by 10 % folds content above 8 kHz / 1.1 = 7.3 kHz back below it, where
    speech has little energy; fine for augmentation.)
    """
    if max_change <= 0:
        return x
    b, t = x.shape
    u = _uniform((b,), x.device, generator)
    levels = max(1, round(max_change / step))
    grid = max_change / levels  # the actual step: max_change is always reachable
    k = (u * (2 * levels + 1)).floor().long().clamp_max(2 * levels) - levels  # -L..L
    out = torch.empty_like(x)
    for level in k.unique().tolist():
        rows = (k == level).nonzero().squeeze(1)
        if level == 0:
            out.index_copy_(0, rows, x.index_select(0, rows))
            continue
        n = max(2, round(t / (1.0 + level * grid)))  # faster -> fewer samples
        y = nn.functional.interpolate(
            x.index_select(0, rows).unsqueeze(1), size=n, mode="linear", align_corners=True
        ).squeeze(1)
        start = abs(n - t) // 2
        if n >= t:
            y = y[:, start : start + t]
        else:
            y = nn.functional.pad(y, (start, t - n - start))
        out.index_copy_(0, rows, y)
    return out


def mix_noise(
    x: Tensor,
    noise: Tensor,
    prob: float | Tensor = 0.8,
    max_gain: float | Tensor = 0.1,
    snr_db: tuple[float, float] | None = None,
    clamp: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Add a random slice of background noise to a random subset of the batch (notebook 02).

    ``x``: waveforms ``(B, ..., T)``, float (int16 PCM is scaled to float first). ``noise``: a
    noise bank ``(K, Tn)`` with ``Tn >= T`` (float, or int16 PCM), ideally already on ``x``'s
    device. For each example, with probability ``prob``, one bank row and a random offset in it
    are chosen and the slice is added with

    * ``snr_db=None`` (the TensorFlow Speech Commands recipe): gain ~ U[0, ``max_gain``];
    * ``snr_db=(lo, hi)``: the noise is scaled so that signal power / noise power is a random
      SNR in [lo, hi] dB (an all-zero clip then gets no noise: its SNR is undefined).

    ``prob`` and ``max_gain`` may also be ``(B,)`` tensors, one value per example (notebook 05
    gives "silence" rows louder noise every time). The result is clipped to [-1, 1] when
    ``clamp``. Vectorised: one indexing copy for the batch.
    """
    p = torch.as_tensor(prob)
    if p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    if noise.dim() != 2:
        raise ValueError(f"noise bank must be (K, T_noise), got shape {tuple(noise.shape)}")
    b, t = x.shape[0], x.shape[-1]
    k, tn = noise.shape
    if tn < t or k == 0:
        raise ValueError(f"noise bank {tuple(noise.shape)} is shorter than the clips (T={t})")
    dev = x.device
    if not x.is_floating_point():
        x = _as_float_audio(x)
    noise = _as_float_audio(noise.to(dev, non_blocking=True))
    rows = _randint(0, k - 1, (b,), dev, generator)
    offsets = _randint(0, tn - t, (b,), dev, generator)
    slices = noise.unfold(1, t, 1)[rows, offsets]  # (B, T): row copies out of a sliding view
    apply = (_uniform((b,), dev, generator) < torch.as_tensor(prob, device=dev)).float()
    u = _uniform((b,), dev, generator)
    flat = x.reshape(b, -1).float()
    if snr_db is None:
        gain = u * torch.as_tensor(max_gain, device=dev)
    else:
        lo, hi = snr_db
        snr = lo + u * (hi - lo)
        p_sig = flat.pow(2).mean(dim=1)
        p_noise = slices.pow(2).mean(dim=1).clamp_min(1e-12)
        gain = torch.sqrt(p_sig / (p_noise * 10.0 ** (snr / 10.0)))
    view = (b,) + (1,) * (x.dim() - 1)
    out = torch.addcmul(
        x, (gain * apply).view(view), slices.view((b,) + (1,) * (x.dim() - 2) + (t,))
    )
    return out.clamp_(-1.0, 1.0) if clamp else out


def _band_masks(
    b: int, size: int, n_masks: int, max_width: int, device: torch.device, generator
) -> Tensor:
    """(B, size) bool: union of ``n_masks`` random bands of width 0..max_width per example."""
    max_width = min(max_width, size)
    mask = torch.zeros(b, size, dtype=torch.bool, device=device)
    if n_masks <= 0 or max_width <= 0:
        return mask
    pos = torch.arange(size, device=device).unsqueeze(0)
    for _ in range(n_masks):  # loop over masks (2-ish), never over examples
        width = _randint(0, max_width, (b,), device, generator)
        start = _randint(0, size - width, (b,), device, generator)
        mask |= (pos >= start.unsqueeze(1)) & (pos < (start + width).unsqueeze(1))
    return mask


def spec_augment(
    spec: Tensor,
    freq_masks: int = 2,
    freq_width: int = 8,
    time_masks: int = 2,
    time_width: int = 10,
    mask_value: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SpecAugment masking (Park et al., 2019) per example on ``(B, ..., F, frames)`` (notebook 02).

    Each example gets ``freq_masks`` bands of 0..``freq_width`` mel rows and ``time_masks`` bands
    of 0..``time_width`` frames set to ``mask_value``; channels of one example share masks. With
    ``mask_value=None`` each example's own mean is used, so a masked band looks like "average
    energy" rather than a hole of ``log(1) = 0`` in an un-normalised log-mel. Defaults (8 of 40
    mel rows, 10 of 101 frames = 100 ms) are mild, suited to 1-s keyword clips.
    """
    if spec.dim() < 3:
        raise ValueError(f"spec must be (B, ..., F, frames), got shape {tuple(spec.shape)}")
    b, f, t = spec.shape[0], spec.shape[-2], spec.shape[-1]
    dev = spec.device
    fmask = _band_masks(b, f, freq_masks, freq_width, dev, generator)  # (B, F)
    tmask = _band_masks(b, t, time_masks, time_width, dev, generator)  # (B, T)
    mask = fmask.unsqueeze(2) | tmask.unsqueeze(1)  # (B, F, T)
    mask = mask.view((b,) + (1,) * (spec.dim() - 3) + (f, t))
    if mask_value is None:
        fill = spec.reshape(b, -1).mean(dim=1).view((b,) + (1,) * (spec.dim() - 1))
    else:
        fill = torch.tensor(mask_value, dtype=spec.dtype, device=dev)
    return torch.where(mask, fill.to(spec.dtype), spec)


@torch.no_grad()
def spec_augment_preview(
    x: Tensor | np.ndarray,
    frontend: LogMel | None = None,
    generator: torch.Generator | None = None,
    **masks: Any,
) -> tuple[np.ndarray, Tensor, Tensor]:
    """SpecAugment on one clip, made audible (notebook 02).

    Draws masks with :func:`spec_augment` (``masks`` are its keyword arguments) and returns
    ``(audio, masked_logmel, mask)``: the masked log-mel a model would see, the boolean
    ``(n_mels, frames)`` mask, and a waveform with the same bands and frames removed (STFT
    bins whose strongest mel filter is masked, and masked frames, set to zero; inverse STFT with
    the original phase), so you can hear what the model is asked to do without.
    """
    frontend = frontend or LogMel()
    wav = _as_float_audio(_to_tensor(x)).reshape(-1)
    logmel = frontend(wav)  # (n_mels, frames)
    n_mels, frames = logmel.shape
    ones = torch.ones(1, n_mels, frames)
    mask = spec_augment(ones, mask_value=0.0, generator=generator, **masks)[0] == 0
    masked = torch.where(mask, logmel.mean(), logmel)
    cfg = frontend.config
    win = cfg["win_length"] or cfg["n_fft"]
    window = torch.hann_window(win, dtype=wav.dtype)
    stft = torch.stft(
        wav, cfg["n_fft"], cfg["hop_length"], win, window, center=cfg["center"], return_complex=True
    )
    fb = frontend.mel.mel_scale.fb  # (n_freqs, n_mels)
    rows = mask.all(dim=1)  # masked mel bands
    cols = mask.all(dim=0)  # masked frames
    owner = fb.argmax(dim=1)
    bins = rows[owner] & (fb.amax(dim=1) > 0)
    keep = ~(bins.unsqueeze(1) | cols.unsqueeze(0))
    audio = torch.istft(
        stft * keep,
        cfg["n_fft"],
        cfg["hop_length"],
        win,
        window,
        center=cfg["center"],
        length=wav.shape[-1],
    )
    return audio.numpy().astype(np.float32), masked, mask


# ---------------------------------------------------------------------------------------------
# Small signal helpers for the first lessons (notebooks 01-02)
# ---------------------------------------------------------------------------------------------


def tone(
    freq: float, duration: float = 1.0, sample_rate: int = 16000, amplitude: float = 0.5
) -> np.ndarray:
    """A sine wave sampled at ``sample_rate``: float32 ``(round(duration * sr),)`` (notebook 01).

    The sine is evaluated exactly at the sample instants, so a ``freq`` above the Nyquist
    frequency (``sample_rate / 2``) gives the same samples as its alias below it: aliasing.
    """
    t = np.arange(int(round(duration * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(
    f0: float,
    f1: float,
    duration: float = 2.0,
    sample_rate: int = 16000,
    amplitude: float = 0.5,
) -> np.ndarray:
    """A linear sweep from ``f0`` to ``f1`` Hz, sampled exactly (notebook 01).

    Sweep past ``sample_rate / 2`` and the spectrogram shows the frequency folding back down.
    """
    t = np.arange(int(round(duration * sample_rate))) / sample_rate
    phase = 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / duration * t**2)
    return (amplitude * np.sin(phase)).astype(np.float32)


def quantize(x: np.ndarray, bits: int) -> np.ndarray:
    """Round a float signal in [-1, 1] to ``bits``-bit signed integer levels and back (notebook 01).

    ``bits=16`` is CD / Speech Commands resolution (65,536 levels); each bit removed doubles the
    step and costs about 6 dB of signal-to-quantisation-noise ratio.
    """
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in 1..32, got {bits}")
    levels = 2.0 ** (bits - 1)
    q = np.clip(np.round(np.asarray(x, np.float64) * levels), -levels, levels - 1)
    return (q / levels).astype(np.float32)


def rms_dbfs(x: np.ndarray | Tensor, floor_db: float = -120.0) -> float:
    """Root-mean-square level in dB relative to full scale (a full-scale square wave = 0 dBFS).

    A full-scale sine is -3.01 dBFS; digital silence returns ``floor_db`` (never ``-inf``)
    (notebook 01).
    """
    x = np.asarray(x, np.float64)
    rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    return max(20.0 * math.log10(rms), floor_db) if rms > 0 else floor_db


def measured_snr_db(clean: np.ndarray | Tensor, noisy: np.ndarray | Tensor) -> float:
    """SNR in dB of ``noisy`` against ``clean``, the noise being their difference (notebook 01)."""
    clean = np.asarray(clean, np.float64)
    noise = np.asarray(noisy, np.float64) - clean
    p_noise = float(np.mean(noise**2))
    if p_noise == 0:
        return math.inf
    return 10.0 * math.log10(float(np.mean(clean**2)) / p_noise)


def to_db(
    power: Tensor | np.ndarray, amin: float = 1e-10, top_db: float | None = None
) -> Tensor | np.ndarray:
    """Power -> decibels, ``10 * log10(max(power, amin))``, never ``-inf`` (notebook 02).

    ``amin`` (1e-10 = -100 dB) is the floor that keeps silent bins finite; ``top_db`` also clips
    everything more than ``top_db`` below the maximum of each item (the last two axes). Works on
    tensors (any device) and NumPy arrays, returning the same kind.
    """
    is_np = isinstance(power, np.ndarray)
    p = torch.from_numpy(np.asarray(power, dtype=np.float32)) if is_np else power.float()
    db = 10.0 * torch.log10(p.clamp_min(amin))
    if top_db is not None:
        peak = db.amax(dim=(-2, -1), keepdim=True) if db.dim() >= 2 else db.max()
        db = torch.maximum(db, peak - top_db)
    return db.numpy() if is_np else db


def natural_log_to_db(logpower: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """``log(power)`` (what :class:`LogMel` returns) -> dB: times ``10 / ln 10`` (notebook 02)."""
    return logpower * (10.0 / math.log(10.0))


def power_spectrogram(
    x: Tensor | np.ndarray,
    n_fft: int = 480,
    hop_length: int = 160,
    win_length: int | None = None,
    power: float = 2.0,
    center: bool = True,
) -> Tensor:
    """|STFT|^power with a Hann window, ``(..., n_fft // 2 + 1, frames)`` float32 (notebook 02).

    ``power=2`` gives power, ``power=1`` magnitude. Any device; NumPy input is converted.
    """
    x = _to_tensor(x)
    x = _as_float_audio(x)
    spec = torchaudio.transforms.Spectrogram(
        n_fft=n_fft, hop_length=hop_length, win_length=win_length, power=power, center=center
    ).to(x.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return spec(x)


# ---------------------------------------------------------------------------------------------
# Batched features vs a per-clip loop (notebook 02)
# ---------------------------------------------------------------------------------------------


def _to_tensor(a: np.ndarray | Tensor) -> Tensor:
    """NumPy (also a read-only memmap slice) -> a tensor that owns writable memory."""
    if isinstance(a, Tensor):
        return a
    a = np.asarray(a)
    return torch.from_numpy(a.copy() if not a.flags.writeable else np.ascontiguousarray(a))


def _pin(t: Tensor, device: torch.device) -> Tensor:
    return t.pin_memory() if device.type == "cuda" else t


@torch.no_grad()
def batch_logmel(
    audio: np.ndarray | Tensor,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    frontend: nn.Module | None = None,
    to_cpu: bool = True,
) -> Tensor:
    """Features for many clips, ``batch_size`` at a time on ``device`` (notebook 02).

    ``audio``: int16 PCM or float ``(N, T)`` (a memmap from :func:`load_split` is fine). Each
    batch travels as int16 (half the bytes of float32) and is scaled on the device. Returns
    ``(N, n_mels, frames)`` float32, on the CPU when ``to_cpu`` (that copy also synchronises
    CUDA, so timing the call measures the real work). ``frontend`` defaults to :class:`LogMel`.

    ``batch_size=None`` picks 2048 on a GPU (big batches hide kernel-launch latency) and 32 on
    a CPU, where a batch that no longer fits in the cache is *slower* per clip than a small one.
    """
    device = torch.device(device)
    batch_size = batch_size or (32 if device.type == "cpu" else 2048)
    frontend = (frontend or LogMel()).to(device).eval()
    n = len(audio)
    chunks = []
    for s in range(0, n, batch_size):
        part = audio[s : s + batch_size]
        xb = _to_tensor(part)
        xb = _pin(xb, device).to(device, non_blocking=True)
        feats = frontend(xb)
        chunks.append(feats.cpu() if to_cpu else feats)
    if not chunks:
        return torch.empty(0)
    return torch.cat(chunks)


@torch.no_grad()
def loop_logmel(
    audio: np.ndarray | Tensor,
    device: str | torch.device = "cpu",
    frontend: nn.Module | None = None,
) -> Tensor:
    """The same features one clip at a time, like a per-item ``Dataset`` (notebook 02).

    Only for the speed comparison with :func:`batch_logmel`; the result is identical.
    """
    device = torch.device(device)
    frontend = (frontend or LogMel()).to(device).eval()
    out = []
    for row in audio:
        x = _to_tensor(row).to(device)
        out.append(frontend(x).cpu())
    return torch.stack(out) if out else torch.empty(0)


# ---------------------------------------------------------------------------------------------
# librosa cross-check (notebook 02)
# ---------------------------------------------------------------------------------------------


def compare_with_librosa(
    x: np.ndarray,
    sample_rate: int = 16000,
    n_fft: int = 480,
    hop_length: int = 160,
    n_mels: int = 40,
    f_min: float = 20.0,
    f_max: float = 8000.0,
    librosa_kwargs: dict[str, Any] | None = None,
    eps: float = 1e-6,
) -> dict[str, float]:
    """Mel spectrogram of one clip by torchaudio (:class:`LogMel`) and librosa (notebook 02).

    librosa is called with the *same* settings as ours (HTK mel scale, unnormalised filters,
    centred frames with reflect padding, power 2) unless ``librosa_kwargs`` overrides some, which
    shows what each default changes. Returns the maximum absolute difference of the log-mel
    values, the same in dB, and the maximum difference of the mel power relative to its peak.
    """
    import librosa

    x = np.asarray(x, np.float32)
    kw: dict[str, Any] = dict(
        n_fft=n_fft,
        hop_length=hop_length,
        n_mels=n_mels,
        fmin=f_min,
        fmax=f_max,
        htk=True,
        norm=None,
        center=True,
        pad_mode="reflect",
        power=2.0,
    )
    kw.update(librosa_kwargs or {})
    ref = librosa.feature.melspectrogram(y=x, sr=sample_rate, **kw).astype(np.float64)
    ours = (
        LogMel(sample_rate, n_fft, hop_length, n_mels, f_min, f_max, eps=eps)
        .power_mel(torch.from_numpy(x))
        .double()
        .numpy()
    )
    if ours.shape != ref.shape:
        frames = min(ours.shape[-1], ref.shape[-1])
        ours, ref = ours[..., :frames], ref[..., :frames]
    log_diff = np.abs(np.log(ours + eps) - np.log(ref + eps))
    return {
        "max_abs_log": float(log_diff.max()),
        "max_abs_db": float(log_diff.max() * 10 / math.log(10)),
        "max_rel_power": float(np.abs(ours - ref).max() / max(ours.max(), 1e-30)),
        "frames": int(ours.shape[-1]),
    }


# ---------------------------------------------------------------------------------------------
# Spectrogram images, Microsoft Learn style, done correctly and fast (notebook 02 -> 03)
# ---------------------------------------------------------------------------------------------


_IMAGE_DEFAULTS = {"spectrogram": (400, 200), "logmel": (480, 160)}  # (n_fft, hop_length)


def _image_frontend(kind: str, n_fft: int | None, hop_length: int | None, n_mels: int) -> nn.Module:
    """A module mapping waveforms to *power* (not log) features for the PNG export.

    ``None`` picks the kind's default: Microsoft Learn's 400/200 for 'spectrogram' (201 x 81
    images), :class:`LogMel`'s 480/160 for 'logmel' (40 x 101).
    """
    if kind not in _IMAGE_DEFAULTS:
        raise ValueError(f"kind must be 'spectrogram' or 'logmel', got {kind!r}")
    n_fft = n_fft or _IMAGE_DEFAULTS[kind][0]
    hop_length = hop_length or _IMAGE_DEFAULTS[kind][1]
    if kind == "spectrogram":
        return torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop_length, power=2.0)
    if kind == "logmel":

        class _PowerMel(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.logmel = LogMel(n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)

            def forward(self, x: Tensor) -> Tensor:
                return self.logmel.power_mel(x)

        return _PowerMel()


@torch.no_grad()
def _db_batches(
    audio: np.ndarray | Tensor, frontend: nn.Module, device: torch.device, batch_size: int
):
    """Yield ``(start, dB tensor on device)`` for consecutive batches of ``audio``."""
    frontend = frontend.to(device).eval()
    for s in range(0, len(audio), batch_size):
        part = audio[s : s + batch_size]
        xb = _to_tensor(part)
        xb = _as_float_audio(_pin(xb, device).to(device, non_blocking=True))
        with torch.autocast(device_type=device.type, enabled=False):
            yield s, to_db(frontend(xb), amin=1e-10)


def spectrogram_db_range(
    audio: np.ndarray | Tensor,
    kind: str = "spectrogram",
    n_fft: int | None = None,
    hop_length: int | None = None,
    n_mels: int = 40,
    top_db: float = 80.0,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
) -> tuple[float, float]:
    """The ``(low, high)`` dB range of every exported image: ``(max - top_db, max)`` (notebook 02).

    ``max`` is the loudest bin over *all* clips, so one grey level means the same power in every
    image. Export the test images with the training set's range (pass it as ``db_range``).
    """
    frontend = _image_frontend(kind, n_fft, hop_length, n_mels)
    top = -math.inf
    for _, db in _db_batches(audio, frontend, torch.device(device), batch_size):
        top = max(top, float(db.max()))
    if not math.isfinite(top):
        raise ValueError("no clips to export")
    return top - top_db, top


def _png_targets(
    n: int, labels: np.ndarray, classes: list[str], paths: list[str] | None, out_dir: Path
) -> list[Path]:
    """``out_dir/<class>/<row>_<source stem>.png`` for every row (row index keeps names unique)."""
    targets = []
    for i in range(n):
        src = paths[i] if paths is not None else ""
        stem = Path(src).name.split(".")[0] if src and not src.startswith("<") else "generated"
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)
        targets.append(out_dir / classes[int(labels[i])] / f"{i:06d}_{stem}.png")
    for c in sorted({int(v) for v in labels}):
        (out_dir / classes[c]).mkdir(parents=True, exist_ok=True)
    return targets


def _write_manifest(out_dir: Path, targets: list[Path], labels, classes, paths) -> Path:
    manifest = out_dir / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "class", "source"])
        for i, t in enumerate(targets):
            src = paths[i] if paths is not None else ""
            w.writerow([t.relative_to(out_dir).as_posix(), int(labels[i]), t.parent.name, src])
    return manifest


def export_spectrogram_pngs(
    audio: np.ndarray | Tensor,
    labels: np.ndarray | list[int],
    classes: list[str],
    out_dir: str | Path,
    *,
    paths: list[str] | None = None,
    kind: str = "spectrogram",
    n_fft: int | None = None,
    hop_length: int | None = None,
    n_mels: int = 40,
    top_db: float = 80.0,
    db_range: tuple[float, float] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    workers: int = 2,
    compress_level: int = 1,
) -> dict[str, Any]:
    """Write one 8-bit grey PNG per clip into ``out_dir/<class>/`` (notebook 02, read in 03).

    The Microsoft Learn image route, done right: power spectrogram (``kind='spectrogram'``,
    default ``n_fft=400``, ``hop=200`` -> 201 x 81 pixels as in their exercise) or mel power
    (``kind='logmel'``, default 480/160 and 40 bands -> 40 x 101) in dB with a -100 dB floor
    (no ``log(0)``, no NaN), mapped linearly from one *fixed* range ``db_range`` (default: the
    loudest bin of all clips and ``top_db`` below it, see :func:`spectrogram_db_range`) to grey
    levels 0..255. Row 0 of an image
    is the highest frequency, so a viewer shows low frequencies at the bottom.

    Fast: features are computed in batches on ``device`` and quantised there, then the uint8
    arrays are written with Pillow from ``workers`` threads: no matplotlib figure per file. File
    names are ``<row>_<source stem>.png`` and ``manifest.csv`` maps each image to its source
    clip. Returns the number written, seconds, clips/s, ``db_range`` (reuse it for other
    splits), image shape and the manifest path.
    """
    from PIL import Image

    t0 = perf_counter()
    out_dir = Path(out_dir)
    labels = np.asarray(labels)
    n = len(audio)
    if len(labels) != n or (paths is not None and len(paths) != n):
        raise ValueError(f"{n} clips but {len(labels)} labels / {len(paths or [])} paths")
    device = torch.device(device)
    if db_range is None:
        db_range = spectrogram_db_range(
            audio, kind, n_fft, hop_length, n_mels, top_db, device, batch_size
        )
    lo, hi = float(db_range[0]), float(db_range[1])
    if not hi > lo:
        raise ValueError(f"db_range must be (low, high) with high > low, got {db_range}")
    targets = _png_targets(n, labels, classes, paths, out_dir)
    frontend = _image_frontend(kind, n_fft, hop_length, n_mels)

    def save(args: tuple[np.ndarray, Path]) -> None:
        img, path = args
        Image.fromarray(img, mode="L").save(path, compress_level=compress_level)

    shape: tuple[int, ...] = ()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending = None
        for s, db in _db_batches(audio, frontend, device, batch_size):
            grey = ((db - lo) * (255.0 / (hi - lo))).round_().clamp_(0, 255).to(torch.uint8)
            grey = grey.flip(-2).cpu().numpy()  # (B, F, frames), highest frequency first
            shape = grey.shape[1:]
            if pending is not None:
                for _ in pending:  # wait for the previous batch: bounded memory
                    pass
            pending = pool.map(save, zip(grey, targets[s : s + len(grey)], strict=True))
        if pending is not None:
            for _ in pending:
                pass
    manifest = _write_manifest(out_dir, targets, labels, classes, paths)
    seconds = perf_counter() - t0
    return {
        "n": n,
        "seconds": seconds,
        "clips_per_s": n / seconds if seconds > 0 else math.inf,
        "db_range": (lo, hi),
        "shape": tuple(int(v) for v in shape),
        "out_dir": out_dir,
        "manifest": manifest,
    }


@torch.no_grad()
def export_spectrogram_pngs_matplotlib(
    audio: np.ndarray | Tensor,
    labels: np.ndarray | list[int],
    classes: list[str],
    out_dir: str | Path,
    *,
    paths: list[str] | None = None,
    kind: str = "spectrogram",
    n_fft: int | None = None,
    hop_length: int | None = None,
    n_mels: int = 40,
    db_range: tuple[float, float] | None = None,
    top_db: float = 80.0,
) -> dict[str, Any]:
    """The slow way, for comparison only: one matplotlib figure per file (notebook 02).

    Per clip: compute the dB spectrogram, ``plt.figure`` sized to one pixel per bin,
    ``imshow(origin='lower', vmin/vmax fixed)``, ``savefig``, ``plt.close``. The images match
    :func:`export_spectrogram_pngs` (saved as RGBA by matplotlib), only the writing differs.
    """
    from time import perf_counter

    import matplotlib.pyplot as plt

    t0 = perf_counter()
    out_dir = Path(out_dir)
    labels = np.asarray(labels)
    if db_range is None:
        db_range = spectrogram_db_range(audio, kind, n_fft, hop_length, n_mels, top_db)
    lo, hi = float(db_range[0]), float(db_range[1])
    targets = _png_targets(len(audio), labels, classes, paths, out_dir)
    frontend = _image_frontend(kind, n_fft, hop_length, n_mels).eval()
    shape: tuple[int, ...] = ()
    for row, path in zip(audio, targets, strict=True):
        x = _as_float_audio(_to_tensor(row))
        db = to_db(frontend(x), amin=1e-10).numpy()
        shape = db.shape
        fig = plt.figure(figsize=(db.shape[1] / 100, db.shape[0] / 100), dpi=100)
        try:
            ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
            ax.imshow(
                db,
                origin="lower",
                cmap="gray",
                vmin=lo,
                vmax=hi,
                aspect="auto",
                interpolation="nearest",
            )
            ax.set_axis_off()
            fig.savefig(path, dpi=100)
        finally:
            plt.close(fig)
    manifest = _write_manifest(out_dir, targets, labels, classes, paths)
    seconds = perf_counter() - t0
    n = len(audio)
    return {
        "n": n,
        "seconds": seconds,
        "clips_per_s": n / seconds if seconds > 0 else math.inf,
        "db_range": (lo, hi),
        "shape": tuple(int(v) for v in shape),
        "out_dir": out_dir,
        "manifest": manifest,
    }
