"""Feature front-ends, batch augmentation and spectrogram PNG export (notebooks 02-05).

Everything works on *batches* on any device. A checkpoint stores a front-end's config, never the
module: ``make_frontend(frontend_config(frontend))`` rebuilds the same module.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from time import perf_counter
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchaudio
from torch import Tensor, nn

__all__ = [  # the registry (FRONTENDS, make_frontend, ...) serves train.py, not the notebooks
    "LogMel", "Mfcc", "time_shift", "mix_noise", "spec_augment", "batch_logmel", "loop_logmel",
    "compare_with_librosa", "spectrogram_db_range", "export_spectrogram_pngs",
    "export_spectrogram_pngs_matplotlib",
]  # fmt: skip

_CHUNK = 2**19  # frame samples per CPU chunk of LogMel (measured: 2**19-2**20 best, 2 cores)
_FLOOR = 1e-10  # power floor of every dB value here: -100 dB, so silence stays finite


class _Frontend(nn.Module):
    """A module whose ``config`` (its constructor's arguments) rebuilds it."""

    def _keep_arguments(self, local: dict[str, Any]) -> None:
        self.config = {k: v for k, v in local.items() if k not in ("self", "__class__")}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def _as_float_audio(x: Tensor) -> Tensor:
    """int16 PCM -> float32 in [-1, 1); float input is cast to float32 unchanged in value."""
    if not x.is_floating_point():
        return torch.mul(x, 1.0 / 32768.0)  # one pass: the product is float32 already
    return x.float()


class LogMel(_Frontend):
    """Log-mel frontend: waveform ``(..., T)`` -> ``(..., n_mels, frames)`` (notebook 02).

    torchaudio's ``MelSpectrogram`` (power, Hann window) -> ``log(mel + eps)``: ``eps`` keeps
    silence finite. Defaults (30 ms window, 10 ms hop, 40 bands, 20-8000 Hz): 1 s -> ``(40, 101)``.
    Input float in [-1, 1] or int16, ``(T,)``, ``(B, T)`` or ``(B, 1, T)``; always float32."""

    kind = "logmel"

    def __init__(
        self, sample_rate: int = 16000, n_fft: int = 480, hop_length: int = 160, n_mels: int = 40,
        f_min: float = 20.0, f_max: float = 8000.0, eps: float = 1e-6,
        win_length: int | None = None, center: bool = True, mel_scale: str = "htk",
        norm: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self._keep_arguments(locals())
        if eps <= 0:
            raise ValueError(f"eps must be > 0 so that silence stays finite, got {eps}")
        self.eps = eps
        mel_args = {k: v for k, v in self.config.items() if k != "eps"}
        self.mel = torchaudio.transforms.MelSpectrogram(power=2.0, **mel_args)

    def power_mel(self, x: Tensor) -> Tensor:
        """Mel-filtered power before the log, float32 ``(..., n_mels, frames)``."""
        x = _as_float_audio(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            if not isinstance(self.mel.spectrogram, torchaudio.transforms.Spectrogram):
                return self.mel(x)  # export swapped in an exportable spectrogram (notebook 06)
            shape = x.shape
            x = x.reshape(-1, shape[-1])
            # CPU batches go in chunks of ~0.5M frame samples that stay in cache (a 128-clip
            # batch at once is 2.4x slower); a trace would freeze the chunk count, so not then.
            exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            if x.device.type == "cpu" and len(x) > 1 and not exporting:
                per_clip = shape[-1] * max(1, self.config["n_fft"] // self.config["hop_length"])
                mel = torch.cat([self._fft_mel(p) for p in x.split(max(1, _CHUNK // per_clip))])
            else:
                mel = self._fft_mel(x)
            return mel.reshape(shape[:-1] + mel.shape[-2:])

    def _fft_mel(self, x: Tensor) -> Tensor:
        # torchaudio's MelSpectrogram (reflect-padded stft -> |.|^2 -> mel filters) written as
        # frames + rfft: on CPU ~5x faster than torch.stft + complex abs().
        n_fft, hop = self.config["n_fft"], self.config["hop_length"]
        if self.config["center"]:
            pad = n_fft // 2
            if x.shape[-1] > pad:  # reflect padding as two flipped slices: 6x faster on CPU
                left, right = x[:, 1 : pad + 1].flip(-1), x[:, -pad - 1 : -1].flip(-1)
                x = torch.cat([left, x, right], dim=-1)
            else:  # too short to reflect: let pad() raise its clear error
                x = nn.functional.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        window = self.mel.spectrogram.window.to(x.dtype)
        left_pad = (n_fft - window.shape[0]) // 2  # stft centres a shorter window inside n_fft
        window = nn.functional.pad(window, (left_pad, n_fft - window.shape[0] - left_pad))
        spec = torch.fft.rfft(x.unfold(-1, n_fft, hop) * window, n=n_fft)  # (N, frames, bins)
        sq = torch.view_as_real(spec).square()  # re^2 + im^2, without complex abs() and sqrt
        power = sq[..., 0] + sq[..., 1]
        return torch.matmul(power, self.mel.mel_scale.fb).transpose(1, 2)  # (N, n_mels, frames)

    def forward(self, x: Tensor) -> Tensor:
        return torch.log(self.power_mel(x) + self.eps)


class Mfcc(_Frontend):
    """MFCCs: ``(..., T)`` -> ``(..., n_mfcc * (1 + deltas), frames)`` (notebook 02).

    :class:`LogMel` (``logmel_kwargs``) -> orthonormal DCT-II over the mel bands, keeping ``n_mfcc``
    coefficients; ``deltas=1``/``2`` appends velocity and acceleration (13 x 3 = 39 rows)."""

    kind = "mfcc"

    def __init__(
        self, n_mfcc: int = 13, deltas: int = 0, delta_win: int = 5, **logmel_kwargs: Any
    ) -> None:
        super().__init__()
        self.logmel = LogMel(**logmel_kwargs)
        n_mels = self.logmel.config["n_mels"]
        if not 1 <= n_mfcc <= n_mels:
            raise ValueError(f"n_mfcc must be in 1..n_mels={n_mels}, got {n_mfcc}")
        if deltas not in (0, 1, 2) or delta_win < 3:
            raise ValueError(f"need deltas in 0, 1, 2 and delta_win >= 3, got {deltas, delta_win}")
        self.config = dict(n_mfcc=n_mfcc, deltas=deltas, delta_win=delta_win, **self.logmel.config)
        dct = torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho")  # (n_mels, n_mfcc)
        self.register_buffer("dct", dct, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        feats = [torch.matmul(self.logmel(x).transpose(-1, -2), self.dct).transpose(-1, -2)]
        for _ in range(self.config["deltas"]):
            feats.append(_deltas(feats[-1], self.config["delta_win"]))
        return torch.cat(feats, dim=-2)


def _deltas(feats: Tensor, win_length: int) -> Tensor:
    """``d[t] = sum_n n (c[t+n] - c[t-n]) / (2 sum_n n^2)`` along time, edge frames repeated."""
    n, t = (win_length - 1) // 2, feats.shape[-1]
    flat = nn.functional.pad(feats.reshape(-1, 1, t), (n, n), mode="replicate")
    padded = flat.reshape(feats.shape[:-1] + (t + 2 * n,))
    out = torch.zeros_like(feats)
    for i in range(1, n + 1):
        out = out + i * (padded[..., n + i : n + i + t] - padded[..., n - i : n - i + t])
    return out / (2 * sum(i * i for i in range(1, n + 1)))


class DbSpectrogram(_Frontend):
    """Power spectrogram in dB, Microsoft Learn's input for notebook 03 (notebook 03).

    400/200 give ``201 x 81`` for 1 s; ``10 * log10(max(power, floor))`` keeps silence finite
    (the original's ``log(0)`` gave NaN images); ``top_db`` clips each clip."""

    kind = "spectrogram"

    def __init__(
        self, n_fft: int = 400, hop_length: int = 200, win_length: int | None = None,
        floor: float = _FLOOR, top_db: float | None = None, center: bool = True,
        sample_rate: int = 16000,
    ) -> None:  # fmt: skip
        super().__init__()
        self._keep_arguments(locals())
        if floor <= 0:
            raise ValueError(f"floor must be > 0 so that silence stays finite, got {floor}")
        self.spec = torchaudio.transforms.Spectrogram(
            n_fft=n_fft, hop_length=hop_length, win_length=win_length, power=2.0, center=center
        )

    def forward(self, x: Tensor) -> Tensor:
        x = _as_float_audio(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            db = 10.0 * torch.log10(self.spec(x).clamp_min(self.config["floor"]))
        if self.config["top_db"] is not None:
            db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - self.config["top_db"])
        return db


#: The one frontend registry: a config's "kind" -> the module class.
FRONTENDS = {"logmel": LogMel, "mfcc": Mfcc, "spectrogram": DbSpectrogram}


def make_frontend(config: dict[str, Any] | None = None) -> nn.Module:
    """The frontend ``{"kind": ..., **arguments}`` describes; ``None``: log-mel (notebook 06)."""
    config = dict(config or {"kind": "logmel"})
    kind = config.pop("kind", "logmel")
    config.pop("stft", None)  # older checkpoints stored a since-removed STFT switch
    if kind not in FRONTENDS:
        raise ValueError(f"unknown feature kind {kind!r}; known: {sorted(FRONTENDS)}")
    return FRONTENDS[kind](**config)


def frontend_config(frontend: nn.Module) -> dict[str, Any]:
    """The dict :func:`make_frontend` rebuilds ``frontend`` from (notebook 05)."""
    return {"kind": frontend.kind, **frontend.config}


# --- Batch augmentation (notebook 02 previews them, notebook 05 trains with them) -----------
def _uniform(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None):
    """U[0, 1) on ``device``; drawn on the generator's device so a CPU generator also seeds CUDA."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _randint(low, high, shape: tuple[int, ...], device: torch.device, generator) -> Tensor:
    """Integers uniform in ``[low, high]`` (inclusive; per element when tensors)."""
    u = _uniform(shape, device, generator)
    low_t, high_t = torch.as_tensor(low, device=device), torch.as_tensor(high, device=device)
    return (low_t + torch.floor(u * (high_t - low_t + 1))).long().clamp_max(high_t)


def time_shift(x: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Shift each example of ``(B, ..., T)`` by a random offset in ``±max_shift`` (notebook 02).

    Any dtype; channels move together; zeros enter from outside."""
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0 or x.numel() == 0:
        return x.clone()
    b, t = x.shape[0], x.shape[-1]
    shifts = _randint(-max_shift, max_shift, (b,), x.device, generator)
    # Zero-pad both ends, then read each row's window out of a sliding view: row copies, ~4x
    # faster on CPU than an element-wise gather with a (B, T) index.
    flat = x.reshape(b, -1, t)
    windows = nn.functional.pad(flat, (max_shift, max_shift)).unfold(-1, t, 1)  # (B, C, 2s+1, T)
    rows = torch.arange(b, device=x.device).unsqueeze(1)
    chans = torch.arange(flat.shape[1], device=x.device).unsqueeze(0)
    return windows[rows, chans, (max_shift - shifts).unsqueeze(1)].reshape(x.shape)


def speed_perturb(
    x: Tensor, max_change: float, generator: torch.Generator | None = None, step: float = 0.01
) -> Tensor:
    """Resample each ``(B, T)`` clip by its own random factor in ``1 ± max_change`` (notebook 05).

    A tape played fast or slow (Kaldi's speed perturbation): 1.1 is 10 % shorter *and* higher.
    Factors lie on a grid of ``step``: one linear ``interpolate`` per factor, then cropped or
    zero-padded about the centre back to ``T``.
    """
    if max_change <= 0:
        return x
    b, t = x.shape
    levels = max(1, round(max_change / step))
    grid = max_change / levels  # the actual step: max_change is always reachable
    u = _uniform((b,), x.device, generator)
    k = (u * (2 * levels + 1)).floor().long().clamp_max(2 * levels) - levels  # -L..L
    out = torch.empty_like(x)
    for level in k.unique().tolist():
        rows = (k == level).nonzero().squeeze(1)
        y = x.index_select(0, rows)
        if level != 0:
            n = max(2, round(t / (1.0 + level * grid)))  # faster -> fewer samples
            y = nn.functional.interpolate(y.unsqueeze(1), size=n, mode="linear", align_corners=True)
            start = abs(n - t) // 2
            crop, pad = y[:, 0, start : start + t], (start, t - n - start)
            y = crop if n >= t else nn.functional.pad(y[:, 0], pad)
        out.index_copy_(0, rows, y)
    return out


def mix_noise(
    x: Tensor, noise: Tensor, prob: float | Tensor = 0.8, max_gain: float | Tensor = 0.1,
    snr_db: tuple[float, float] | None = None, clamp: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:  # fmt: skip
    """Add a random slice of background noise to a random subset of the batch (notebook 02).

    ``noise``: a bank ``(K, Tn >= T)``. With probability ``prob`` (a float or one per example)
    an example gets a random slice with gain ~ U[0, ``max_gain``] or, with ``snr_db=(lo, hi)``,
    at a random SNR in [lo, hi] dB. Clipped to [-1, 1] when ``clamp``.
    """
    p = torch.as_tensor(prob)
    if p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    b, t, dev = x.shape[0], x.shape[-1], x.device
    if noise.dim() != 2 or noise.shape[1] < t or len(noise) == 0:
        raise ValueError(f"noise bank {tuple(noise.shape)}: want (K, T_noise), not shorter "
                         f"than {t}")
    k, tn = noise.shape
    if not x.is_floating_point():
        x = _as_float_audio(x)
    noise = _as_float_audio(noise.to(dev, non_blocking=True))
    rows = _randint(0, k - 1, (b,), dev, generator)
    offsets = _randint(0, tn - t, (b,), dev, generator)
    slices = noise.unfold(1, t, 1)[rows, offsets]  # (B, T): row copies out of a sliding view
    apply = (_uniform((b,), dev, generator) < torch.as_tensor(prob, device=dev)).float()
    u = _uniform((b,), dev, generator)
    if snr_db is None:
        gain = u * torch.as_tensor(max_gain, device=dev)
    else:
        snr = snr_db[0] + u * (snr_db[1] - snr_db[0])
        p_sig = x.reshape(b, -1).float().pow(2).mean(dim=1)
        p_noise = slices.pow(2).mean(dim=1).clamp_min(1e-12)
        gain = torch.sqrt(p_sig / (p_noise * 10.0 ** (snr / 10.0)))
    shape = (b,) + (1,) * (x.dim() - 1)
    out = torch.addcmul(x, (gain * apply).view(shape), slices.view(shape[:-1] + (t,)))
    return out.clamp_(-1.0, 1.0) if clamp else out


def _band_masks(b: int, size: int, n_masks: int, max_width: int, device, generator) -> Tensor:
    """(B, size) bool: union of ``n_masks`` random bands of width 0..max_width per example."""
    max_width = min(max_width, size)
    mask = torch.zeros(b, size, dtype=torch.bool, device=device)
    pos = torch.arange(size, device=device).unsqueeze(0)
    for _ in range(n_masks if max_width > 0 else 0):  # loop over masks, never over examples
        width = _randint(0, max_width, (b,), device, generator)
        start = _randint(0, size - width, (b,), device, generator)
        mask |= (pos >= start.unsqueeze(1)) & (pos < (start + width).unsqueeze(1))
    return mask


def spec_augment(
    spec: Tensor, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2,
    time_width: int = 10, mask_value: float | None = None, generator: torch.Generator | None = None,
) -> Tensor:  # fmt: skip
    """SpecAugment masks (Park et al., 2019) per example on ``(B, ..., F, frames)`` (notebook 02).

    Bands of 0..``freq_width`` rows and 0..``time_width`` frames set to ``mask_value`` (``None``:
    each example's mean, average energy rather than a hole); channels share masks.
    """
    if spec.dim() < 3:
        raise ValueError(f"spec must be (B, ..., F, frames), got shape {tuple(spec.shape)}")
    b, f, t = spec.shape[0], spec.shape[-2], spec.shape[-1]
    fmask = _band_masks(b, f, freq_masks, freq_width, spec.device, generator)  # (B, F)
    tmask = _band_masks(b, t, time_masks, time_width, spec.device, generator)  # (B, T)
    mask = (fmask.unsqueeze(2) | tmask.unsqueeze(1)).view((b,) + (1,) * (spec.dim() - 3) + (f, t))
    if mask_value is None:
        fill = spec.reshape(b, -1).mean(dim=1).view((b,) + (1,) * (spec.dim() - 1))
    else:
        fill = torch.tensor(mask_value, dtype=spec.dtype, device=spec.device)
    return torch.where(mask, fill.to(spec.dtype), spec)


# --- Batched features vs a per-clip loop, and a librosa cross-check (notebook 02) -----------
def _to_tensor(a: np.ndarray | Tensor) -> Tensor:
    """NumPy (also a read-only memmap slice) -> a tensor that owns writable memory (a copy)."""
    return a if isinstance(a, Tensor) else torch.from_numpy(np.array(a))


def _batches(audio, device: torch.device, batch_size: int) -> Iterator[tuple[int, Tensor]]:
    """``(start, batch on device)``: int16 travels as int16 (half the bytes), pinned for CUDA."""
    for s in range(0, len(audio), batch_size):
        xb = _to_tensor(audio[s : s + batch_size])
        yield s, (xb.pin_memory() if device.type == "cuda" else xb).to(device, non_blocking=True)


@torch.no_grad()
def batch_logmel(
    audio: np.ndarray | Tensor, device: str | torch.device = "cpu", batch_size: int | None = None,
    frontend: nn.Module | None = None, to_cpu: bool = True,
) -> Tensor:  # fmt: skip
    """Features of many clips (int16 or float, a memmap is fine), a batch at a time (notebook 02).

    ``batch_size=None``: 2048 on a GPU (hides launch latency), 32 on a CPU (fits the cache)."""
    device = torch.device(device)
    frontend = (frontend or LogMel()).to(device).eval()
    size = batch_size or (32 if device.type == "cpu" else 2048)
    chunks = [frontend(xb) for _, xb in _batches(audio, device, size)]
    return torch.cat([c.cpu() for c in chunks] if to_cpu else chunks) if chunks else torch.empty(0)


@torch.no_grad()
def loop_logmel(
    audio: np.ndarray | Tensor, device: str | torch.device = "cpu",
    frontend: nn.Module | None = None,
) -> Tensor:
    """The same features one clip at a time, like a per-item ``Dataset`` (notebook 02)."""
    frontend = (frontend or LogMel()).to(device).eval()
    out = [frontend(_to_tensor(row).to(device)).cpu() for row in audio]
    return torch.stack(out) if out else torch.empty(0)


def compare_with_librosa(
    x: np.ndarray, librosa_kwargs: dict[str, Any] | None = None, **logmel_kwargs: Any
) -> dict[str, float]:
    """Largest difference of one clip's log-mel by :class:`LogMel` and by librosa (notebook 02).

    librosa gets our settings unless ``librosa_kwargs`` overrides some; ``power=1`` is squared."""
    import librosa

    ours_mel = LogMel(**logmel_kwargs)
    cfg = ours_mel.config
    x = np.asarray(x, np.float32)
    kw: dict[str, Any] = dict(n_fft=cfg["n_fft"], hop_length=cfg["hop_length"],
                              n_mels=cfg["n_mels"], fmin=cfg["f_min"], fmax=cfg["f_max"],
                              htk=True, norm=None, center=True, pad_mode="reflect", power=2.0)
    kw.update(librosa_kwargs or {})
    ref = librosa.feature.melspectrogram(y=x, sr=cfg["sample_rate"], **kw) ** (2.0 / kw["power"])
    ours = ours_mel.power_mel(torch.from_numpy(x)).double().numpy()
    frames = min(ours.shape[-1], ref.shape[-1])
    ours, ref = ours[..., :frames], ref[..., :frames].astype(np.float64)
    log_diff = np.abs(np.log(ours + cfg["eps"]) - np.log(ref + cfg["eps"])).max()
    rel_power = float(np.abs(ours - ref).max() / max(ours.max(), 1e-30))
    return dict(max_abs_log=float(log_diff), max_abs_db=float(log_diff * 10 / math.log(10)),
                max_rel_power=rel_power, frames=int(frames))  # fmt: skip


# --- Spectrogram images, Microsoft Learn style, done correctly and fast (notebook 02 -> 03) ---
class _DbMel(LogMel):
    """Mel power in dB (``10 * log10`` with the -100 dB floor) instead of the natural log."""

    def forward(self, x: Tensor) -> Tensor:
        return 10.0 * torch.log10(self.power_mel(x).clamp_min(_FLOOR))


def _db_frontend(kind: str, n_fft: int | None, hop_length: int | None, n_mels: int) -> nn.Module:
    """Waveforms -> dB images; ``None``: Microsoft Learn's 400/200 or :class:`LogMel`'s 480/160."""
    defaults = {"spectrogram": (400, 200), "logmel": (480, 160)}
    if kind not in defaults:
        raise ValueError(f"kind must be 'spectrogram' or 'logmel', got {kind!r}")
    n_fft, hop_length = n_fft or defaults[kind][0], hop_length or defaults[kind][1]
    if kind == "spectrogram":
        return DbSpectrogram(n_fft=n_fft, hop_length=hop_length)
    return _DbMel(n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)


def spectrogram_db_range(
    audio: np.ndarray | Tensor, kind: str = "spectrogram", n_fft: int | None = None,
    hop_length: int | None = None, n_mels: int = 40, top_db: float = 80.0,
    device: str | torch.device = "cpu", batch_size: int = 512,
) -> tuple[float, float]:  # fmt: skip
    """The PNGs' grey range in dB: ``(max - top_db, max)``, max of all clips (notebook 02)."""
    device = torch.device(device)
    frontend = _db_frontend(kind, n_fft, hop_length, n_mels).to(device).eval()
    with torch.no_grad():
        top = max((float(frontend(xb).max()) for _, xb in _batches(audio, device, batch_size)),
                  default=-math.inf)  # fmt: skip
    if not math.isfinite(top):
        raise ValueError("no clips to export")
    return top - top_db, top


def _png_targets(labels: np.ndarray, classes, paths, out_dir: Path) -> list[Path]:
    """``out_dir/<class>/<row>_<source stem>.png`` for every row (row index keeps names unique)."""
    targets = []
    for i, label in enumerate(labels):
        src = paths[i] if paths is not None else ""
        stem = Path(src).name.split(".")[0] if src and not src.startswith("<") else "generated"
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)
        targets.append(out_dir / classes[int(label)] / f"{i:06d}_{stem}.png")
    for folder in {t.parent for t in targets}:
        folder.mkdir(parents=True, exist_ok=True)
    return targets


@torch.no_grad()
def _export(
    audio, labels, classes, out_dir, to_images, save, workers: int, *, paths=None,
    kind="spectrogram", n_fft=None, hop_length=None, n_mels=40, top_db=80.0, db_range=None,
    device="cpu", batch_size=512,
) -> dict[str, Any]:  # fmt: skip
    """What both export routes share: checks, dB range, batches -> ``save`` (threads), manifest."""
    t0, out_dir, labels, n = perf_counter(), Path(out_dir), np.asarray(labels), len(audio)
    if len(labels) != n or (paths is not None and len(paths) != n):
        raise ValueError(f"{n} clips but {len(labels)} labels / {len(paths or [])} paths")
    device = torch.device(device)
    if db_range is None:
        db_range = spectrogram_db_range(audio, kind, n_fft, hop_length, n_mels, top_db, device,
                                        batch_size)
    lo, hi = float(db_range[0]), float(db_range[1])
    if not hi > lo:
        raise ValueError(f"db_range must be (low, high) with high > low, got {db_range}")
    targets = _png_targets(labels, classes, paths, out_dir)
    frontend = _db_frontend(kind, n_fft, hop_length, n_mels).to(device).eval()
    shape: tuple[int, ...] = ()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: list = []
        for s, xb in _batches(audio, device, batch_size):
            images = to_images(frontend(xb), lo, hi)
            shape = tuple(int(v) for v in images.shape[1:])
            for job in pending:  # one batch in flight: bounded memory
                job.result()
            jobs = list(zip(images, targets[s : s + len(images)], strict=True))
            if workers > 0:
                pending = [pool.submit(save, img, path, lo, hi) for img, path in jobs]
            else:  # matplotlib: stay on the main thread
                for img, path in jobs:
                    save(img, path, lo, hi)
        for job in pending:
            job.result()
    sources = paths if paths is not None else [""] * n
    with open(out_dir / "manifest.csv", "w", newline="") as f:
        rows = [[t.relative_to(out_dir).as_posix(), int(y), t.parent.name, src]
                for t, y, src in zip(targets, labels, sources, strict=True)]  # fmt: skip
        csv.writer(f).writerows([["file", "label", "class", "source"], *rows])
    seconds = perf_counter() - t0
    rate = n / seconds if seconds > 0 else math.inf
    return dict(n=n, seconds=seconds, clips_per_s=rate, db_range=(lo, hi), shape=shape,
                out_dir=out_dir, manifest=out_dir / "manifest.csv")  # fmt: skip


def export_spectrogram_pngs(
    audio: np.ndarray | Tensor, labels: np.ndarray | list[int], classes: list[str],
    out_dir: str | Path, *, workers: int = 2, compress_level: int = 1, **options: Any,
) -> dict[str, Any]:  # fmt: skip
    """One 8-bit grey PNG per clip in ``out_dir/<class>/`` (notebook 02, read in notebook 03).

    Power (``kind='spectrogram'``, 201 x 81) or mel power (``'logmel'``, 40 x 101) in dB mapped
    from one fixed ``db_range`` (default :func:`spectrogram_db_range`) to grey 0..255, highest
    frequency in row 0; batched on ``device``, saved by Pillow in ``workers`` threads. Options:
    ``paths``, ``kind``, ``n_fft``, ``hop_length``, ``n_mels``, ``top_db``, ``db_range``,
    ``device``, ``batch_size``. Also writes ``manifest.csv`` (image -> label, source clip)."""
    from PIL import Image

    def to_grey(db: Tensor, lo: float, hi: float) -> np.ndarray:
        grey = ((db - lo) * (255.0 / (hi - lo))).round_().clamp_(0, 255).to(torch.uint8)
        return grey.flip(-2).cpu().numpy()  # (B, F, frames), highest frequency first

    def save(img: np.ndarray, path: Path, lo: float, hi: float) -> None:
        Image.fromarray(img, mode="L").save(path, compress_level=compress_level)

    return _export(audio, labels, classes, out_dir, to_grey, save, workers, **options)


def _save_with_matplotlib(db: np.ndarray, path: Path, lo: float, hi: float) -> None:
    plt.imsave(path, db, cmap="gray", vmin=lo, vmax=hi, origin="lower")  # Microsoft Learn's way


def export_spectrogram_pngs_matplotlib(
    audio: np.ndarray | Tensor, labels: np.ndarray | list[int], classes: list[str],
    out_dir: str | Path, **options: Any,
) -> dict[str, Any]:  # fmt: skip
    """Microsoft Learn's way, for comparison: ``plt.imsave`` clip by clip (notebook 02).

    Same images (as RGBA) and ``options`` as :func:`export_spectrogram_pngs`."""
    to_numpy = lambda db, lo, hi: db.cpu().numpy()
    return _export(audio, labels, classes, out_dir, to_numpy, _save_with_matplotlib, 0,
                   device="cpu", batch_size=1, **options)  # fmt: skip
